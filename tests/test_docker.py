"""docker/ by construction (no Docker engine runs here): the Dockerfile copies files that exist and that
.dockerignore keeps, installs through scripts/install.sh (the script CI runs: .ci/run -> make test -> make install),
compose.yaml parses and names services that can run, the entrypoint is valid bash — and runs: as root, the test
starts docker/entrypoint.sh outside a container against a PostgreSQL with pgvector + pgsieve (the distribution's
when install.sh put pgsieve there, as in the image; else the embedded one), and checks first-start initialisation,
password authentication over TCP, the extensions, a clean stop and a second start on the same data directory.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from pgsieve import extbuild, server

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _copies() -> list[tuple[list[str], str]]:
    out = []
    for word, rest in dockerfile_instructions():
        if word in ("COPY", "ADD"):
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


def _ignored(path: str) -> bool:
    """Whether .dockerignore (the build context is the repository root) excludes ``path``."""
    ignored = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pat = raw.strip()
        if not pat or pat.startswith("#"):
            continue
        negate = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        parts = Path(path.strip("/")).parts
        hit = any(fnmatch.fnmatch("/".join(parts[: i + 1]), pat) for i in range(len(parts)))
        if pat.startswith("**/"):
            hit = hit or any(fnmatch.fnmatch(p, pat[3:]) for p in parts)
        if hit:
            ignored = not negate
    return ignored


def test_dockerfile_base_and_install_path() -> None:
    ins = dockerfile_instructions()
    assert ins[0][0] == "FROM" and ins[0][1].startswith("debian:"), ins[0]
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    # the one install path: the same script CI runs on the host, in its distribution-PostgreSQL mode
    assert "scripts/install.sh --system-pg" in runs
    assert "scripts/install.sh" in (REPO / "Makefile").read_text().split("install:", 1)[1].split("\n\n")[0]
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
    assert re.search(r"^test: install$", (REPO / "Makefile").read_text(), re.M)


def test_dockerfile_copies_existing_unignored_sources() -> None:
    copies = _copies()
    assert copies
    sources = [s for srcs, _ in copies for s in srcs]
    for src in sources:
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
        assert not _ignored(src), f"Dockerfile copies {src}, which .dockerignore excludes"
    # what `pip install -e .` and `pgsieve ext install` need is in the image
    pyproject = (REPO / "pyproject.toml").read_text()
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', pyproject, re.M)
    needed = ["pyproject.toml", "setup.py", "scripts/install.sh", "ext/Makefile", "ext/pgsieve.control",
              "sql/pgsieve--0.1.0.sql", "pyclient/pgsieve/_kernels_build.py", "ext/kernels/pgs_kernels.c"]
    if readme:
        needed.append(readme.group(1))
    for path in needed:
        assert any(path == s.rstrip("/") or path.startswith(s.rstrip("/") + "/") for s in sources), path
        assert not _ignored(path), path
    # the entrypoint is copied to what ENTRYPOINT runs
    (entry,) = [dst for srcs, dst in copies if "docker/entrypoint.sh" in srcs]
    entrypoint = [rest for word, rest in dockerfile_instructions() if word == "ENTRYPOINT"][-1]
    assert Path(entry).name in entrypoint


def test_install_script_options() -> None:
    out = subprocess.run(["bash", str(REPO / "scripts/install.sh"), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--system-pg" in out.stdout
    bad = subprocess.run(["bash", str(REPO / "scripts/install.sh"), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown option" in bad.stderr


def test_entrypoint_is_valid_bash() -> None:
    entry = DOCKER / "entrypoint.sh"
    assert os.access(entry, os.X_OK)
    assert entry.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(entry)], check=True, timeout=30)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(entry)], check=True, timeout=60)


def test_compose_file() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "encoder"}
    build = services["db"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
    assert services["encoder"]["image"] == services["db"]["image"]
    for svc in services.values():
        for vol in svc.get("volumes", []):
            assert vol.split(":")[0] in compose["volumes"], vol
    # the encoder runs the worker server with options it accepts
    cmd = services["encoder"]["command"]
    assert cmd[:3] == ["python", "-m", "pgsieve.workers_server"]
    helptext = subprocess.run([sys.executable, "-m", "pgsieve.workers_server", "--help"], capture_output=True,
                              text=True, timeout=120, check=True).stdout
    for opt in [c for c in cmd[3:] if c.startswith("--")]:
        assert opt in helptext, opt
    factory = cmd[cmd.index("--factory") + 1]
    module, _, name = factory.partition(":")
    mod = __import__(module, fromlist=[name])
    assert callable(getattr(mod, name))
    assert "pg_isready" in services["db"]["healthcheck"]["test"]


# --- the entrypoint, run for real ----------------------------------------------------------------------------


def _pg_bin_with_pgsieve() -> Path:
    """The distribution's PostgreSQL with pgvector and pgsieve installed (the image's), else the embedded one."""
    for pgc in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_config"), reverse=True):
        pg = extbuild.PgConfig(pgc)
        if pg.has_pgvector and (pg.sharedir / "extension" / "pgsieve.control").is_file() and (Path(pgc).parent / "postgres").is_file():
            return Path(pgc).parent
    return server.pg_config_path().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Run:
    """docker/entrypoint.sh as a child process, its output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([str(DOCKER / "entrypoint.sh"), "postgres"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # the image's STOPSIGNAL: fast shutdown
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._t.join(timeout=5)


def _wait_ready(url: str, run: _Run, timeout: float = 180) -> psycopg.Connection:
    deadline = time.monotonic() + timeout
    while True:
        if run.proc.poll() is not None:
            raise AssertionError("entrypoint exited:\n" + "".join(run.lines))
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise AssertionError("server not ready:\n" + "".join(run.lines)) from None
            time.sleep(0.5)


@pytest.mark.skipif(os.geteuid() != 0, reason="the entrypoint switches to the postgres user, which needs root")
def test_entrypoint_initialises_and_serves(pg_extension: dict) -> None:
    if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        pytest.skip("no postgres system user")
    pgbin = _pg_bin_with_pgsieve()
    tmp = Path(tempfile.mkdtemp(prefix="pgsieve-entrypoint-"))
    tmp.chmod(0o755)
    port = _free_port()
    env = dict(os.environ, PGDATA=str(tmp / "data"), PGSIEVE_PGBIN=str(pgbin), PGSIEVE_SOCKET_DIR=str(tmp / "sock"),
               PGPORT=str(port), POSTGRES_PASSWORD="s3cret pass", POSTGRES_DB="appdb")
    tcp = f"host=127.0.0.1 port={port} user=postgres dbname=appdb"
    try:
        run = _Run(env)
        try:
            deadline = time.monotonic() + 180
            while not any("initialised" in line for line in run.lines):
                assert run.proc.poll() is None, "entrypoint exited:\n" + "".join(run.lines)
                assert time.monotonic() < deadline, "".join(run.lines)
                time.sleep(0.5)
            with _wait_ready(f"{tcp} password='s3cret pass'", run) as conn:
                exts = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
                assert "vector" in exts and "pgsieve" in exts, exts
                assert conn.execute("SELECT pgsieve_kernel_level()").fetchone()[0] in {"scalar", "popcnt", "avx2", "avx512"}
                assert conn.execute("SHOW listen_addresses").fetchone()[0] == "*"
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(f"{tcp} password=wrong", connect_timeout=10)
        finally:
            rc = run.stop()
        assert rc == 0, "".join(run.lines)
        assert (tmp / "data" / "PG_VERSION").is_file()

        # second start: the data directory is kept, no re-initialisation
        run = _Run(env)
        try:
            with _wait_ready(f"{tcp} password='s3cret pass'", run) as conn:
                assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgsieve'").fetchone()[0] == 1
        finally:
            assert run.stop() == 0
        assert not any("initialised" in line for line in run.lines), "".join(run.lines)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_entrypoint_runs_other_commands() -> None:
    out = subprocess.run([str(DOCKER / "entrypoint.sh"), "echo", "hello"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "hello\n"
