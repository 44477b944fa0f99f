"""End to end: ``pgsieve demo`` on its own embedded server in a temporary data directory."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pgsieve import demo, server  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/usr/share/man/man1").is_dir(), reason="man pages not installed")


@pytest.fixture(scope="module")
def demo_dir(pg_extension: dict) -> Iterator[Path]:
    """A fresh data directory (traversable by the server's OS user when running as root)."""
    base = Path(tempfile.mkdtemp(prefix="pgsieve-demo-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        server.stop(base / "pgdata")
        shutil.rmtree(base, ignore_errors=True)


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    rc = demo.main(argv, out=out)
    return rc, out.getvalue()


def test_demo_runs_and_caches(demo_dir: Path) -> None:
    args = ["--data-dir", str(demo_dir / "pgdata"), "--max-pages", "12", "--no-progress", "-k", "5",
            "--skip-install"]  # the session fixture installed this tree's extension already
    rc, text = _run(args)
    assert rc == 0, text
    m = re.search(r"corpus: 12 man pages, (\d+) passages", text)
    assert m and int(m.group(1)) > 30, text
    assert re.search(r"embeddings: encoded \d+ passages", text)
    assert re.search(r"index: CREATE INDEX ON manpages USING binary_scan \(emb vector_cosine_ops\) "
                     r"WITH \(quantizer = 'mean'\) built in [\d.]+s", text)
    assert re.search(r"plan: Index Scan using \S+ on manpages", text), text
    assert "SET LOCAL pgsieve.binary_rerank = 100;" in text and "ORDER BY" in text
    for query in demo.DEFAULT_QUERIES:
        block = text.split(f"query: {query!r}", 1)
        assert len(block) == 2, f"missing query {query!r}"
        assert re.match(r"  \([\d.]+ ms with binary_scan; exact scan [\d.]+ ms; recall@5 vs exact [\d.]+\)",
                        block[1])
        ranks = re.findall(r"^  (\d)\. (\S+\(\d\w*\)) +(\d\.\d{4})", block[1].split("\nquery:")[0], re.M)
        assert [r[0] for r in ranks] == ["1", "2", "3", "4", "5"]
        scores = [float(r[2]) for r in ranks]
        assert scores == sorted(scores)
    assert (demo_dir / "demo-cache").is_dir()

    rc2, text2 = _run(args + ["--query", "print formatted output"])
    assert rc2 == 0, text2
    assert re.search(r"embeddings: \d+ from cache", text2)
    assert "query: 'print formatted output'" in text2 and "query: 'allocate memory'" not in text2


def test_demo_reports_failures(monkeypatch: pytest.MonkeyPatch, demo_dir: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from pgsieve import extbuild

    def broken(*_a: object, **_k: object) -> dict:
        raise extbuild.ExtBuildError("pg_config not found")

    monkeypatch.setattr(extbuild, "install_extension", broken)
    rc, _ = _run(["--data-dir", str(demo_dir / "pgdata"), "--max-pages", "1", "--no-progress"])
    assert rc == 1
    assert "could not build/install the pgsieve extension: pg_config not found" in capsys.readouterr().err
    assert demo.main(["--max-pages", "0"]) == 2
