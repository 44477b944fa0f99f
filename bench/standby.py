"""Streaming-replication equality for pgsieve's index access methods (binary_scan, sparse_block, multivec_fde).

For each access method: a throwaway primary (``bench/reliability.py``'s server settings, so
``wal_consistency_checking = 'generic'``: every GenericXLog record carries full-page images and the standby's
redo compares each replayed page with them, going FATAL on a mismatch) with the same table, NULLs, index and
unlogged twin as the crash harness; a hot standby made from it by ``pg_basebackup -R -X stream``; then rounds of
INSERT bursts, DELETE batches, UPDATEs, ``VACUUM (INDEX_CLEANUP ON)`` and one index rebuild per round (REINDEX,
DROP + CREATE INDEX in one transaction, or CREATE INDEX CONCURRENTLY) on the primary.  After each round the
standby must replay up to the primary's current WAL position, and then, on the standby vs the primary:

* the sequential scan (every row's id and value as text) must be identical;
* the exact index scan of every row and three LIMIT 10 queries (index settings as in the crash harness: nothing
  pruned, every candidate re-ranked) must return the same (id, distance) lists on both nodes, and on the standby
  the same as its own sequential scan;
* ``pgsieve_index_check(index, heapallindexed => true)`` must pass on both and count the same heap rows;
* the standby must still run, with no FATAL/PANIC and no "inconsistent page" in its log;
* the unlogged twin is not replicated: reading it on the standby fails with "cannot access temporary or
  unlogged relations during recovery" and nothing else.

After the last round the standby is promoted: the unlogged twin must then be empty, its index (reset from the
init fork) must verify, and after refilling it must verify with every row and answer an exact index scan equal
to the sequential scan; the promoted node's logged index must verify too.  Every miss is one "difference".

    python bench/standby.py --rounds 100 --update-md     # BENCHMARKS.md "standby" section

``tests/test_standby.py`` runs a few rounds per AM with the same code.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import reliability as R  # noqa: E402

NOT_REPLICATED = "cannot access temporary or unlogged relations during recovery"
BAD_LOG = ("inconsistent page found", "FATAL", "PANIC", "TRAP")
EXPECTED_LOG = ("terminating walreceiver process due to administrator command",)  # promotion stops it


@dataclass
class RoundResult:
    am: str
    round: int
    ops: list[str]
    rows: int = 0
    replay_s: float = 0.0
    heap_checked_primary: int = -1
    heap_checked_standby: int = -1
    differences: list[str] = field(default_factory=list)


class StandbyHarness(R.Harness):
    """One AM's primary (the crash harness's server, table and index) and its streaming hot standby."""

    def __init__(self, workload: R.AmWorkload, base: Path, seed: int = 1) -> None:
        super().__init__(workload, base / "primary", seed)
        self.standby = R.CrashServer(base / "standby")
        self.standby_log_offset = 0

    # -- setup -------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        sb = self.standby
        sb.base.mkdir(parents=True, exist_ok=True)
        sb.base.chmod(0o755)
        user = R._system_user()  # noqa: SLF001 - the OS user the servers run as
        if user is not None:
            import os
            import pwd

            pw = pwd.getpwnam(user)
            os.chown(sb.base, pw.pw_uid, pw.pw_gid)
        R._commands().pg_basebackup(  # noqa: SLF001
            ["-D", str(sb.pgdata), "-R", "-X", "stream", "-c", "fast", "-h", str(self.server.base), "-U", "postgres"],
            user=user, timeout=300)
        with (sb.pgdata / "postgresql.conf").open("a") as f:
            f.write(f"\n# bench/standby.py\nunix_socket_directories = '{sb.base}'\nhot_standby = on\n")
        sb.start()
        sb.wait_ready(R.DBNAME)
        self.standby_log_offset = sb.log_size()  # connection refusals while it started are not findings

    def connect_standby(self) -> psycopg.Connection:
        c = psycopg.connect(self.standby.url(R.DBNAME), autocommit=True, connect_timeout=10)
        for s in self.w.session:
            c.execute(s)
        return c

    def close(self) -> None:
        self.standby.destroy()
        super().close()

    # -- a round on the primary --------------------------------------------------------------------------------

    def work(self, n: int) -> list[str]:
        """Inserts, deletes, updates, a VACUUM and a rebuild on the primary, in a shuffled order."""
        rng = self.rng
        led = R.Ledger()
        live = set(self.ids)
        plan = ["insert"] * 4 + ["delete"] * 3 + ["update"] * 2 + ["vacuum", "build"]
        rng.shuffle(plan)
        done: list[str] = []
        with self.connect() as c:
            for op in plan:
                if op == "insert":
                    self._step_insert(c, rng, led, live)
                elif op == "delete":
                    self._step_delete(c, rng, led, live)
                elif op == "update":
                    self._step_update(c, rng, led, live)
                elif op == "vacuum":
                    self._step_vacuum(c, led)
                else:
                    self._step_build(c, rng, led)
                done.append(led.in_flight)
            self.ids = {r[0] for r in c.execute(f"SELECT id FROM {R.TABLE}").fetchall()}
        return done

    def wait_replayed(self, timeout: float = 300) -> float:
        """Wait until the standby replayed the primary's current WAL position; seconds waited."""
        t0 = time.monotonic()
        with psycopg.connect(self.server.url(R.DBNAME), autocommit=True) as p:
            lsn = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with psycopg.connect(self.standby.url(R.DBNAME), autocommit=True, connect_timeout=10) as s:
            while not s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
                if time.monotonic() - t0 > timeout or not self.standby.running():
                    raise RuntimeError(f"the standby did not replay up to {lsn}:\n{self.standby.log_tail()}")
                time.sleep(0.05)
        return time.monotonic() - t0

    # -- comparing the nodes -----------------------------------------------------------------------------------

    def _seq_rows(self, c: psycopg.Connection) -> list[tuple[int, str | None]]:
        with c.transaction():
            c.execute("SET LOCAL enable_indexscan = off")
            c.execute("SET LOCAL enable_bitmapscan = off")
            c.execute("SET LOCAL enable_indexonlyscan = off")
            return c.execute(f"SELECT id, emb::text FROM {R.TABLE} ORDER BY id").fetchall()

    def _standby_log_problems(self) -> list[str]:
        text = self.standby.log_since(self.standby_log_offset)
        self.standby_log_offset = self.standby.log_size()
        return [ln for ln in text.splitlines()
                if any(b in ln for b in BAD_LOG) and not any(e in ln for e in EXPECTED_LOG)]

    def compare(self, res: RoundResult) -> None:
        diff = res.differences
        if not self.standby.running():
            diff.append("the standby is not running")
        diff.extend(f"standby log: {ln}" for ln in self._standby_log_problems())
        if not self.standby.running():
            return
        with self.connect() as p, self.connect_standby() as s:
            seq_p, seq_s = self._seq_rows(p), self._seq_rows(s)
            res.rows = len(seq_p)
            if seq_p != seq_s:
                diff.append(f"sequential scans differ: {len(seq_p)} rows on the primary, {len(seq_s)} on the standby, "
                            f"{len(set(seq_p) ^ set(seq_s))} rows not on both")
            for node, c in (("primary", p), ("standby", s)):
                heap, err = R.check_index(c, R.INDEX)
                setattr(res, f"heap_checked_{node}", heap)
                if err:
                    diff.append(f"pgsieve_index_check on the {node}: {err}")
                elif heap != len(seq_p):
                    diff.append(f"pgsieve_index_check on the {node} counted {heap} heap rows, the table has {len(seq_p)}")
            with s.transaction():
                s.execute("SET LOCAL enable_seqscan = off")
                q0 = self.w.make_query(random.Random(res.round))
                plan = "\n".join(r[0] for r in s.execute(
                    f"EXPLAIN SELECT id FROM {R.TABLE} ORDER BY emb {self.w.op} %(q)s::{self.w.column_type} LIMIT 5",
                    {"q": q0}).fetchall())
            if f"Index Scan using {R.INDEX}" not in plan:
                diff.append(f"the standby does not use the index:\n{plan}")
            qrng = random.Random(res.round * 7919 + 5)
            for limit in (len(seq_p) + 10, 10, 10, 10):
                q = self.w.make_query(qrng)
                idx_p = self._ordered(p, q, limit, True)
                idx_s = self._ordered(s, q, limit, True)
                seq = self._ordered(s, q, limit, False)
                if idx_p != idx_s:
                    diff.append(f"LIMIT {limit} index scans differ between primary and standby "
                                f"({len(idx_p)} vs {len(idx_s)} rows)")
                key = lambda r: (r[0], -1.0 if r[1] is None else r[1])  # noqa: E731
                if limit > 10:
                    same = sorted(idx_s, key=key) == sorted(seq, key=key) and R.in_order([d for _, d in idx_s])
                else:
                    same = [d for _, d in idx_s] == [d for _, d in seq]
                if not same:
                    diff.append(f"LIMIT {limit}: the standby's index scan differs from its sequential scan")
            # the unlogged twin exists on the standby but cannot be read there
            try:
                s.execute(f"SELECT count(*) FROM {R.UTABLE}")
                diff.append("the unlogged table was readable on the standby")
            except psycopg.Error as e:
                if NOT_REPLICATED not in str(e):
                    diff.append(f"reading the unlogged table on the standby: {e}")

    def round(self, n: int) -> RoundResult:
        res = RoundResult(am=self.w.am, round=n, ops=self.work(n))
        try:
            res.replay_s = round(self.wait_replayed(), 3)
            self.compare(res)
        except (psycopg.Error, RuntimeError) as e:
            res.differences.append(f"{type(e).__name__}: {e}")
        return res

    def promote(self) -> list[str]:
        """Promote the standby; its unlogged twin must be empty, reset and usable, its index verifiable."""
        diff: list[str] = []
        R._commands().pg_ctl(["-w", "-t", "120", "promote"], pgdata=self.standby.pgdata,  # noqa: SLF001
                             user=R._system_user(), timeout=150)  # noqa: SLF001
        self.standby.wait_ready(R.DBNAME)
        with self.connect_standby() as s:
            if s.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                diff.append("the promoted standby is still in recovery")
            left = s.execute(f"SELECT count(*) FROM {R.UTABLE}").fetchone()[0]
            if left:
                diff.append(f"the unlogged table has {left} rows on the promoted standby")
            heap, err = R.check_index(s, R.UINDEX)
            if err or heap != 0:
                diff.append(f"unlogged index after promotion: {err or f'counted {heap} rows of 0'}")
            self._fill_unlogged(s)
            heap, err = R.check_index(s, R.UINDEX)
            if err or heap != R.UNLOGGED_ROWS:
                diff.append(f"refilled unlogged index: {err or f'counted {heap} rows of {R.UNLOGGED_ROWS}'}")
            q = self.w.make_query(random.Random(99))
            sql = (f"SELECT id, emb {self.w.op} %(q)s::{self.w.column_type} FROM {R.UTABLE} "
                   f"ORDER BY emb {self.w.op} %(q)s::{self.w.column_type} LIMIT 100")
            with s.transaction():
                s.execute("SET LOCAL enable_seqscan = off")
                via_idx = s.execute(sql, {"q": q}).fetchall()
            with s.transaction():
                s.execute("SET LOCAL enable_indexscan = off")
                s.execute("SET LOCAL enable_bitmapscan = off")
                via_seq = s.execute(sql, {"q": q}).fetchall()
            key = lambda r: (r[0], -1.0 if r[1] is None else r[1])  # noqa: E731
            if sorted(via_idx, key=key) != sorted(via_seq, key=key):
                diff.append("the promoted unlogged index's scan differs from the sequential scan")
            heap, err = R.check_index(s, R.INDEX)
            if err or heap != len(self.ids):
                diff.append(f"logged index after promotion: {err or f'counted {heap} rows of {len(self.ids)}'}")
        diff.extend(f"standby log: {ln}" for ln in self._standby_log_problems())
        return diff


