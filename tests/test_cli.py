"""The `pgsieve` console script, run as a user would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgsieve import cli, server


def _pgsieve(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "pgsieve"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pgsieve.cli"]
    return subprocess.run([*cmd, *args], check=False, capture_output=True, text=True, timeout=600)


@pytest.fixture()
def data_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="pgsieve-test-cli-"))
    base.chmod(0o755)
    try:
        yield base / "pgdata"
    finally:
        server.stop(base / "pgdata")
        shutil.rmtree(base, ignore_errors=True)


def test_server_commands(data_dir: Path) -> None:
    st = _pgsieve("server", "status", "--json", "--data-dir", str(data_dir))
    assert st.returncode == 3, st.stderr
    assert json.loads(st.stdout)["running"] is False
    assert _pgsieve("server", "url", "--data-dir", str(data_dir)).returncode == 3

    started = _pgsieve("server", "start", "--data-dir", str(data_dir))
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url.startswith("postgresql://")
    again = _pgsieve("server", "start", "--data-dir", str(data_dir))
    assert again.returncode == 0 and again.stdout.strip() == url

    st = _pgsieve("server", "status", "--data-dir", str(data_dir))
    assert st.returncode == 0
    fields = dict(line.split(None, 1) for line in st.stdout.splitlines() if len(line.split(None, 1)) == 2)
    assert fields["running"] == "True" and fields["version"].startswith("18")
    assert _pgsieve("server", "url", "--data-dir", str(data_dir)).stdout.strip() == url

    stopped = _pgsieve("server", "stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"
    assert _pgsieve("server", "stop", "--data-dir", str(data_dir)).stdout.strip() == "not running"


def test_ext_install_idempotent(pg_extension: dict) -> None:
    out = _pgsieve("ext", "install")
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout


def test_ext_install_bad_pg_config(tmp_path: Path) -> None:
    out = _pgsieve("ext", "install", "--pg-config", str(tmp_path / "pg_config"))
    assert out.returncode == 1
    assert "pg_config not found" in out.stderr


def test_usage_errors() -> None:
    assert _pgsieve("no-such-command").returncode == 2
    assert _pgsieve("server", "restart").returncode == 2


def test_passthrough_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli._load_entry(("pgsieve._no_such_module:main",)) is None
    assert cli._load_entry(("pgsieve.server:no_such_function",)) is None
    assert cli._load_entry(("pgsieve._no_such_module:main", "pgsieve.cli:main")) is cli.main
    # a module that exists but fails to import is a bug to surface, not "not available"
    (tmp_path / "pgs_broken_mod.py").write_text("import pgs_definitely_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):
        cli._load_entry(("pgs_broken_mod:main",))


def test_passthrough_args_reach_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setitem(cli._PASSTHROUGH, "demo", ("fake:main",))
    monkeypatch.setattr(cli, "_load_entry", lambda specs: (lambda argv: seen.append(argv) or 7))
    assert cli.main(["demo", "--limit", "5", "-h"]) == 7
    assert seen == [["--limit", "5", "-h"]]
