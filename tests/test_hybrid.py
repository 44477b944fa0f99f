"""Hybrid search: BM25 (sparse_block) + dense (binary_scan) fused with RRF in one SQL statement.

On a small real corpus (man pages, MiniLM, BM25 over its vocabulary), ingested with the sparse column and
the BM25 statistics kept in the database.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from psycopg import sql

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pgsieve.adapters import register_pgsieve  # noqa: E402
from pgsieve.corpus import load_manpages  # noqa: E402
from pgsieve.encoders.bm25 import load_stats, stats_table_names  # noqa: E402
from pgsieve.encoders.sparse import sparse_dot, to_dict  # noqa: E402
from pgsieve.ingest import (bm25_encode_with_stats, create_binary_index, create_corpus_table,  # noqa: E402
                            create_sparse_index, document_text, ingest_passages)
from pgsieve.search import exact_search, hybrid_search, sparse_search  # noqa: E402

N = 160
TABLE = "hybrid_docs"
QUERIES = ("open and possibly create a file", "allocate memory", "send a signal to a process",
           "change the current working directory")
# every stage exact: the sparse_block scan visits every query term and skips no block; the binary_scan
# re-ranks every row in one batch
EXACT = {"pgsieve.sparse_query_cut": 0, "pgsieve.sparse_heap_factor": 0}


@pytest.fixture(scope="module")
def passages():
    got = load_manpages(max_pages=40, sections=[2])[:N]
    if len(got) < N:
        pytest.skip("man pages not installed (apt-get install -y manpages manpages-dev)")
    return got


@pytest.fixture(scope="module")
def encoders():
    from pgsieve.encoders import BM25Encoder, DenseEncoder

    return DenseEncoder(batch_size=64, max_length=128), BM25Encoder()


@pytest.fixture(scope="module")
def loaded(db, passages, encoders):
    """The table (dense + BM25 columns) with both indexes; returns the BM25 document vectors written."""
    dense, bm25 = encoders
    register_pgsieve(db)
    emb = dense.encode_documents([document_text(p) for p in passages])
    create_corpus_table(db, TABLE, dense.dim, drop=True, sparse_dim=bm25.dim)
    with db.transaction():
        sparse = bm25_encode_with_stats(db, TABLE, bm25, [document_text(p) for p in passages])
        assert ingest_passages(db, TABLE, passages, embeddings=emb, sparse=sparse, create=False,
                               progress=False) == N
    assert create_binary_index(db, TABLE, name="hybrid_emb_idx") > 0
    # large enough to prune nothing: with EXACT settings the index then equals a sequential scan
    assert create_sparse_index(db, TABLE, name="hybrid_sparse_idx", n_postings=100000, max_fraction=10.0) > 0
    db.execute(f"ANALYZE {TABLE}")
    return sparse


def _queries(encoders):
    dense, bm25 = encoders
    return list(zip(QUERIES, dense.encode_queries(list(QUERIES)), bm25.encode_queries(list(QUERIES))))


def test_sparse_ingest_and_stats_in_database(db, loaded, passages, encoders) -> None:
    _, bm25 = encoders
    df_t, corpus_t = stats_table_names(TABLE)
    n_docs, total = db.execute(f"SELECT n_docs, total_len FROM {corpus_t} WHERE stats = %s", (TABLE,)).fetchone()
    assert n_docs == N and total == bm25.stats.total_len > N
    stats = load_stats(db, TABLE)
    assert stats.df == bm25.stats.df and stats.N == N
    # the column holds exactly the vectors written, in id order
    rows = db.execute(f"SELECT sparse FROM {TABLE} ORDER BY id").fetchall()
    def f32(v):
        return {i: np.float32(x) for i, x in to_dict(v).items()}

    assert [f32(r[0]) for r in rows] == [f32(v) for v in loaded]
    assert db.execute(f"SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                      f"WHERE attrelid = '{TABLE}'::regclass AND attname = 'sparse'").fetchone()[0] == \
        f"sparsevec({bm25.dim})"


def test_sparse_search_is_bm25(db, loaded, encoders) -> None:
    for _, _, sq in _queries(encoders):
        res = sparse_search(db, TABLE, sq, k=10, force_index=True, settings=EXACT)
        assert res.settings["pgsieve.sparse_top_k"] == 10 and "sparse_top_k = 10" in res.sql
        exact = exact_search(db, TABLE, sq, k=10, metric="ip", column="sparse")
        assert res.scores == pytest.approx(exact.scores, abs=1e-5)
        # <#> is the negative BM25 score
        top = loaded[res.ids[0] - 1]
        assert -res.scores[0] == pytest.approx(sparse_dot(sq, top), rel=1e-5)


def test_hybrid_plan_uses_both_indexes(db, loaded, encoders) -> None:
    _, dq, sq = _queries(encoders)[0]
    res = hybrid_search(db, TABLE, dq, sq, k=5, k_gather=20, force_index=True)
    stmt = res.sql.split(";\n")[-1]
    with db.transaction():
        for s in res.sql.split(";\n")[:-1]:
            db.execute(s)
        plan = "\n".join(r[0] for r in db.execute("EXPLAIN " + stmt, res.params).fetchall())
    assert "Index Scan using hybrid_sparse_idx" in plan and "Index Scan using hybrid_emb_idx" in plan, plan


def _exact_ranks(db, dq, sq) -> tuple[dict[int, int], dict[int, int]]:
    """Rank (1-based; ties by id) of every row in each stage, from sequential scans."""
    sp = exact_search(db, TABLE, sq, k=N, metric="ip", column="sparse")
    de = exact_search(db, TABLE, dq, k=N, metric="cosine", column="emb")
    ranks = []
    for r in (sp, de):
        order = sorted(zip(r.scores, r.ids))
        ranks.append({i: rank for rank, (_, i) in enumerate(order, 1)})
    return ranks[0], ranks[1]


def test_hybrid_rrf_equals_python_recomputation(db, loaded, encoders) -> None:
    """Gathers covering every row: RRF from the exact per-stage rankings, recomputed in Python."""
    for text, dq, sq in _queries(encoders):
        res = hybrid_search(db, TABLE, dq, sq, k=N, k_gather=N, rrf_k=60, rerank=N, force_index=True,
                            settings=EXACT)
        rs, rd = _exact_ranks(db, dq, sq)
        assert set(rs) == set(rd) == set(range(1, N + 1))
        want = sorted(((1.0 / (60 + rs[i]) + 1.0 / (60 + rd[i]), i) for i in rs), key=lambda x: (-x[0], x[1]))
        assert res.ids == [i for _, i in want], text
        assert res.scores == [s for s, _ in want], text  # the same float8 arithmetic: exactly equal
        assert res.ranks["sparse"] == [rs[i] for i in res.ids]
        assert res.ranks["dense"] == [rd[i] for i in res.ids]


def test_hybrid_fuses_the_two_gathers(db, loaded, encoders) -> None:
    """With k ≥ 2·k_gather every gathered row comes back; each stage's ranks are its own top-k_gather."""
    kg = 10
    for text, dq, sq in _queries(encoders):
        res = hybrid_search(db, TABLE, dq, sq, k=2 * kg, k_gather=kg, force_index=True)
        assert res.settings["pgsieve.sparse_top_k"] == kg
        sp = sparse_search(db, TABLE, sq, k=kg, force_index=True)
        from pgsieve.search import binary_search

        de = binary_search(db, TABLE, dq, k=kg, force_index=True)
        got_sp = {i: r for i, r in zip(res.ids, res.ranks["sparse"]) if r is not None}
        got_de = {i: r for i, r in zip(res.ids, res.ranks["dense"]) if r is not None}
        assert set(got_sp) == set(sp.ids) and set(got_de) == set(de.ids), text
        assert set(res.ids) == set(sp.ids) | set(de.ids)
        assert sorted(got_sp.values()) == list(range(1, kg + 1))
        assert sorted(got_de.values()) == list(range(1, kg + 1))
        for i, s, a, b in zip(res.ids, res.scores, res.ranks["sparse"], res.ranks["dense"]):
            assert s == pytest.approx((1 / (60 + a) if a else 0) + (1 / (60 + b) if b else 0), rel=1e-12)
        assert res.scores == sorted(res.scores, reverse=True)
        # rows found by both stages exist for these queries, and the top result is one of them
        assert any(a is not None and b is not None for a, b in zip(res.ranks["sparse"], res.ranks["dense"]))


