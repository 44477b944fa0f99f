"""A parallel sparse_block build (leader + workers, PostgreSQL's parallel infrastructure) makes the same index as a
serial one: every page equal but its LSN and checksum, and the same exact top-k (ids and scores) for many queries,
with pruning disabled and at the defaults.  Workers are granted through the table's ``parallel_workers`` reloption
and ``max_parallel_maintenance_workers``; the build's DEBUG1 message says how many were launched."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

DIM = 3000
ROWS = 6000

# pruning disabled (every posting kept) and the defaults; a budget well under the postings: the global threshold
# and the per-list cap both prune
INDEX_OPTIONS = {
    "exact": "WITH (n_postings = 100000, max_fraction = 100)",
    "defaults": "",
    "pruned": "WITH (n_postings = 8, max_fraction = 2, min_cluster_size = 1, doc_cut = 5)",
}

LAUNCHED = re.compile(r"sparse_block build: (\d+) of (\d+) parallel workers launched")


def _sparsevec(idx: np.ndarray, val: np.ndarray) -> str:
    return "{" + ",".join(f"{int(i) + 1}:{float(v):.4f}" for i, v in zip(idx, val)) + f"}}/{DIM}"


def _rows(rng: np.random.Generator) -> list[tuple[int, str | None]]:
    """Skewed term frequencies (a few terms in most documents, a long tail), 1..80 non-zeros, tied values."""
    rows: list[tuple[int, str | None]] = []
    for i in range(ROWS):
        nnz = int(rng.integers(1, 81))
        terms = np.unique((DIM * rng.random(nnz) ** 3).astype(np.int64))
        vals = np.round(rng.random(terms.size) * 3 + 0.01, 1)  # rounded: many equal values (ties in every select)
        rows.append((i, _sparsevec(terms, vals)))
    rows += [(ROWS, None), (ROWS + 1, f"{{}}/{DIM}")]
    return rows


@pytest.fixture(scope="module")
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        rng = np.random.default_rng(20261129)
        c.execute(f"CREATE TABLE sp (id int PRIMARY KEY, emb sparsevec({DIM})) WITH (parallel_workers = 2)")
        with c.cursor().copy("COPY sp (id, emb) FROM STDIN") as cp:
            for row in _rows(rng):
                cp.write_row(row)
        c.execute("ANALYZE sp")
        c.execute("SET maintenance_work_mem = '256MB'")  # plan_create_index_workers wants 32 MB a participant
        c.execute("CREATE TEMP TABLE queries AS SELECT id AS q, emb FROM sp WHERE id % 97 = 3 AND emb IS NOT NULL")
        yield c


def _build(c: psycopg.Connection, options: str, workers: int, how: str = "CREATE INDEX",
           table: str = "sp") -> list[int]:
    """(Re)build {table}_idx (how: CREATE INDEX [CONCURRENTLY] or REINDEX) with max_parallel_maintenance_workers =
    workers; the workers launched, per the build's DEBUG1 message."""
    notices: list[str] = []

    def collect(d: psycopg.errors.Diagnostic) -> None:
        notices.append(d.message_primary or "")

    c.add_notice_handler(collect)
    try:
        c.execute(f"SET max_parallel_maintenance_workers = {workers}")
        c.execute("SET client_min_messages = debug1")
        if how == "REINDEX":
            c.execute(f"REINDEX INDEX {table}_idx")
        else:
            c.execute(f"DROP INDEX IF EXISTS {table}_idx")
            c.execute(f"{how} {table}_idx ON {table} USING sparse_block (emb) {options}")
    finally:
        c.execute("RESET client_min_messages")
        c.remove_notice_handler(collect)
    return [int(m.group(1)) for n in notices if (m := LAUNCHED.search(n))]


# the meta page's buildNonce (SblockMetaPageData, after the 24-byte page header): random per build
NONCE = slice(24 + 132, 24 + 136)


def _pages(c: psycopg.Connection, index: str = "sp_idx") -> list[bytes]:
    """Every page of the index, its LSN (bytes 0-7) and checksum (8-9) zeroed, and the meta page's build nonce."""
    n = c.execute("SELECT pg_relation_size(%s) / current_setting('block_size')::int", (index,)).fetchone()[0]
    pages = []
    for b in range(n):
        raw = bytearray(c.execute("SELECT get_raw_page(%s, %s)", (index, b)).fetchone()[0])
        raw[:10] = bytes(10)
        if b == 0:
            assert raw[NONCE] != bytes(4), "a build writes a nonzero nonce"
            raw[NONCE] = bytes(4)
        pages.append(bytes(raw))
    return pages


def _topk(c: psycopg.Connection, k: int) -> list[list[tuple[int, float]]]:
    c.execute("SET enable_seqscan = off")
    c.execute(f"SET pgsieve.sparse_top_k = {k}")
    try:
        out = []
        queries = [r[0] for r in c.execute("SELECT emb::text FROM queries ORDER BY q").fetchall()]
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN (COSTS OFF) SELECT id FROM sp ORDER BY emb <#> %s::sparsevec "
                                                  "LIMIT 5", (queries[0],)).fetchall())
        assert "sp_idx" in plan, plan
        for qv in queries:
            out.append(c.execute(f"SELECT id, (emb <#> %s::sparsevec)::float8 FROM sp ORDER BY emb <#> %s::sparsevec "
                                 f"LIMIT {k}", (qv, qv)).fetchall())
        return out
    finally:
        c.execute("RESET enable_seqscan")
        c.execute("RESET pgsieve.sparse_top_k")


