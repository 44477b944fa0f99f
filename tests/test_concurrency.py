"""Correct results under concurrency, for both index access methods (binary_scan and sparse_block).

For each AM a table starts with a few thousand rows (some NULL vectors) and its index built, then real parallel
sessions run for a bounded time (``PGSIEVE_CONC_SECONDS``, default 10 s per AM), each thread with its own
autocommit psycopg connection:

* 3 writers: INSERT batches (including NULL vectors), DELETE random rows, UPDATE vectors (to values or to NULL),
  and an occasional VACUUM.  Each writer only touches the ids it owns (``id % 3``), so writers never wait on or
  deadlock with each other: every error is a real failure.
* 3 readers: in one REPEATABLE READ transaction (one snapshot), ``SELECT id, emb <op> q ... ORDER BY emb <op> q
  LIMIT 20`` through the index (``enable_seqscan = off``; the plan is checked once per reader), then the same
  query with index and bitmap scans disabled (a sequential scan).  The two distance lists must be equal (ids may
  differ among ties).  The index is queried in its exact configuration: binary_scan with ``binary_rerank``
  covering every row; sparse_block built with ``n_postings``/``max_fraction`` that prune nothing and queried with
  ``sparse_query_cut = 0`` and ``sparse_heap_factor = 0``.

After the writers stop: VACUUM, then index results equal the sequential scan for several queries, and
``count(*)`` through the index (an unordered index scan, NULL rows included) equals the real row count.  Finally
a sentinel connection opened at the start must still be the same backend (a server crash restart would have
terminated it).  Randomness is seeded per thread; there are no timing assertions.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

DURATION_S = float(os.environ.get("PGSIEVE_CONC_SECONDS", "10"))
N_INITIAL = 3000
N_WRITERS = 3
N_READERS = 3
MAX_OWNED = 2500  # rows per writer stay below this (inserts give way to deletes): the table stays < 7,600 rows
LIMIT = 20
SEED = 20240611

DIM = 32          # vector(32) for binary_scan
SP_DIM = 500      # sparsevec(500) for sparse_block
SP_NNZ = 16       # non-zeros per document
SP_QNNZ = 12      # non-zeros per query


# ---------------------------------------------------------------------------------------------------------------
# value generators (text literals; values rounded so the text round-trips exactly)


def dense_literal(rng: random.Random) -> str:
    return "[" + ",".join(f"{rng.gauss(0.0, 1.0):.4f}" for _ in range(DIM)) + "]"


def sparse_literal(rng: random.Random, nnz: int = SP_NNZ) -> str:
    idx = sorted(rng.sample(range(1, SP_DIM + 1), nnz))
    return "{" + ",".join(f"{i}:{rng.uniform(0.01, 2.0):.4f}" for i in idx) + f"}}/{SP_DIM}"


@dataclass(frozen=True)
class AMCase:
    name: str
    table: str
    column_type: str
    op: str
    create_index: str
    session_settings: tuple[str, ...]
    make_value: Callable[[random.Random], str]
    make_query: Callable[[random.Random], str]


CASES = [
    AMCase(
        name="binary_scan",
        table="conc_bin",
        column_type=f"vector({DIM})",
        op="<->",
        create_index="CREATE INDEX conc_bin_idx ON conc_bin USING binary_scan (emb vector_l2_ops)",
        # every row (the table stays below 7,600 rows) is re-ranked exactly: the scan is exact
        session_settings=("SET pgsieve.binary_rerank = 20000",),
        make_value=dense_literal,
        make_query=dense_literal,
    ),
    AMCase(
        name="sparse_block",
        table="conc_sp",
        column_type=f"sparsevec({SP_DIM})",
        op="<#>",
        create_index=("CREATE INDEX conc_sp_idx ON conc_sp USING sparse_block (emb) "
                      "WITH (n_postings = 1000000, max_fraction = 1000)"),
        session_settings=("SET pgsieve.sparse_query_cut = 0", "SET pgsieve.sparse_heap_factor = 0",
                          f"SET pgsieve.sparse_top_k = {LIMIT}"),
        make_value=sparse_literal,
        make_query=lambda rng: sparse_literal(rng, SP_QNNZ),
    ),
]


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def sentinel(db_url: str) -> Iterator[tuple[psycopg.Connection, int]]:
    """A connection opened before any test of the module, and its backend pid."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        yield conn, pid


def connect(db_url: str, case: AMCase) -> psycopg.Connection:
    conn = psycopg.connect(db_url, autocommit=True)
    for s in case.session_settings:
        conn.execute(s)
    return conn


