"""Adapters, binary-COPY ingest and the search helpers, against the real server and extension."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import psycopg
import pytest
from psycopg import sql

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pgsieve.adapters import ExtensionMissingError, register_pgsieve, register_pgsieve_async  # noqa: E402
from pgsieve.corpus import known_item_queries, load_manpages  # noqa: E402
from pgsieve.ingest import (create_binary_index, create_corpus_table, document_text,  # noqa: E402
                            ingest_passages, table_identifier)
from pgsieve.search import binary_search, exact_search  # noqa: E402

N = 300
TABLE = "passages"


@pytest.fixture(scope="module")
def encoder():
    from pgsieve.encoders import DenseEncoder

    return DenseEncoder(batch_size=64, max_length=128)  # shorter inputs: the test is about ingest, not the model


@pytest.fixture(scope="module")
def passages():
    got = load_manpages(max_pages=60, sections=[2])[:N]
    if len(got) < N:
        pytest.skip("man pages not installed (apt-get install -y manpages manpages-dev)")
    return got


@pytest.fixture(scope="module")
def loaded(db, passages, encoder):
    """The table with N passages and a binary_scan cosine index; returns the embeddings."""
    register_pgsieve(db)
    n = ingest_passages(db, TABLE, passages, encoder, batch_size=128, progress=False)
    assert n == N
    secs = create_binary_index(db, TABLE)
    assert secs > 0
    db.execute(f"ANALYZE {TABLE}")
    rows = db.execute(f"SELECT emb FROM {TABLE} ORDER BY id").fetchall()
    return np.stack([np.asarray(r[0].to_numpy(), dtype=np.float32) for r in rows])


# -- adapters -----------------------------------------------------------------

def test_register_reports_types(db) -> None:
    reg = register_pgsieve(db)
    assert reg.extension_version and reg.vector_version
    assert {"vector", "halfvec", "sparsevec", "bit"} <= set(reg.types)
    oid = db.execute("SELECT 'vector'::regtype::oid").fetchone()[0]
    assert reg.types["vector"] == oid
    from pgvector import Vector

    got = db.execute("SELECT '[1,2,3]'::vector").fetchone()[0]
    assert isinstance(got, (Vector, np.ndarray))


def test_register_without_pgsieve(pg_server: str) -> None:
    name = "adapters_no_pgsieve"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = psycopg.conninfo.make_conninfo(pg_server, dbname=name)
        with psycopg.connect(url, autocommit=True) as conn:
            with pytest.raises(ExtensionMissingError, match="CREATE EXTENSION vector"):
                register_pgsieve(conn)
            conn.execute("CREATE EXTENSION vector")
            with pytest.raises(ExtensionMissingError, match="CREATE EXTENSION pgsieve"):
                register_pgsieve(conn)
            reg = register_pgsieve(conn, require_extension=False)
            assert reg.extension_version is None and "vector" in reg.types
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_pool_configure_recipes(db_url: str) -> None:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    with ConnectionPool(db_url, min_size=1, max_size=1, configure=register_pgsieve, open=True) as pool:
        pool.wait(timeout=30)
        with pool.connection() as conn:  # not autocommit: configure must leave it idle
            vec = conn.execute("SELECT %s::vector", (np.arange(3, dtype=np.float32),)).fetchone()[0]
            assert np.array_equal(np.asarray(vec.to_numpy() if hasattr(vec, "to_numpy") else vec),
                                  [0, 1, 2])

    async def run_async() -> list[float]:
        async with AsyncConnectionPool(db_url, min_size=1, max_size=1, open=False,
                                       configure=register_pgsieve_async) as apool:
            async with apool.connection() as conn:
                cur = await conn.execute("SELECT '[4,5]'::vector")
                row = await cur.fetchone()
                return list(row[0].to_list() if hasattr(row[0], "to_list") else row[0])

    assert asyncio.run(run_async()) == [4.0, 5.0]


# -- ingest -----------------------------------------------------------------------

def test_ingested_rows_round_trip(db, loaded, passages, encoder) -> None:
    rows = db.execute(f"SELECT id, doc_id, title, body FROM {TABLE} ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(range(1, N + 1))
    assert [r[1] for r in rows] == [p.pid for p in passages]
    assert rows[7][2] == passages[7].page and rows[7][3] == passages[7].text
    # the stored vectors are the encoder output (float32 through binary COPY, no text rounding)
    again = encoder.encode_documents([document_text(passages[i]) for i in (7, 150)])
    np.testing.assert_allclose(loaded[[7, 150]], again, atol=1e-6)


def test_ingest_appends_and_validates(db) -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((5, 4)).astype(np.float32)
    from pgsieve.corpus import Passage

    ps = [Passage(f"p{i}", "t(1)", "S", f"text {i}") for i in range(5)]
    assert ingest_passages(db, "small_t", ps[:3], embeddings=emb[:3], progress=False) == 3
    assert ingest_passages(db, "small_t", ps[3:], embeddings=emb[3:], progress=False) == 2
    assert db.execute("SELECT array_agg(id ORDER BY id) FROM small_t").fetchone()[0] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="exactly one"):
        ingest_passages(db, "small_t", ps, progress=False)
    with pytest.raises(ValueError, match=r"shape \(5, dim\)"):
        ingest_passages(db, "small_t", ps, embeddings=emb[:4], progress=False)
    bad = emb.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ingest_passages(db, "small_t", ps, embeddings=bad, progress=False)
    with pytest.raises(psycopg.Error):  # wrong width: rejected by the vector(4) column, nothing written
        ingest_passages(db, "small_t", ps, embeddings=rng.standard_normal((5, 3)).astype(np.float32),
                        progress=False, create=False)
    assert db.execute("SELECT count(*) FROM small_t").fetchone()[0] == 5
    with pytest.raises(ValueError, match="schema.name"):
        table_identifier("a.b.c")
    with pytest.raises(ValueError, match="dim"):
        create_corpus_table(db, "x", 0)
    with pytest.raises(ValueError, match="opclass"):
        create_binary_index(db, "small_t", opclass="vector_foo_ops")
    with pytest.raises(ValueError, match="quantizer"):
        create_binary_index(db, "small_t", quantizer="median")



def test_ingest_through_encoder_pool_survives_a_killed_worker(db) -> None:
    """An EncoderPool as the encoder: batches encoded in worker processes, ahead of the COPY, rows in order; a
    worker SIGKILLed in the middle of the ingest loses no document."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import workers_helpers

    from pgsieve.corpus import Passage
    from pgsieve.workers import EncoderPool

    register_pgsieve(db)
    ps = [Passage(f"w{i}", "t(1)", "S", f"worker text {i} " * (i % 4 + 1)) for i in range(23)]
    with EncoderPool(("workers_helpers:HashEncoder", {"dim": 8, "delay": 0.05}), devices="cpu",
                     workers_per_device=2, max_batch_size=2) as pool:
        victim = pool.pids[0]
        killer = workers_helpers.kill_after_batches(pool, victim, 3)
        assert ingest_passages(db, "pool_t", ps, pool, batch_size=5, progress=False, encode_ahead=3) == 23
        killer.join()
        st = pool.stats()
        assert st["batches_done"] >= 12 and st["worker_deaths"] == 1 and victim not in pool.pids
    rows = db.execute("SELECT doc_id, emb FROM pool_t ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [p.pid for p in ps]
    want = workers_helpers.HashEncoder(dim=8).encode_documents([document_text(p) for p in ps])
    np.testing.assert_array_equal(np.stack([r[1].to_numpy() for r in rows]), want)

# -- search ----------------------------------------------------------------------

def test_index_is_binary_scan_and_used(db, loaded) -> None:
    am = db.execute("SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = %s::regclass "
                    "AND NOT i.indisprimary", (TABLE,)).fetchall()
    assert am == [("binary_scan",)]
    with db.transaction():
        db.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in db.execute(
            f"EXPLAIN SELECT id FROM {TABLE} ORDER BY emb <=> %s LIMIT 10", (loaded[0],)))
    assert "Index Scan using" in plan and "Order By" in plan


