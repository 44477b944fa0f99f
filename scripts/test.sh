#!/usr/bin/env bash
# The whole test suite: pg_regress (tests/regress) against a throwaway embedded server, the same against every
# distribution PostgreSQL with pgvector (scripts/matrix.sh), then pytest (tests/).
# Run after scripts/install.sh (`make test` does both).  Exits non-zero if either part fails; pytest runs last
# so its summary is the closing line.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=.venv/bin/python
[ -x "$PY" ] || { echo "test.sh: .venv missing; run scripts/install.sh (or make install) first" >&2; exit 1; }

# The extension under test must be the one in this tree (cheap when nothing changed).
.venv/bin/pgsieve ext install || { echo "test.sh: pgsieve ext install failed" >&2; exit 1; }

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
    make -s -C ext installcheck PG_CONFIG="$PG_CONFIG" with_llvm=no >"$tmp/regress.log" 2>&1
    regress_rc=$?
    grep -E '^(# )?(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)|^not ok' "$tmp/regress.log" || true
    if [ $regress_rc -ne 0 ]; then
        tail -n 40 "$tmp/regress.log"
        [ -f tests/regress/regression.diffs ] && head -n 200 tests/regress/regression.diffs
        echo "pg_regress FAILED (exit $regress_rc); full diffs in tests/regress/regression.diffs"
    else
        echo "pg_regress: ok"
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
if [ $regress_rc -ne 0 ] || [ $matrix_rc -ne 0 ] || [ $pytest_rc -ne 0 ]; then
    exit 1
fi
exit 0
