"""End to end: ``pgsieve demo`` on its own embedded server in a temporary data directory."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pgsieve import demo, server  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/usr/share/man/man1").is_dir(), reason="man pages not installed")


@pytest.fixture(scope="module")
def demo_dir(private_root: Path) -> Iterator[Path]:
    """The demo's data directory: the module's private root (conftest.py), its server stopped afterwards."""
    try:
        yield private_root
    finally:
        server.stop(private_root / "pgdata")


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    rc = demo.main(argv, out=out)
    return rc, out.getvalue()


def _block(text: str, query: str) -> str:
    parts = text.split(f"\nquery: {query!r}\n", 1)
    assert len(parts) == 2, f"missing query {query!r}"
    return parts[1].split("\nquery:")[0].split("\nevaluation:")[0]


def test_demo_runs_hybrid_and_caches(demo_dir: Path) -> None:
    args = ["--data-dir", str(demo_dir / "pgdata"), "--max-pages", "12", "--no-progress", "-k", "5",
            "--eval-queries", "12", "--skip-install"]  # the session fixture installed this tree's extension
    rc, text = _run(args)
    assert rc == 0, text
    m = re.search(r"corpus: 12 man pages, (\d+) passages", text)
    assert m and int(m.group(1)) > 30, text
    n = int(m.group(1))
    assert re.search(rf"embeddings: 0 from cache, encoded {n} passages", text), text
    assert re.search(rf"bm25: {n} passages tokenized and encoded in [\d.]+s .*statistics 'manpages' in "
                     r"pgsieve_catalog.bm25_df, pgsieve_catalog.bm25_corpus", text), text
    assert f"ingest: {n} rows into manpages (id, doc_id, title, body, emb vector(384), " \
           "sparse sparsevec(30522)) with binary COPY" in text
    assert re.search(r"index: CREATE INDEX \S+ ON manpages USING binary_scan \(emb vector_cosine_ops\) "
                     r"WITH \(quantizer = 'mean'\) built in [\d.]+s, \d+ \w?B", text), text
    assert re.search(r"index: CREATE INDEX \S+ ON manpages USING sparse_block \(sparse\) "
                     r"built in [\d.]+s, \d+ \w?B", text), text
    # the one hybrid statement scans both indexes (forced on a table this small, and said so)
    assert "forcing the indexes with SET LOCAL enable_seqscan = off" in text
    assert re.search(r"plan: Index Scan using manpages_sparse_block on manpages", text), text
    assert re.search(r"plan: Index Scan using manpages_emb_binary_scan on manpages", text), text
    sql_text = text.split("hybrid sql", 1)[1].split("\nquery:")[0]
    assert "SET LOCAL pgsieve.sparse_top_k = 50;" in sql_text and "SET LOCAL pgsieve.binary_rerank = 100;" in sql_text
    assert sql_text.count("ORDER BY \"sparse\" <#> %(sparse_q)s LIMIT %(k_gather)s") == 1
    assert sql_text.count("ORDER BY \"emb\" <=> %(dense_q)s LIMIT %(k_gather)s") == 1
    assert "FULL OUTER JOIN" in sql_text and "1.0 / (%(rrf_k)s::float8 + s.rank)" in sql_text
    assert text.count("hybrid sql") == 1

    both_seen = False
    for query in demo.DEFAULT_QUERIES:
        block = _block(text, query)
        for stage in ("bm25", "dense"):  # the single stages: timing and their top-5 page names
            m = re.search(rf"^  {stage} +[\d.]+ ms  (.+)$", block, re.M)
            assert m, (stage, block)
            assert len(m.group(1).split(", ")) == 5
        assert re.search(r"^  hybrid +[\d.]+ ms  \(RRF of the top 50 of each\)$", block, re.M), block
        rows = re.findall(r"^    (\d)\. (\S+\(\d\w*\)) +rrf (\d\.\d{4})  bm25 (#\d+|-) +dense (#\d+|-) ",
                          block, re.M)
        assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"], block
        scores = [float(r[2]) for r in rows]
        assert scores == sorted(scores, reverse=True)
        for _, _, score, bm, de in rows:
            assert bm != "-" or de != "-"  # every fused row came from at least one gather
            want = sum(1 / (60 + int(r[1:])) for r in (bm, de) if r != "-")
            assert abs(float(score) - want) < 6e-5
        assert any(bm != "-" for *_, bm, _ in rows) and any(de != "-" for *_, de in rows)
        both_seen |= any(bm != "-" and de != "-" for *_, bm, de in rows)
    assert both_seen  # some results were found by both stages and fused

    m = re.search(r"evaluation: 12 known-item queries", text)
    assert m, text
    succ = {s: float(v) for s, v in re.findall(r"success@10 (bm25|dense|hybrid) +(\d\.\d{3})  \(\d+/12; mean "
                                                r"[\d.]+ ms per query\)", text)}
    assert set(succ) == {"bm25", "dense", "hybrid"} and all(0 <= v <= 1 for v in succ.values())
    assert succ["hybrid"] > 0.5
    assert (demo_dir / "demo-cache").is_dir()

    # a second run reuses the cache, and a larger corpus encodes only the new passages
    rc2, text2 = _run(args[:3] + ["13"] + args[4:] + ["--eval-queries", "0", "--query", "print formatted output"])
    assert rc2 == 0, text2
    assert re.search(rf"embeddings: {n} from cache, encoded \d+ passages", text2), text2
    assert "query: 'print formatted output'" in text2 and "query: 'allocate memory'" not in text2
    assert "evaluation:" not in text2
    rc3, text3 = _run(args + ["--eval-queries", "0", "--query", "allocate memory"])
    assert rc3 == 0, text3
    assert re.search(rf"embeddings: {n} from cache /", text3), text3


def test_demo_reports_failures(monkeypatch: pytest.MonkeyPatch, demo_dir: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from pgsieve import extbuild

    def broken(*_a: object, **_k: object) -> dict:
        raise extbuild.ExtBuildError("pg_config not found")

    monkeypatch.setattr(extbuild, "install_extension", broken)
    rc, _ = _run(["--data-dir", str(demo_dir / "pgdata"), "--max-pages", "1", "--no-progress"])
    assert rc == 1
    assert "could not build/install the pgsieve extension: pg_config not found" in capsys.readouterr().err
    assert demo.main(["--max-pages", "-1"]) == 2
    assert demo.main(["--k-gather", "0"]) == 2


class _FakeEncoder:
    """Deterministic 'embeddings' from the text, counting what it encodes."""

    dim = 4
    batch_size = 8

    def __init__(self) -> None:
        self.encoded = 0

    def fingerprint(self) -> str:
        return "fake"

    def encode_documents(self, texts: list[str]) -> "np.ndarray":
        import numpy as np

        self.encoded += len(texts)
        return np.array([[len(t), t.count("a"), hash(t) % 97, 1.0] for t in texts], dtype=np.float32)


def test_embedding_cache_is_per_text(tmp_path: Path) -> None:
    """Keys are per passage text, so a larger corpus encodes only new texts (and 1000 SHA-1 keys surely
    include some whose raw digest ends in a NUL byte, which numpy byte strings would drop)."""
    import numpy as np

    from pgsieve.corpus import Passage

    ps = [Passage(f"p{i}#x.0", f"p{i % 900}(1)", "DESCRIPTION", f"text {i % 900}") for i in range(1000)]
    enc = _FakeEncoder()
    out = io.StringIO()
    first = demo._cached_embeddings(ps[:600], enc, tmp_path, out, False)
    assert enc.encoded == 600 and "0 from cache, encoded 600 passages" in out.getvalue()
    again = demo._cached_embeddings(ps[:600], enc, tmp_path, out, False)
    assert enc.encoded == 600 and np.array_equal(first, again)
    full = demo._cached_embeddings(ps, enc, tmp_path, out, False)
    assert enc.encoded == 900  # texts 600..899 are new; 900..999 repeat texts 0..99
    assert "700 from cache, encoded 300 passages" in out.getvalue()  # 100 repeats are hits
    assert full.shape == (1000, 4) and np.array_equal(full[:600], first)
    assert np.array_equal(full[900:], full[:100])
    (tmp_path / "manpages-emb-fake.npz").write_bytes(b"garbage")
    out = io.StringIO()
    demo._cached_embeddings(ps[:10], enc, tmp_path, out, False)
    assert "ignoring unreadable cache" in out.getvalue() and enc.encoded == 910