def test_binary_search_equals_exact_with_full_rerank(db, loaded, encoder) -> None:
    queries = ["how do I create a directory", "send a signal to a process", "close a file descriptor",
               "wait for a process to change state", "set the system clock"]
    qv = encoder.encode_queries(queries)
    for q in list(qv) + [loaded[10], loaded[200]]:
        got = binary_search(db, TABLE, q, k=10, rerank=N, force_index=True)
        ref = exact_search(db, TABLE, q, k=10)
        assert got.ids == ref.ids
        np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-6, atol=1e-6)
        assert got.scores == sorted(got.scores) and len(got.ids) == 10
    # a document's own vector finds itself first, at distance ~0
    self_hit = binary_search(db, TABLE, loaded[42], k=3, rerank=50, force_index=True)
    assert self_hit.ids[0] == 43 and self_hit.scores[0] == pytest.approx(0.0, abs=1e-5)


def test_search_returns_sql_and_settings(db, loaded) -> None:
    res = binary_search(db, TABLE, loaded[0], k=5, rerank=40)
    assert "SET LOCAL pgsieve.binary_rerank = 40" in res.sql
    assert "ORDER BY" in res.sql and "<=>" in res.sql and "LIMIT" in res.sql
    assert res.settings == {"pgsieve.binary_rerank": 40} and res.params[2] == 5
    assert res.elapsed_ms > 0 and len(res.ids) == 5
    ex = exact_search(db, TABLE, loaded[0], k=5)
    assert "enable_indexscan = 'off'" in ex.sql
    # SET LOCAL does not leak past the query's transaction
    assert db.execute("SHOW enable_indexscan").fetchone()[0] == "on"


