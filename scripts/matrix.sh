#!/usr/bin/env bash
# Version matrix (called by scripts/test.sh after the embedded PostgreSQL 18 regress run): the regress suite
# (tests/regress) against every distribution PostgreSQL (/usr/lib/postgresql/NN) that has a server and pgvector
# (Debian 13: postgresql-17 + postgresql-17-pgvector, installed by scripts/install.sh), each in a throwaway
# cluster.  A major without pgvector (Debian 12's 15: apt has no postgresql-15-pgvector) is compile-checked only
# (tests/test_build_matrix.py); the reason is printed with apt's own answer.  Exit status: non-zero if a regress
# run failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
say() { echo "matrix: $*"; }

# PGSIEVE_MATRIX_PG_CONFIGS: the pg_configs to use instead (tests run this script on the embedded PostgreSQL)
read -r -a pg_configs <<<"${PGSIEVE_MATRIX_PG_CONFIGS:-$(echo /usr/lib/postgresql/*/bin/pg_config)}"
rc=0
ran=0
for pgc in "${pg_configs[@]}"; do
    [ -x "$pgc" ] || continue
    bindir=$(dirname "$pgc")
    version=$("$pgc" --version)
    major=$(echo "$version" | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
    share=$("$pgc" --sharedir)
    if [ ! -x "$bindir/postgres" ] || [ ! -e "$share/extension/vector.control" ]; then
        why=""
        [ -x "$bindir/postgres" ] || why="no server binary (postgresql-$major is not installed); "
        if [ ! -e "$share/extension/vector.control" ]; then
            cand=$(apt-cache policy "postgresql-$major-pgvector" 2>/dev/null | sed -n 's/^ *Candidate: //p')
            why+="no pgvector for PostgreSQL $major (apt-cache policy postgresql-$major-pgvector: candidate ${cand:-none, apt knows no such package})"
        fi
        say "$version: compile check only (tests/test_build_matrix.py), no regress run: $why"
        continue
    fi

    # the extension under test, built from a copy of this tree (the tree's ext/ objects stay built for the
    # embedded server) and installed into this PostgreSQL (needs write access: root in CI)
    if [ ! -w "$share/extension" ] && ! cmp -s ext/pgsieve.control "$share/extension/pgsieve.control"; then
        say "$version: skipped, pgsieve is not installed there and $share/extension is not writable (run as root)"
        continue
    fi
    tmp=$(mktemp -d /tmp/pgsieve-matrix.XXXXXX)
    chmod 755 "$tmp"
    mkdir -p "$tmp/src/tests"
    cp -r ext sql "$tmp/src/"
    cp -r tests/regress tests/isolation "$tmp/src/tests/"
    find "$tmp/src/ext" \( -name '*.o' -o -name '*.so' -o -name '*.bc' \) -delete
    if ! out=$(PGSIEVE_SOURCE_DIR="$tmp/src" .venv/bin/pgsieve ext install --pg-config "$pgc" 2>&1); then
        echo "$out" | tail -n 40
        say "$version: pgsieve ext install FAILED"
        rc=1
        rm -rf "$tmp"
        continue
    fi

    # a throwaway cluster: as root, owned by and run as the postgres user (PostgreSQL refuses root)
    runas=()
    if [ "$(id -u)" -eq 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            say "$version: skipped, running as root and there is no postgres user to run the server as"
            rm -rf "$tmp"
            continue
        fi
        runas=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    mkdir -p "$tmp/data" "$tmp/sock"
    [ ${#runas[@]} -eq 0 ] || chown postgres:postgres "$tmp/data" "$tmp/sock"
    port=$(( 20000 + RANDOM % 20000 ))
    stop_cluster() { "${runas[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1; }
    if ! "${runas[@]}" "$bindir/initdb" -D "$tmp/data" -U postgres --auth=trust --encoding=UTF8 >"$tmp/initdb.log" 2>&1 \
        || ! "${runas[@]}" "$bindir/pg_ctl" -D "$tmp/data" -w -t 120 -l "$tmp/data/log" \
                -o "-p $port -k $tmp/sock -c listen_addresses=''" start >/dev/null 2>&1; then
        tail -n 20 "$tmp/initdb.log" "$tmp/data/log" 2>/dev/null
        say "$version: could not start a cluster"
        stop_cluster
        rc=1
        rm -rf "$tmp"
        continue
    fi
    PGHOST="$tmp/sock" PGPORT=$port PGUSER=postgres \
        make -s -C "$tmp/src/ext" installcheck PG_CONFIG="$pgc" with_llvm=no >"$tmp/regress.log" 2>&1
    r=$?
    stop_cluster
    grep -E '^(# )?(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)|^not ok' "$tmp/regress.log"
    if [ $r -ne 0 ]; then
        tail -n 40 "$tmp/regress.log"
        [ -f "$tmp/src/tests/regress/regression.diffs" ] && head -n 200 "$tmp/src/tests/regress/regression.diffs"
        say "$version: regress FAILED"
        rc=1
    else
        say "$version: regress ok"
        ran=$((ran + 1))
    fi
    rm -rf "$tmp"
done
say "$ran distribution PostgreSQL major(s) passed the regress suite (the embedded PostgreSQL 18 ran it above)"
exit $rc
