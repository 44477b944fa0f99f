"""The embedded server layer (pgsieve.server) on a private data directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgsieve import server


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="pgsieve-test-srv-"))
    base.chmod(0o755)
    pgdata = base / "pgdata"
    try:
        yield pgdata
    finally:
        server.stop(pgdata)
        shutil.rmtree(base, ignore_errors=True)


def test_pg_config_is_embedded_18() -> None:
    path = server.pg_config_path()
    assert path.is_file()
    out = subprocess.run([str(path), "--version"], check=True, capture_output=True, text=True).stdout
    assert out.startswith("PostgreSQL 18")


def test_data_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PGSIEVE_DATA_DIR", str(tmp_path / "x"))
    assert server.data_dir_default() == tmp_path / "x"
    monkeypatch.delenv("PGSIEVE_DATA_DIR")
    default = server.data_dir_default()
    assert default.parts[-2:] == ("pgsieve", "pgdata")
    assert default.is_absolute()


def test_lifecycle(data_dir: Path) -> None:
    before = server.status(data_dir)
    assert before["running"] is False and before["initialized"] is False and before["pid"] is None
    with pytest.raises(server.ServerError, match="no server is running"):
        server.url(data_dir)

    url = server.start(data_dir)
    assert url.startswith("postgresql://postgres@/postgres?host=")
    st = server.status(data_dir)
    assert st["running"] and st["state"] == "ready" and st["initialized"]
    assert st["url"] == url == server.url(data_dir)
    assert st["version"].split(".")[0] == "18"

    # idempotent: a second start leaves the same postmaster running
    assert server.start(data_dir) == url
    assert server.status(data_dir)["pid"] == st["pid"]

    with psycopg.connect(url, autocommit=True) as conn:
        assert "PostgreSQL 18" in conn.execute("SELECT version()").fetchone()[0]
        assert conn.execute("SHOW shared_buffers").fetchone()[0] == server.DEFAULT_SETTINGS["shared_buffers"]
        assert conn.execute("SHOW shared_preload_libraries").fetchone()[0] == ""
        conn.execute("CREATE TABLE survives_restart (x int)")

    assert server.stop(data_dir) is True
    assert server.status(data_dir)["running"] is False
    assert server.stop(data_dir) is False
    with pytest.raises(server.ServerError):
        server.url(data_dir)

    # restart in the same process (the package caches a handle per data dir); data persists
    url2 = server.start(data_dir)
    assert server.status(data_dir)["pid"] != st["pid"]
    with psycopg.connect(url2, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM survives_restart").fetchone()[0] == 0


def test_url_names_database(data_dir: Path) -> None:
    server.start(data_dir)
    with psycopg.connect(server.url(data_dir), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "odd name"')
    with psycopg.connect(server.url(data_dir, dbname="odd name")) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "odd name"


def test_server_outlives_starting_process(data_dir: Path) -> None:
    server.stop(data_dir)
    code = "import sys; from pgsieve import server; print(server.start(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(data_dir)], check=True, capture_output=True, text=True)
    st = server.status(data_dir)
    assert st["running"], "server stopped when the process that started it exited"
    assert out.stdout.strip() == st["url"]