# --------------------------------------------------------------------------------------------------------------
# the run and its report


def run_am(am: str, rounds: int, base: Path, seed: int = 1, progress: Any = None) -> dict[str, Any]:
    h = StandbyHarness(R.WORKLOADS[am], base / am, seed)
    results: list[RoundResult] = []
    promotion: list[str] = []
    t0 = time.monotonic()
    try:
        h.setup()
        for n in range(rounds):
            r = h.round(n)
            results.append(r)
            if progress:
                progress(r)
            if not h.standby.running():
                break
        if h.standby.running():
            promotion = h.promote()
        else:
            promotion = ["the standby stopped: not promoted"]
    except Exception as e:  # noqa: BLE001 - setup / promotion failure: counted, reported, next AM
        promotion.append(f"aborted: {type(e).__name__}: {e}")
    finally:
        h.close()
    return {"am": am, "rounds": [asdict(r) for r in results], "promotion": promotion,
            "differences": sum(len(r.differences) for r in results) + len(promotion),
            "seconds": round(time.monotonic() - t0, 1)}


def run(rounds: int, ams: list[str], seed: int = 1, progress: Any = None) -> dict[str, Any]:
    from pgsieve import extbuild

    extbuild.install_extension()
    root = Path(tempfile.mkdtemp(prefix="pgsieve-standby-"))
    root.chmod(0o755)
    t0 = time.monotonic()
    try:
        per_am = [run_am(am, rounds, root, seed, progress) for am in ams]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"rounds": rounds, "seed": seed, "date": time.strftime("%Y-%m-%d"),
            "seconds": round(time.monotonic() - t0, 1), "ams": per_am,
            "differences": sum(a["differences"] for a in per_am)}


