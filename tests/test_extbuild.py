"""Building and installing the extension (pgsieve.extbuild) and loading it into the embedded server."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import psycopg
import pytest

from pgsieve import extbuild

REPO = Path(__file__).resolve().parents[1]


def test_install_is_idempotent(pg_extension: dict) -> None:
    again = extbuild.install_extension()
    assert again["installed"] is False, "second install rewrote files that were already identical"
    assert again["pg_version"].startswith("PostgreSQL 18")
    for f in again["files"]:
        assert Path(f).is_file()
    assert any(f.endswith("/pgsieve.so") for f in again["files"])
    assert any(f.endswith("/pgsieve.control") for f in again["files"])


def test_missing_pg_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(extbuild.ExtBuildError, match="pg_config not found"):
        extbuild.install_extension(tmp_path / "bin" / "pg_config")


def _fake_pg_config(tmp_path: Path, version: str) -> Path:
    """A pg_config that answers like a real one for a PostgreSQL we do not have."""
    script = tmp_path / "pg_config"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --version) echo "PostgreSQL {version}";; --sharedir) echo {tmp_path}/share;;'
        f" --pkglibdir) echo {tmp_path}/lib;; --includedir-server) echo {tmp_path}/include;; esac\n"
    )
    script.chmod(0o755)
    return script


def test_unsupported_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(extbuild.ExtBuildError, match="supports PostgreSQL 15-18"):
        extbuild.install_extension(_fake_pg_config(tmp_path, "13.4"))


def test_missing_pgvector_is_refused(tmp_path: Path) -> None:
    with pytest.raises(extbuild.ExtBuildError, match="pgvector is not installed"):
        extbuild.install_extension(_fake_pg_config(tmp_path, "17.2"))


@pytest.mark.parametrize("pg_config", sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_config")))
def test_distribution_postgres_without_pgvector_is_refused(pg_config: str) -> None:
    pg = extbuild.PgConfig(pg_config)
    if pg.has_pgvector:
        pytest.skip(f"{pg.version} has pgvector")
    with pytest.raises(extbuild.ExtBuildError, match="pgvector"):
        extbuild.install_extension(pg_config)


def test_source_root_not_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PGSIEVE_SOURCE_DIR", raising=False)
    monkeypatch.setattr(extbuild, "__file__", str(tmp_path / "a" / "b" / "extbuild.py"))
    with pytest.raises(extbuild.ExtBuildError, match="cannot find the pgsieve source tree"):
        extbuild.find_source_root()
    monkeypatch.setenv("PGSIEVE_SOURCE_DIR", str(REPO))
    assert extbuild.find_source_root() == REPO


def test_extension_loads(db: psycopg.Connection) -> None:
    level = db.execute("SELECT pgsieve_kernel_level()").fetchone()[0]
    assert level in {"scalar", "popcnt", "avx2", "avx512"}
    control = (REPO / "ext" / "pgsieve.control").read_text()
    default_version = re.search(r"default_version\s*=\s*'([^']+)'", control).group(1)
    row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgsieve'").fetchone()
    assert row is not None and row[0] == default_version
    # loaded on demand: no shared_preload_libraries needed
    assert db.execute("SHOW shared_preload_libraries").fetchone()[0] == ""


def test_ensure_extension_is_repeatable(db: psycopg.Connection) -> None:
    extbuild.ensure_extension(db)
    extbuild.ensure_extension(db)
    names = {r[0] for r in db.execute("SELECT extname FROM pg_extension")}
    assert {"vector", "pgsieve"} <= names