def setup_table(db: psycopg.Connection, case: AMCase) -> int:
    """Create and fill the table (ids 1..N_INITIAL, every 50th NULL), build the index; returns the next id."""
    rng = random.Random(f"{SEED}-{case.name}-init")
    db.execute(f"DROP TABLE IF EXISTS {case.table}")
    db.execute(f"CREATE TABLE {case.table} (id bigint PRIMARY KEY, emb {case.column_type})")
    rows = [(i, None if i % 50 == 0 else case.make_value(rng)) for i in range(1, N_INITIAL + 1)]
    with db.cursor() as cur:
        cur.executemany(f"INSERT INTO {case.table} (id, emb) VALUES (%s, %s::{case.column_type})", rows)
    db.execute(case.create_index)
    db.execute(f"VACUUM ANALYZE {case.table}")
    return N_INITIAL + 1


def knn_sql(case: AMCase) -> str:
    return (f"SELECT id, emb {case.op} %(q)s::{case.column_type} AS d FROM {case.table} "
            f"ORDER BY emb {case.op} %(q)s::{case.column_type} LIMIT {LIMIT}")


def plan_text(conn: psycopg.Connection, sql: str, params: dict) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params).fetchall())


# ---------------------------------------------------------------------------------------------------------------
# the concurrent workload


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    comparisons: int = 0
    mismatches: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    writes: dict[str, int] = field(default_factory=lambda: {"insert": 0, "delete": 0, "update": 0, "vacuum": 0})

    def wrote(self, kind: str, n: int) -> None:
        with self.lock:
            self.writes[kind] += n

    def error(self, who: str, e: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{who}: {type(e).__name__}: {getattr(e, 'sqlstate', None)}: {e}")


def writer(db_url: str, case: AMCase, w: int, first_id: int, stop: threading.Event, stats: Stats) -> None:
    """Writer ``w`` owns the ids with ``id % N_WRITERS == w``: the initial ones and those it inserts."""
    rng = random.Random(f"{SEED}-{case.name}-writer-{w}")
    owned = [i for i in range(1, first_id) if i % N_WRITERS == w]
    next_id = first_id + ((w - first_id) % N_WRITERS)
    t = case.table
    try:
        with connect(db_url, case) as conn:
            it = 0
            while not stop.is_set() and it < 100_000:
                it += 1
                r = rng.random()
                if r < 0.40 and len(owned) < MAX_OWNED:  # INSERT a batch, some NULL vectors
                    rows = []
                    for _ in range(rng.randint(5, 25)):
                        rows.append((next_id, None if rng.random() < 0.05 else case.make_value(rng)))
                        owned.append(next_id)
                        next_id += N_WRITERS
                    with conn.cursor() as cur:
                        cur.executemany(f"INSERT INTO {t} (id, emb) VALUES (%s, %s::{case.column_type})", rows)
                    stats.wrote("insert", len(rows))
                elif r < 0.65:  # DELETE random owned rows (also when inserts are capped)
                    if len(owned) > 300:
                        victims = sorted(rng.sample(owned, rng.randint(3, 15)))
                        vs = set(victims)
                        owned = [i for i in owned if i not in vs]
                        conn.execute(f"DELETE FROM {t} WHERE id = ANY(%s)", (victims,))
                        stats.wrote("delete", len(victims))
                elif r < 0.97:  # UPDATE vectors (new HOT-ineligible versions), occasionally to NULL
                    for i in sorted(rng.sample(owned, min(len(owned), rng.randint(3, 15)))):
                        v = None if rng.random() < 0.05 else case.make_value(rng)
                        conn.execute(f"UPDATE {t} SET emb = %s::{case.column_type} WHERE id = %s", (v, i))
                        stats.wrote("update", 1)
                else:  # occasional VACUUM (serialized among writers by its table lock)
                    conn.execute(f"VACUUM {t}")
                    stats.wrote("vacuum", 1)
    except BaseException as e:  # noqa: BLE001 - reported by the test
        stats.error(f"writer {w}", e)


def reader(db_url: str, case: AMCase, r: int, stop: threading.Event, stats: Stats) -> None:
    rng = random.Random(f"{SEED}-{case.name}-reader-{r}")
    sql = knn_sql(case)
    idx_name = f"{case.table}_idx"
    try:
        with connect(db_url, case) as conn:
            conn.execute("SET enable_seqscan = off")
            plan = plan_text(conn, sql, {"q": case.make_query(rng)})
            assert f"Index Scan using {idx_name}" in plan, plan
            it = 0
            while not stop.is_set() and it < 100_000:
                it += 1
                q = case.make_query(rng)
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    via_index = conn.execute(sql, {"q": q}).fetchall()
                    conn.execute("SET LOCAL enable_indexscan = off")
                    conn.execute("SET LOCAL enable_bitmapscan = off")
                    conn.execute("SET LOCAL enable_seqscan = on")
                    via_seq = conn.execute(sql, {"q": q}).fetchall()
                with stats.lock:
                    stats.comparisons += 1
                    if [d for _, d in via_index] != [d for _, d in via_seq]:
                        stats.mismatches.append(f"reader {r} q={q}\n  index={via_index}\n  seq  ={via_seq}")
    except BaseException as e:  # noqa: BLE001 - reported by the test
        stats.error(f"reader {r}", e)


# ---------------------------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_concurrent_writes_and_searches(db: psycopg.Connection, db_url: str, sentinel, case: AMCase) -> None:
    first_id = setup_table(db, case)
    stats = Stats()
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(db_url, case, w, first_id, stop, stats), daemon=True)
               for w in range(N_WRITERS)]
    threads += [threading.Thread(target=reader, args=(db_url, case, r, stop, stats), daemon=True)
                for r in range(N_READERS)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    stop.wait(DURATION_S)
    stop.set()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a worker thread did not stop"
    elapsed = time.monotonic() - t0
    print(f"\n[{case.name}] {elapsed:.1f}s: {stats.comparisons} index-vs-seq comparisons, "
          f"{len(stats.mismatches)} mismatches, {len(stats.errors)} errors, writes {stats.writes}")

    assert not stats.errors, "\n".join(stats.errors[:10])
    assert not stats.mismatches, f"{len(stats.mismatches)} mismatches, first:\n" + "\n".join(stats.mismatches[:3])
    assert stats.comparisons >= N_READERS, "readers made (almost) no comparisons"
    assert stats.writes["insert"] > 0 and stats.writes["update"] > 0

    # quiescent state: VACUUM, then the index equals the sequential scan, and an unordered index scan sees
    # every row, NULL vectors included
    db.execute(f"VACUUM {case.table}")
    rng = random.Random(f"{SEED}-{case.name}-after")
    sql = knn_sql(case)
    with connect(db_url, case) as conn:
        conn.execute("SET enable_seqscan = off")
        for _ in range(20):
            q = case.make_query(rng)
            via_index = conn.execute(sql, {"q": q}).fetchall()
            with conn.transaction():
                conn.execute("SET LOCAL enable_indexscan = off")
                conn.execute("SET LOCAL enable_bitmapscan = off")
                conn.execute("SET LOCAL enable_seqscan = on")
                via_seq = conn.execute(sql, {"q": q}).fetchall()
            assert [d for _, d in via_index] == [d for _, d in via_seq], (q, via_index, via_seq)

        # count(*) through the index: an ordered index scan without LIMIT returns every row, NULL vectors last
        q = case.make_query(rng)
        count_sql = (f"SELECT count(*), count(*) FILTER (WHERE d IS NULL) FROM (SELECT id, emb {case.op} "
                     f"%(q)s::{case.column_type} AS d FROM {case.table} "
                     f"ORDER BY emb {case.op} %(q)s::{case.column_type}) s")
        plan = plan_text(conn, count_sql, {"q": q})
        assert f"Index Scan using {case.table}_idx" in plan, plan
        n_index, n_null_index = conn.execute(count_sql, {"q": q}).fetchone()
        full_sql = (f"SELECT emb {case.op} %(q)s::{case.column_type} FROM {case.table} "
                    f"ORDER BY emb {case.op} %(q)s::{case.column_type}")
        full_index = [r[0] for r in conn.execute(full_sql, {"q": q}).fetchall()]
    n_real, n_null = db.execute(
        f"SELECT count(*), count(*) FILTER (WHERE emb IS NULL) FROM {case.table}").fetchone()
    with db.transaction():
        db.execute("SET LOCAL enable_indexscan = off")
        db.execute("SET LOCAL enable_bitmapscan = off")
        full_seq = [r[0] for r in db.execute(full_sql, {"q": q}).fetchall()]
    print(f"[{case.name}] after VACUUM: {n_real} rows ({n_null} NULL), index count {n_index} ({n_null_index} NULL)")
    assert n_null > 0
    assert (n_index, n_null_index) == (n_real, n_null)
    assert full_index == full_seq, "full ordered index scan differs from the sequential scan"

    # no crash restart: the sentinel is still the same live backend
    conn0, pid0 = sentinel
    assert conn0.execute("SELECT pg_backend_pid()").fetchone()[0] == pid0
