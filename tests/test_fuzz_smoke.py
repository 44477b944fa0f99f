"""Smoke run of bench/fuzz.py: ~2,000 hostile inputs against every pgsieve type and function (< 30 s).

The assertions are the campaign's: no crash (connection alive, ``pg_postmaster_start_time()`` unchanged) and every
error message names its type or function (core's reloption / COPY framing messages and pgvector's typmod check are
counted apart).
"""

from __future__ import annotations

import time

from bench import fuzz


def test_fuzz_smoke(db_url: str) -> None:
    camp = fuzz.Campaign(db_url, seed=20261128, batch=200, batch_timeout_s=30)
    try:
        camp.setup()
        t0 = time.monotonic()
        s = camp.run(2000, progress_every=1e9)
        assert time.monotonic() - t0 < 60
    finally:
        camp.close()
    assert s["inputs"] == 2000
    assert s["accepted"] > 0 and s["rejected"] > 0
    assert s["crashes"] == 0, s["crash_details"]
    assert s["postmaster_unchanged"]
    assert s["unnamed"] == 0, s["unnamed_errors"]
    # every input family was exercised
    assert set(s["per_category"]) >= {name for name, _, _ in fuzz.GENERATORS} - {"CREATE INDEX / REINDEX / check"}
    assert s["per_category"]["multivec binary COPY"]["inputs"] > 0


def test_classify() -> None:
    assert fuzz.classify('invalid input syntax for type multivec: "[["') == "named"
    assert fuzz.classify("muvera_fde: reps must be between 1 and 4096") == "named"
    assert fuzz.classify("something went wrong") == "unnamed"
    assert fuzz.classify('value 0 out of bounds for option "reps"') == "reloption bounds (core)"