def _snapshot(c: psycopg.Connection) -> tuple[list[bytes], list, list]:
    c.execute("SELECT pgsieve_index_check('sp_idx', true)")
    c.execute("SET pgsieve.sparse_query_cut = 0")
    c.execute("SET pgsieve.sparse_heap_factor = 0")
    exact = _topk(c, 20)
    c.execute("RESET pgsieve.sparse_query_cut")
    c.execute("RESET pgsieve.sparse_heap_factor")
    return _pages(c), exact, _topk(c, 10)


@pytest.fixture(scope="module")
def pageinspect(conn: psycopg.Connection) -> None:
    conn.execute("CREATE EXTENSION pageinspect")


@pytest.mark.parametrize("variant", sorted(INDEX_OPTIONS))
def test_parallel_build_equals_serial(conn: psycopg.Connection, pageinspect: None, variant: str) -> None:
    assert _build(conn, INDEX_OPTIONS[variant], 0) == []  # serial: no parallel context at all
    pages_s, exact_s, default_s = _snapshot(conn)
    assert len(pages_s) > 10
    assert sum(len(r) for r in exact_s) == 20 * len(exact_s) and len(exact_s) >= 50

    launched = _build(conn, INDEX_OPTIONS[variant], 2)
    assert launched and launched[0] >= 1, launched
    pages_p, exact_p, default_p = _snapshot(conn)
    assert len(pages_p) == len(pages_s)
    differing = [b for b, (x, y) in enumerate(zip(pages_s, pages_p)) if x != y]
    assert differing == []
    assert exact_p == exact_s
    assert default_p == default_s


def test_parallel_reindex_concurrently_and_single_worker(conn: psycopg.Connection, pageinspect: None) -> None:
    """REINDEX and CREATE INDEX CONCURRENTLY take the parallel path too, and leader + 1 worker (the benchmark's
    setting) gives the same pages."""
    assert _build(conn, INDEX_OPTIONS["defaults"], 0) == []
    pages_s = _pages(conn)
    launched = _build(conn, "", 2, how="REINDEX")
    assert launched and launched[0] >= 1, launched
    assert _pages(conn) == pages_s
    launched = _build(conn, INDEX_OPTIONS["defaults"], 2, how="CREATE INDEX CONCURRENTLY")
    assert launched and launched[0] >= 1, launched
    assert _pages(conn) == pages_s
    launched = _build(conn, INDEX_OPTIONS["defaults"], 1)
    assert launched == [1], launched
    assert _pages(conn) == pages_s
    conn.execute("SELECT pgsieve_index_check('sp_idx', true)")


def test_parallel_leader_not_participating(conn: psycopg.Connection, pageinspect: None) -> None:
    """With parallel_leader_participation off the workers build every list; the index is still the serial one."""
    assert _build(conn, INDEX_OPTIONS["pruned"], 0) == []
    pages_s = _pages(conn)
    conn.execute("SET parallel_leader_participation = off")
    try:
        launched = _build(conn, INDEX_OPTIONS["pruned"], 2)
    finally:
        conn.execute("RESET parallel_leader_participation")
    assert launched and launched[0] >= 1, launched
    assert _pages(conn) == pages_s


def test_parallel_build_more_workers_than_chunks(conn: psycopg.Connection, pageinspect: None) -> None:
    """Four workers on a table of a few terms (one chunk: most workers find nothing to claim), and on a table of
    NULL and empty rows only (no lists at all): the serial index still."""
    rng = np.random.default_rng(7)
    conn.execute("CREATE TABLE tiny (id int, emb sparsevec(40)) WITH (parallel_workers = 4)")
    conn.execute("CREATE TABLE hollow (id int, emb sparsevec(40)) WITH (parallel_workers = 4)")
    for i in range(60):
        terms = np.unique(rng.integers(0, 12, int(rng.integers(1, 6))))
        conn.execute("INSERT INTO tiny VALUES (%s, %s::sparsevec)",
                     (i, "{" + ",".join(f"{t + 1}:{rng.random() + 0.1:.3f}" for t in terms) + "}/40"))
    conn.execute("INSERT INTO hollow SELECT i, CASE WHEN i % 2 = 0 THEN NULL ELSE '{}/40'::sparsevec END "
                 "FROM generate_series(1, 30) i")
    for table in ("tiny", "hollow"):
        assert _build(conn, "", 0, table=table) == []
        pages_s = _pages(conn, f"{table}_idx")
        launched = _build(conn, "", 4, table=table)
        assert launched and launched[0] >= 1, (table, launched)
        assert _pages(conn, f"{table}_idx") == pages_s, table
        conn.execute(f"SELECT pgsieve_index_check('{table}_idx', true)")


def test_worker_error_propagates(conn: psycopg.Connection, pageinspect: None) -> None:
    """An error in a worker fails the build in the leader (the session stays usable, no index is left): with the
    leader not taking part only the workers write chunk files, and temp_file_limit stops them. A serial build writes
    no temporary files and passes under the same limit."""
    conn.execute("DROP INDEX IF EXISTS sp_idx")
    conn.execute("SET parallel_leader_participation = off")
    conn.execute("SET temp_file_limit = 1")  # kB
    try:
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="temp_file_limit") as err:
            _build(conn, INDEX_OPTIONS["defaults"], 2)
        assert "parallel worker" in (err.value.diag.context or "")
        assert conn.execute("SELECT to_regclass('sp_idx')").fetchone()[0] is None
        assert _build(conn, INDEX_OPTIONS["defaults"], 0) == []
        conn.execute("SELECT pgsieve_index_check('sp_idx', true)")
    finally:
        conn.execute("RESET temp_file_limit")
        conn.execute("RESET parallel_leader_participation")
