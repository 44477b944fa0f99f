"""What the bench-suite smoke tests share: run one suite once against the session's server, as bench/run.py would.

Importable from tests (``sys.path`` gets the repository root, so ``bench`` imports).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import common as C  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.suites import SUITES  # noqa: E402


def run_suite_once(suite: str, argv: list[str], url: str, n: int) -> tuple[list[dict[str, Any]], C.Context]:
    """Parse ``--suite suite`` + ``argv`` like bench/run.py, run the suite with one timed pass; (rows, context)."""
    args = bench_run.parse_args(["--suite", suite, *argv])
    meta = {"suite": suite, "n": n, "n_real": n, "synthetic": False, "date": C.now_iso(), "command": "test",
            "repeat": 1, "machine": {"cores": 2}}
    ctx = C.Context(args=args, url=url, emb=np.zeros((n, 1), np.float32), n_real=n,
                    queries=np.zeros((0, 1), np.float32), relevant=[], truth=np.zeros((0, 10), np.int64),
                    truth_scores=np.zeros((0, 10), np.float32), meta=meta)
    saved = C.REPEAT
    C.REPEAT = 1
    try:
        rows = SUITES[suite](ctx)
    finally:
        C.REPEAT = saved
    return rows, ctx
