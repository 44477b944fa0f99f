#!/usr/bin/env bash
# The one install path (CI, README, docker): system packages, .venv, the Python package, the embedded server and
# the extension.  Idempotent and quiet; re-running after a change rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "install: $*"; }

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

if command -v dpkg-query >/dev/null 2>&1; then
    want=()
    for p in build-essential manpages manpages-dev; do pkg_installed "$p" || want+=("$p"); done
    have_pg_dev=no
    for f in /usr/include/postgresql/*/server/postgres.h; do [ -e "$f" ] && have_pg_dev=yes; done
    if [ ${#want[@]} -gt 0 ] || [ $have_pg_dev = no ]; then
        if [ "$(id -u)" -ne 0 ]; then
            say "not root: skipping apt; needed: ${want[*]} postgresql-server-dev-<NN> (build-only checks)"
        else
            apt-get update -qq
            if [ $have_pg_dev = no ]; then
                major=$(pg_dev_major)
                if [ -n "$major" ]; then want+=("postgresql-server-dev-$major"); else say "unknown distribution: no PostgreSQL server headers"; fi
            fi
            if [ ${#want[@]} -gt 0 ]; then
                say "apt-get install ${want[*]}"
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1 \
                    || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${want[@]}"
            fi
        fi
    fi
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
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    say "pip install torch==2.13.0"
    pip_install torch==2.13.0
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
url=$(.venv/bin/pgsieve server start)
say "embedded server at $url"
msg=$(.venv/bin/pgsieve ext install)
say "$msg"