def render_md(summary: dict[str, Any], command: str) -> str:
    lines = [
        f"Run {summary['date']}: `{command}` — {summary['seconds']:.0f} s, seed {summary['seed']}: "
        f"**differences: {summary['differences']}**.",
        "",
        "| AM | rounds | statements on the primary | rows at the end | index rebuilds (REINDEX / recreate / CIC) | "
        "max replay wait s | verifier runs (both nodes) | differences | promotion + unlogged index |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in summary["ams"]:
        rs = a["rounds"]
        ops = [o for r in rs for o in r["ops"]]
        builds = " / ".join(str(sum(o == f"build {k}" for o in ops)) for k in ("reindex", "recreate", "concurrently"))
        lines.append(
            f"| `{a['am']}` | {len(rs)} | {len(ops)} | {rs[-1]['rows'] if rs else 0} | {builds} | "
            f"{max((r['replay_s'] for r in rs), default=0):.2f} | {2 * len(rs)} | {a['differences']} | "
            f"{'ok' if not a['promotion'] else '; '.join(a['promotion'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=100, help="rounds per access method")
    ap.add_argument("--ams", default=",".join(R.WORKLOADS), help="comma-separated access methods")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write every round's result here")
    ap.add_argument("--update-md", action="store_true", help="rewrite the standby section of BENCHMARKS.md")
    args = ap.parse_args(argv)
    ams = R.parse_ams(ap, args.ams)

    def progress(r: RoundResult) -> None:
        R.log(f"{r.am} round {r.round}: {len(r.ops)} statements, {r.rows} rows, replayed in {r.replay_s}s, "
              f"{'same' if not r.differences else 'DIFFERENT: ' + '; '.join(r.differences)}")

    summary = run(args.rounds, ams, args.seed, progress)
    command = f"python bench/standby.py --rounds {args.rounds}" + (
        f" --ams {args.ams}" if args.ams != ",".join(R.WORKLOADS) else "") + " --update-md"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary | {"command": command}, indent=1))
    R.log(f"differences: {summary['differences']} ({summary['seconds']} s)")
    for a in summary["ams"]:
        for p in a["promotion"]:
            R.log(f"{a['am']} promotion: {p}")
    if args.update_md:
        from bench import common

        common.replace_md_section("standby", render_md(summary, command))
    return 1 if summary["differences"] else 0


if __name__ == "__main__":
    sys.exit(main())
