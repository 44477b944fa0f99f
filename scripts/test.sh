#!/usr/bin/env bash
# The whole test suite: a -Werror build-only check of ext/, then pg_regress (tests/regress) and the isolation specs
# (tests/isolation, pg_isolation_regress) against a throwaway embedded server, the same regress suite against every
# distribution PostgreSQL with pgvector (scripts/matrix.sh), then pytest (tests/).
# Run after scripts/install.sh (`make test` does both).  Exits non-zero if either part fails; pytest runs last
# so its summary is the closing line.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=.venv/bin/python
[ -x "$PY" ] || { echo "test.sh: .venv missing; run scripts/install.sh (or make install) first" >&2; exit 1; }

# The extension under test must be the one in this tree (cheap when nothing changed).
.venv/bin/pgsieve ext install || { echo "test.sh: pgsieve ext install failed" >&2; exit 1; }

# -Werror build (ext/Makefile PGSIEVE_WERROR=1, with extbuild's warning flags) against every PostgreSQL here
# with server headers: the embedded one and the distribution's (build only, in a throwaway copy of ext/).
werror_rc=0
werror_cflags=$("$PY" -c 'from pgsieve import extbuild; print(extbuild.EXT_CFLAGS)')
for pgc in "$("$PY" -c 'from pgsieve import server; print(server.pg_config_path())')" /usr/lib/postgresql/*/bin/pg_config; do
    [ -x "$pgc" ] && [ -f "$("$pgc" --includedir-server)/postgres.h" ] || continue
    wtmp=$(mktemp -d /tmp/pgsieve-werror.XXXXXX)
    cp -a ext sql "$wtmp/" && make -s -C "$wtmp/ext" clean PG_CONFIG="$pgc" >/dev/null 2>&1
    if make -s -C "$wtmp/ext" -j2 PG_CONFIG="$pgc" with_llvm=no PGSIEVE_WERROR=1 CFLAGS="$werror_cflags" >"$wtmp/build.log" 2>&1; then
        echo "-Werror build ($("$pgc" --version)): ok"
    else
        tail -n 30 "$wtmp/build.log"; echo "-Werror build ($("$pgc" --version)) FAILED"; werror_rc=1
    fi
    rm -rf "$wtmp"
done

regress_rc=0
if compgen -G "tests/regress/sql/*.sql" >/dev/null; then
    tmp=$(mktemp -d /tmp/pgsieve-regress.XXXXXX)
    datadir="$tmp/pgdata"
    cleanup() { "$PY" -c 'import sys; from pgsieve import server; server.stop(sys.argv[1])' "$datadir" >/dev/null 2>&1; rm -rf "$tmp"; }
    trap cleanup EXIT
    # pg_regress (installcheck) reaches the server through libpq's environment: socket dir, port, user.
    eval "$("$PY" - "$datadir" <<'PYEOF'
import shlex, sys
from pgsieve import server
server.start(sys.argv[1])
st = server.status(sys.argv[1])
print(f"PG_CONFIG={shlex.quote(str(server.pg_config_path()))}")
print(f"export PGHOST={shlex.quote(st['socket_dir'])} PGPORT={st['port']} PGUSER=postgres")
PYEOF
)" || { echo "test.sh: could not start the regression server" >&2; exit 1; }
    rm -f tests/regress/regression.diffs tests/regress/regression.out
    rm -rf tests/isolation/output_iso  # `make installcheck` runs ISOLATION after REGRESS
    make -s -C ext installcheck PG_CONFIG="$PG_CONFIG" with_llvm=no >"$tmp/regress.log" 2>&1
    regress_rc=$?
    grep -E '^(# )?(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)|^not ok' "$tmp/regress.log" || true
    if [ $regress_rc -ne 0 ]; then
        tail -n 40 "$tmp/regress.log"
        [ -f tests/regress/regression.diffs ] && head -n 200 tests/regress/regression.diffs
        [ -f tests/isolation/output_iso/regression.diffs ] && head -n 200 tests/isolation/output_iso/regression.diffs
        echo "pg_regress FAILED (exit $regress_rc); full diffs in tests/regress/regression.diffs and tests/isolation/output_iso/regression.diffs"
    else
        echo "pg_regress (regress + isolation): ok"
    fi
    cleanup
    trap - EXIT
else
    echo "pg_regress: no tests in tests/regress/sql, skipped"
fi

# the same regress suite on every distribution PostgreSQL that has pgvector (Debian 13: 17); the majors that are
# only compile-checked (Debian 12: 15, no pgvector package) are named with the reason
scripts/matrix.sh
matrix_rc=$?

"$PY" -m pytest tests
pytest_rc=$?
if [ $pytest_rc -eq 5 ]; then
    echo "test.sh: pytest collected no tests (exit 5); the suite is expected to have tests" >&2
fi
if [ $regress_rc -ne 0 ] || [ $matrix_rc -ne 0 ] || [ $pytest_rc -ne 0 ] || [ $werror_rc -ne 0 ]; then
    exit 1
fi
exit 0
