#!/usr/bin/env bash
# Entry point of the pgsieve image (docker/Dockerfile).
#
#   pgsieve-entrypoint postgres [server options]   initialise $PGDATA on first start (vector + pgsieve created in
#                                                   $POSTGRES_DB and template1), then run PostgreSQL in the foreground
#   pgsieve-entrypoint <any other command>          run it (e.g. python -m pgsieve.workers_server ...)
#
# Environment: POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER (postgres),
# POSTGRES_DB (postgres), POSTGRES_HOST_AUTH_METHOD (scram-sha-256), PGDATA (/var/lib/postgresql/data), PGPORT
# (5432), PGSIEVE_PGBIN (the newest /usr/lib/postgresql/NN/bin), PGSIEVE_SOCKET_DIR (/var/run/postgresql).
# SQL files in /docker-entrypoint-initdb.d run once, after the extensions are created.
# tests/test_docker.py runs this script outside a container against a PostgreSQL that has pgvector + pgsieve.
set -euo pipefail

if [ "${1:-postgres}" != "postgres" ]; then
    exec "$@"
fi
[ $# -gt 0 ] && shift

PGBIN=${PGSIEVE_PGBIN:-$(dirname "$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n1)")}
SOCKETS=${PGSIEVE_SOCKET_DIR:-/var/run/postgresql}
PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-postgres}
AUTH=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

# PostgreSQL refuses to run as root: prepare the directories, then re-run this script as postgres
if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$PGDATA" "$SOCKETS"
    chown -R postgres:postgres "$PGDATA" "$SOCKETS"
    chmod 700 "$PGDATA"
    # setpriv execs in place (no parent process), so docker stop's signal reaches PostgreSQL
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ "$AUTH" != trust ] && [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "pgsieve-entrypoint: set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    "$PGBIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host="$AUTH" \
        --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.auto.conf"
    echo "host all all all $AUTH" >>"$PGDATA/pg_hba.conf"

    # first start: local socket only, create the extensions, run the init scripts
    "$PGBIN/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses='' -k $SOCKETS" start >/dev/null
    psql=("$PGBIN/psql" -v ON_ERROR_STOP=1 -h "$SOCKETS" -U "$POSTGRES_USER" -X -q)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
    fi
    for db in template1 "$POSTGRES_DB"; do
        "${psql[@]}" -d "$db" -c "CREATE EXTENSION IF NOT EXISTS vector" -c "CREATE EXTENSION IF NOT EXISTS pgsieve"
    done
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) echo "pgsieve-entrypoint: running $f"; "${psql[@]}" -d "$POSTGRES_DB" -f "$f" ;;
            *) [ -e "$f" ] && echo "pgsieve-entrypoint: ignoring $f" ;;
        esac
    done
    "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    echo "pgsieve-entrypoint: initialised $PGDATA ($("$PGBIN/postgres" --version)); vector and pgsieve in $POSTGRES_DB"
fi

exec "$PGBIN/postgres" -D "$PGDATA" -k "$SOCKETS" "$@"
