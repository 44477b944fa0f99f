"""Streaming standby equality for the three index access methods (``bench/standby.py``, a few rounds each).

A throwaway primary with ``wal_consistency_checking = 'generic'`` and a hot standby from ``pg_basebackup -R``;
rounds of INSERT / DELETE / UPDATE / VACUUM / rebuild on the primary; after each the standby must have replayed
everything without a FATAL or an inconsistent page, and give the primary's sequential scan, the same exact index
scans, and a clean ``pgsieve_index_check(index, true)``; after promotion the unlogged twin must be empty and its
index usable.  ``PGSIEVE_STANDBY_ROUNDS`` (default 4) rounds per access method; ``python bench/standby.py`` runs
the long version.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import reliability as R  # noqa: E402
from bench import standby as S  # noqa: E402

ROUNDS = int(os.environ.get("PGSIEVE_STANDBY_ROUNDS", "4"))


@pytest.mark.parametrize("am", list(R.WORKLOADS))
def test_standby_equality(am: str, private_root: Path) -> None:
    out = S.run_am(am, ROUNDS, private_root, seed=3)
    diffs = [f"round {r['round']}: {d}" for r in out["rounds"] for d in r["differences"]] + out["promotion"]
    assert not diffs, "\n".join(diffs)
    assert len(out["rounds"]) == ROUNDS
    for r in out["rounds"]:
        # both nodes' verifiers ran and counted every row
        assert r["heap_checked_primary"] == r["heap_checked_standby"] == r["rows"] > 0
        assert any(o.startswith("build ") for o in r["ops"]) and "vacuum" in r["ops"]


def test_comparison_sees_a_lagging_standby(private_root: Path) -> None:
    """The comparison is not vacuous: with replay paused, a round's changes show up as differences."""
    h = S.StandbyHarness(R.WORKLOADS["binary_scan"], private_root / "lag", seed=5)
    try:
        h.setup()
        with psycopg.connect(h.standby.url(R.DBNAME), autocommit=True) as s:
            s.execute("SELECT pg_wal_replay_pause()")
        res = S.RoundResult(am="binary_scan", round=0, ops=h.work(0))
        h.compare(res)
        assert any("sequential scans differ" in d for d in res.differences), res.differences
        with psycopg.connect(h.standby.url(R.DBNAME), autocommit=True) as s:
            s.execute("SELECT pg_wal_replay_resume()")
        res = S.RoundResult(am="binary_scan", round=1, ops=[])
        h.wait_replayed()
        h.compare(res)
        assert not res.differences, res.differences
    finally:
        h.close()
