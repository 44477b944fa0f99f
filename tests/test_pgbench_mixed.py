"""pgbench mixed load (``bench/pgbench_mixed.py``): 16 clients for a few seconds per access method.

INSERT / DELETE / UPDATE / index search / VACUUM scripts run concurrently on a throwaway server; pgbench must
exit 0 with no failed transaction or aborted client and the server log must hold no ERROR, FATAL or PANIC; then
``pgsieve_index_check(index, true)`` must pass counting every row, and exact index scans must equal the
sequential scan.  ``PGSIEVE_PGBENCH_SECONDS`` (default 4) per access method; ``python bench/pgbench_mixed.py``
runs the long version.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import pgbench_mixed as P  # noqa: E402
from bench import reliability as R  # noqa: E402

SECONDS = int(os.environ.get("PGSIEVE_PGBENCH_SECONDS", "4"))


@pytest.mark.parametrize("am", list(R.WORKLOADS))
def test_pgbench_mixed(am: str, private_root: Path) -> None:
    r = P.run_am(am, SECONDS, clients=16, threads=2, base=private_root)
    print(r)
    assert r.exit_status == 0 and r.failed_transactions == 0 and r.aborted_clients == 0, r
    assert not r.server_errors, "\n".join(r.server_errors)
    assert r.search_uses_index
    # every script ran, and ran concurrently with the others
    assert set(r.per_script) == set(P.scripts(am)) and all(n > 0 for n in r.per_script.values()), r.per_script
    # pgbench's per-script counts and its total may disagree by the transactions in flight when -T ends
    assert abs(r.transactions - sum(r.per_script.values())) <= 16, (r.transactions, r.per_script)
    assert not r.verifier_error and r.heap_checked == r.rows > 0, (r.verifier_error, r.heap_checked, r.rows)
    assert not r.scan_mismatches, r.scan_mismatches
    assert r.ok


def test_errors_are_counted() -> None:
    """pgbench's summary is parsed: failed transactions and aborted clients are errors."""
    out = ("number of transactions actually processed: 120\nnumber of failed transactions: 3 (2.4%)\n"
           "SQL script 1: /x/insert.sql\n - weight: 5 (targets 50.0% of total)\n - 70 transactions (58.3% of total)\n"
           "SQL script 2: /x/vacuum.sql\n - weight: 1 (targets 10.0% of total)\n - 50 transactions (41.7% of total)\n"
           "pgbench: error: client 3 aborted in command 0 (SQL) of script 1; ERROR:  boom\n")
    r = P.AmResult(am="binary_scan", seconds=1, clients=1, exit_status=2)
    P.parse_pgbench(out, r)
    assert r.transactions == 120 and r.failed_transactions == 3 and r.aborted_clients == 1
    assert r.per_script == {"insert": 70, "vacuum": 50}
    assert r.errors == 5 and not r.ok
