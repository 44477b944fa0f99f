"""pgbench mixed load on pgsieve's index access methods (binary_scan, sparse_block, multivec_fde).

For each access method a throwaway server (``bench/reliability.py``'s server, here with autovacuum on and more
connections) gets the crash harness's table and index, and then ``pgbench -n -c 16 -j 2 -T <seconds>`` runs five
custom scripts at once, with random vectors made in SQL (``random()``) for every statement:

* ``insert.sql@5``: one row with a new id from a sequence (3% NULL values);
* ``delete.sql@5``: the row at or above a random id;
* ``update.sql@2``: a new value for the row at or above a random id;
* ``search.sql@8``: ``ORDER BY emb <op> q LIMIT 10`` through the index (``enable_seqscan = off``);
* ``vacuum.sql@1``: ``VACUUM (INDEX_CLEANUP ON)`` of the table.

Errors: pgbench's exit status, its "number of failed transactions", every client it reports aborted, and every
ERROR / FATAL / PANIC line of the server log during the run.  After the load the index must pass
``pgsieve_index_check(index, heapallindexed => true)`` counting every row, and its exact ordered scan of every
row and three exact LIMIT 10 queries must equal the sequential scan (the crash harness's check).

    python bench/pgbench_mixed.py --seconds 300 --update-md     # BENCHMARKS.md "pgbench-mixed" section

``tests/test_pgbench_mixed.py`` runs a few seconds per AM with the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import reliability as R  # noqa: E402

SETTINGS = {"max_connections": "40", "autovacuum": "on", "autovacuum_naptime": "5s",
            "wal_consistency_checking": "''"}  # the standby / crash harnesses check WAL; this one checks concurrency

# random values in SQL, one per evaluation (the WHERE ... > 0 keeps a subquery from being hoisted out of a row)
VALUE_SQL = {
    "binary_scan": "(SELECT array_agg(random() - 0.5)::vector(48) FROM generate_series(1, 48))",
    "sparse_block": ("(SELECT ('{{' || string_agg(t || ':' || round((0.01 + 2 * random())::numeric, 4), ',' ORDER BY t)"
                     " || '}}/{dim}') FROM (SELECT DISTINCT (1 + floor({top} * random() ^ 2))::int AS t "
                     "FROM generate_series(1, {nnz})) x)::sparsevec({dim})"),
    "multivec_fde": ("(SELECT ('[' || string_agg('[' || (SELECT string_agg(round((random() - 0.5)::numeric, 4)::text, ',')"
                     " FROM generate_series(1, {dim}) WHERE t > 0) || ']', ',') || ']') "
                     "FROM generate_series(1, 2 + (random() * 5)::int) t)::multivec({dim})"),
}


def value_sql(am: str, query: bool = False) -> str:
    if am == "sparse_block":
        return VALUE_SQL[am].format(dim=R.SP_DIM, top=R.SP_DIM - 1, nnz=6 if query else 14)
    if am == "multivec_fde":
        return VALUE_SQL[am].format(dim=R.MV_DIM)
    return VALUE_SQL[am]


def scripts(am: str) -> dict[str, tuple[int, str]]:
    """pgbench script name -> (weight, text)."""
    w = R.WORKLOADS[am]
    v = value_sql(am)
    return {
        "insert": (5, f"INSERT INTO {R.TABLE} (id, emb) SELECT nextval('{R.TABLE}_ids'), "
                      f"CASE WHEN random() < 0.03 THEN NULL ELSE {v} END;\n"),
        # one row per DELETE / UPDATE: a statement that locks several rows in heap order could deadlock with
        # another (a workload error, not the index's)
        "delete": (5, f"SELECT last_value AS maxid FROM {R.TABLE}_ids \\gset\n"
                      "\\set d random(1, :maxid)\n"
                      f"DELETE FROM {R.TABLE} WHERE id = (SELECT id FROM {R.TABLE} WHERE id >= :d ORDER BY id LIMIT 1);\n"),
        "update": (2, f"SELECT last_value AS maxid FROM {R.TABLE}_ids \\gset\n"
                      "\\set d random(1, :maxid)\n"
                      f"UPDATE {R.TABLE} SET emb = {v} WHERE id = "
                      f"(SELECT id FROM {R.TABLE} WHERE id >= :d ORDER BY id LIMIT 1);\n"),
        "search": (8, f"SELECT id FROM {R.TABLE} ORDER BY emb {w.op} {value_sql(am, query=True)} LIMIT 10;\n"),
        "vacuum": (1, f"VACUUM (INDEX_CLEANUP ON) {R.TABLE};\n"),
    }


@dataclass
class AmResult:
    am: str
    seconds: int
    clients: int
    exit_status: int = -1
    transactions: int = 0
    per_script: dict[str, int] = field(default_factory=dict)
    tps: float = 0.0
    failed_transactions: int = 0
    aborted_clients: int = 0
    server_errors: list[str] = field(default_factory=list)
    rows: int = 0
    heap_checked: int = -1
    verifier_error: str = ""
    scan_mismatches: list[str] = field(default_factory=list)
    search_uses_index: bool = False

    @property
    def errors(self) -> int:
        return (int(self.exit_status != 0) + self.failed_transactions + self.aborted_clients
                + len(self.server_errors))

    @property
    def ok(self) -> bool:
        return (self.errors == 0 and not self.verifier_error and self.heap_checked == self.rows
                and not self.scan_mismatches and self.search_uses_index and self.transactions > 0)


def pgbench_path() -> Path:
    return Path(R._commands().POSTGRES_BIN_PATH) / "pgbench"  # noqa: SLF001


def parse_pgbench(out: str, res: AmResult) -> None:
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    res.transactions = int(m.group(1)) if m else 0
    m = re.search(r"number of failed transactions: (\d+)", out)
    res.failed_transactions = int(m.group(1)) if m else 0
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    res.tps = float(m.group(1)) if m else 0.0
    for name, n in re.findall(r"SQL script \d+: \S*?(\w+)\.sql\n - weight: \d+ \([^)]*\)\n - (\d+) transactions", out):
        res.per_script[name] = int(n)
    res.aborted_clients = len(re.findall(r"^pgbench: error: client \d+ aborted", out, re.M))


def run_am(am: str, seconds: int, clients: int, threads: int, base: Path) -> AmResult:
    h = R.Harness(R.WORKLOADS[am], base / am)
    h.server.settings.update(SETTINGS)
    res = AmResult(am=am, seconds=seconds, clients=clients)
    try:
        h.setup()
        with h.connect() as c:
            c.execute(f"CREATE SEQUENCE {R.TABLE}_ids START {h.next_id}")
            with c.transaction():
                c.execute("SET LOCAL enable_seqscan = off")
                plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + scripts(am)["search"][1]).fetchall())
            res.search_uses_index = f"Index Scan using {R.INDEX}" in plan
        sdir = base / f"{am}-scripts"
        sdir.mkdir()
        args = [str(pgbench_path()), "-n", "-c", str(clients), "-j", str(threads), "-T", str(seconds),
                "-h", str(h.server.base), "-U", "postgres"]
        for name, (weight, text) in scripts(am).items():
            (sdir / f"{name}.sql").write_text(text)
            args += ["-f", f"{sdir / name}.sql@{weight}"]
        args.append(R.DBNAME)
        offset = h.server.log_size()
        env = dict(os.environ, PGOPTIONS="-c enable_seqscan=off")
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=seconds + 600)
        res.exit_status = proc.returncode
        parse_pgbench(proc.stdout + "\n" + proc.stderr, res)
        res.server_errors = [ln for ln in h.server.log_since(offset).splitlines()
                             if re.search(r"\b(ERROR|FATAL|PANIC):", ln)][:50]
        with h.connect() as c:
            res.rows = c.execute(f"SELECT count(*) FROM {R.TABLE}").fetchone()[0]
            res.heap_checked, res.verifier_error = R.check_index(c, R.INDEX)
            res.scan_mismatches = h.scan_mismatches(c, res.rows, seed=11)
        if not res.transactions:
            res.server_errors.append(f"pgbench output:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    finally:
        h.close()
    return res


def run(ams: list[str], seconds: int, clients: int = 16, threads: int = 2,
        progress=None) -> dict:  # noqa: ANN001
    from pgsieve import extbuild

    extbuild.install_extension()
    root = Path(tempfile.mkdtemp(prefix="pgsieve-pgbench-"))
    root.chmod(0o755)
    t0 = time.monotonic()
    results = []
    try:
        for am in ams:
            r = run_am(am, seconds, clients, threads, root)
            results.append(r)
            if progress:
                progress(r)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"date": time.strftime("%Y-%m-%d"), "seconds": round(time.monotonic() - t0, 1),
            "results": [asdict(r) | {"errors": r.errors, "ok": r.ok} for r in results]}


def render_md(summary: dict, command: str) -> str:
    names = list(scripts("binary_scan"))
    lines = [
        f"Run {summary['date']}: `{command}` — {summary['seconds']:.0f} s in all.",
        "",
        "| AM | clients × s | transactions | tps | " + " / ".join(names) + " | errors | rows after | "
        "verifier (heapallindexed) | exact index scans = seq scan |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["results"]:
        per = " / ".join(f"{r['per_script'].get(n, 0):,}" for n in names)
        ver = (f"ok, {r['heap_checked']:,} rows" if not r["verifier_error"] and r["heap_checked"] == r["rows"]
               else f"FAILED: {r['verifier_error'] or r['heap_checked']}")
        scans = "yes" if not r["scan_mismatches"] else f"no ({len(r['scan_mismatches'])} misses)"
        lines.append(f"| `{r['am']}` | {r['clients']} × {r['seconds']} | {r['transactions']:,} | {r['tps']:.0f} | "
                     f"{per} | {r['errors']} | {r['rows']:,} | {ver} | {scans} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=300, help="pgbench -T per access method")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ams", default=",".join(R.WORKLOADS), help="comma-separated access methods")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--update-md", action="store_true", help="rewrite the pgbench-mixed section of BENCHMARKS.md")
    ap.add_argument("--render-md", type=Path, default=None, metavar="JSON",
                    help="rewrite the BENCHMARKS.md section from a --json file of an earlier run; run nothing")
    args = ap.parse_args(argv)
    if args.render_md:
        from bench import common

        summary = json.loads(args.render_md.read_text())
        common.replace_md_section("pgbench-mixed", render_md(summary, summary["command"]))
        return 0
    ams = R.parse_ams(ap, args.ams)

    def progress(r: AmResult) -> None:
        R.log(f"{r.am}: {r.transactions} transactions ({r.per_script}), {r.errors} errors, {r.rows} rows, "
              f"verifier {r.verifier_error or r.heap_checked}, scans {'ok' if not r.scan_mismatches else r.scan_mismatches}"
              + ("" if not r.server_errors else "\n" + "\n".join(r.server_errors[:10])))

    summary = run(ams, args.seconds, args.clients, args.threads, progress)
    command = (f"python bench/pgbench_mixed.py --seconds {args.seconds}"
               + (f" --clients {args.clients}" if args.clients != 16 else "")
               + (f" --ams {args.ams}" if args.ams != ",".join(R.WORKLOADS) else "") + " --update-md")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary | {"command": command}, indent=1))
    if args.update_md:
        from bench import common

        common.replace_md_section("pgbench-mixed", render_md(summary, command))
    return 0 if all(r["ok"] for r in summary["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