def test_metrics_agree_on_unit_vectors(db, loaded) -> None:
    q = loaded[5]
    ids = {m: exact_search(db, TABLE, q, k=10, metric=m).ids for m in ("cosine", "ip", "l2")}
    assert ids["cosine"] == ids["ip"] == ids["l2"]
    assert exact_search(db, TABLE, q, k=1, metric="ip").scores[0] == pytest.approx(-1.0, abs=1e-5)


def test_known_item_retrieval_sanity(db, loaded, passages, encoder) -> None:
    """Embeddings line up with their rows: NAME-line queries find their own page's passages."""
    pid_to_id = {p.pid: i + 1 for i, p in enumerate(passages)}
    queries = [q for q in known_item_queries(passages) if all(r in pid_to_id for r in q.relevant)]
    assert len(queries) >= 10
    qv = encoder.encode_queries([q.text for q in queries])
    hits = 0
    for q, v in zip(queries, qv):
        got = set(binary_search(db, TABLE, v, k=10, rerank=100, force_index=True).ids)
        hits += bool(got & {pid_to_id[r] for r in q.relevant})
    assert hits / len(queries) >= 0.6, f"{hits}/{len(queries)}"


@pytest.mark.parametrize("kwargs, msg", [
    ({"k": 0}, "k must be"),
    ({"metric": "dot"}, "metric must be"),
    ({"rerank": 0}, "rerank must be"),
])
def test_search_validation(db, loaded, kwargs: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        binary_search(db, TABLE, loaded[0], **kwargs)


def test_search_rejects_bad_vectors(db, loaded) -> None:
    with pytest.raises(ValueError, match="NaN"):
        exact_search(db, TABLE, np.full(384, np.nan, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        exact_search(db, TABLE, np.zeros((2, 384), np.float32))


def test_exact_search_stays_exact_after_many_calls(db, loaded) -> None:
    """psycopg prepares a statement after 5 runs; its generic plan must not leak between helpers."""
    normed = loaded / np.linalg.norm(loaded, axis=1, keepdims=True)
    db.execute("SET pgsieve.binary_rerank = 10")  # session-wide: a leaked index plan would be approximate
    try:
        rng = np.random.default_rng(1)
        approximate = 0
        for _ in range(5):
            q = rng.standard_normal(loaded.shape[1]).astype(np.float32)  # far from the data: hard for bits
            for _ in range(12):  # psycopg prepares after 5; the server goes generic after 5 more
                approx = binary_search(db, TABLE, q, k=10, force_index=True)
            got = exact_search(db, TABLE, q, k=10)
            dist = 1.0 - normed @ (q / np.linalg.norm(q))
            cutoff = np.sort(dist)[9]
            approximate += approx.ids != got.ids
            assert all(dist[i - 1] <= cutoff + 1e-5 for i in got.ids), (q[:4], got.ids)
            np.testing.assert_allclose(got.scores, dist[np.array(got.ids) - 1], atol=1e-5)
        assert approximate, "rerank=10 was exact on every query: this test would not catch a leaked plan"
        # the mechanism: a prepared ORDER BY statement would get a generic plan that keeps the
        # planner settings of whichever helper ran when it was built (seen on the demo corpus)
        prepared = db.execute("SELECT statement FROM pg_prepared_statements").fetchall()
        assert not [r for r in prepared if "ORDER BY" in r[0]], prepared
    finally:
        db.execute("RESET pgsieve.binary_rerank")
