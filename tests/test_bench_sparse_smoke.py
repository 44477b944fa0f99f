"""Smoke test of the ``sparse`` bench suite: a few hundred real passages, the fast systems, no timing assertions.

Runs ``bench.suites.sparse.run`` against the session's throwaway server (``db_url``), with the suite's vector cache
in a temporary directory, and checks the JSON rows (schema, recall computed, the exact scan agreeing with numpy).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import common as C  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.suites import SUITES, SYSTEMS  # noqa: E402

N = 300


@pytest.fixture(scope="module")
def sparse_rows(db_url, tmp_path_factory):
    pytest.importorskip("pgsieve.encoders.bm25")
    try:
        from pgsieve import corpus as pc
        pc.load_manpages(max_pages=1)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    systems = ["seqscan", "pgsieve"]
    try:
        import seismic  # noqa: F401  (importable?)
        systems.append("pyseismic")
    except ImportError:
        pass
    data = tmp_path_factory.mktemp("sparse-bench")
    args = bench_run.parse_args(["--suite", "sparse", "--n", str(N), "--limit-passages", str(N), "--queries", "20",
                                 "--systems", ",".join(systems), "--data-dir", str(data), "--dsn", db_url,
                                 "--no-plot"])
    meta = {"suite": "sparse", "n": N, "n_real": N, "synthetic": False, "date": C.now_iso(), "command": "test"}
    ctx = C.Context(args=args, url=db_url, emb=np.zeros((N, 1), np.float32), n_real=N,
                    queries=np.zeros((0, 1), np.float32), relevant=[], truth=np.zeros((0, 10), np.int64),
                    truth_scores=np.zeros((0, 10), np.float32), meta=meta)
    rows = SUITES["sparse"](ctx)
    return rows, ctx, systems


def test_registered():
    assert "sparse" in SUITES and set(SYSTEMS["sparse"]) >= {"seqscan", "pgsieve", "pyseismic", "pgvector_hnsw"}


def test_rows_schema_and_recall(sparse_rows):
    rows, ctx, systems = sparse_rows
    assert not ctx.errors, ctx.errors
    json.dumps(rows, default=C._json_default)
    assert {r["system"] for r in rows} == set(systems)
    for r in rows:
        for k in C.ROW_FIELDS:
            assert k in r, (k, r)
        assert r["suite"] == "sparse"
        assert r["config"]["dist"] in ("bm25", "splade_like")
        assert 0.0 <= r["recall_at_10"] <= 1.0
        assert r["p50_ms"] is not None and r["p50_ms"] > 0
        assert r["synthetic"] is False
    for dist in ("bm25", "splade_like"):
        rs = [r for r in rows if r["config"]["dist"] == dist]
        seq = [r for r in rs if r["system"] == "seqscan"]
        assert len(seq) == 1 and seq[0]["recall_at_10"] >= 0.999      # exact scan == numpy ground truth
        assert ctx.meta["sparse"]["dists"][dist]["ground_truth_check"]["ok"]
        pg = [r for r in rs if r["system"] == "pgsieve"]
        assert sum(1 for r in pg if r.get("default")) == 1
        assert len(pg) == 16                                            # default + 15 other sweep points
        assert all(r["build_s"] is not None and r["index_mb"] > 0 for r in pg)
        assert all(r["server_p50_ms"] is not None for r in pg)
        if "pyseismic" in systems:
            sz = [r for r in rs if r["system"] == "pyseismic"]
            assert len(sz) == 17 and all(r["timing"] == "in-process" for r in sz)
    # SPLADE-like queries carry many more non-zeros than BM25 ones
    d = ctx.meta["sparse"]["dists"]
    assert d["splade_like"]["query_nnz"]["mean"] > 2 * d["bm25"]["query_nnz"]["mean"]
    acc = ctx.meta["acceptance"]["bm25"]
    assert "recall_ok" in acc


def test_markdown_renders(sparse_rows, tmp_path):
    from bench.suites import sparse
    rows, ctx, _ = sparse_rows
    meta = {**ctx.meta, "machine": {"cores": 2}, "server": {}, "errors": []}
    md = tmp_path / "B.md"
    sparse.write_markdown(meta, rows, md)
    text = md.read_text()
    assert "<!-- bench:sparse:start -->" in text and "<!-- bench:sparse:end -->" in text
    assert "pgsieve **(default)**" in text