def test_hybrid_sql_is_plain_sql(db, loaded, encoders) -> None:
    """The statement and parameters in the result run as they are, with any psycopg connection."""
    _, dq, sq = _queries(encoders)[1]
    res = hybrid_search(db, TABLE, dq, sq, k=5, k_gather=30, rrf_k=10)
    assert res.sql.count("WITH sparse_hits AS") == 1 and "FULL OUTER JOIN" in res.sql
    assert '"manpages"' not in res.sql and f'"{TABLE}"' in res.sql
    with db.transaction():
        for s in res.sql.split(";\n")[:-1]:
            db.execute(s)
        rows = db.execute(res.sql.split(";\n")[-1], res.params).fetchall()
    assert [r[0] for r in rows] == res.ids and len(rows) == 5
    assert res.params["rrf_k"] == 10 and res.scores[0] <= 2 / 11


@pytest.mark.parametrize("kwargs, err", [
    ({"k": 0}, ValueError), ({"k_gather": 0}, ValueError), ({"rrf_k": -1}, ValueError),
    ({"rrf_k": float("nan")}, ValueError), ({"metric": "dot"}, ValueError), ({"rerank": 0}, ValueError),
])
def test_hybrid_validation(db, loaded, encoders, kwargs, err) -> None:
    _, dq, sq = _queries(encoders)[0]
    with pytest.raises(err):
        hybrid_search(db, TABLE, dq, sq, **kwargs)


def test_hybrid_rejects_swapped_vectors(db, loaded, encoders) -> None:
    _, dq, sq = _queries(encoders)[0]
    with pytest.raises(TypeError):
        hybrid_search(db, TABLE, dq, dq)
    with pytest.raises(TypeError):
        hybrid_search(db, TABLE, sq, sq)
    with pytest.raises(ValueError):
        hybrid_search(db, "bad..name", dq, sq)


def test_ingest_sparse_length_mismatch(db, loaded, passages, encoders) -> None:
    dense, _ = encoders
    emb = np.zeros((2, dense.dim), np.float32) + 0.1
    with pytest.raises(ValueError, match="sparse has 1 vectors for 2 passages"):
        ingest_passages(db, TABLE, passages[:2], embeddings=emb, sparse=loaded[:1], create=False, progress=False)
    with pytest.raises(ValueError, match="unknown sparse_block option"):
        create_sparse_index(db, TABLE, n_posting=10)
    assert db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(TABLE))).fetchone()[0] == N
