"""SQLAlchemy 2 ORM on a real server: a declarative model with vector, sparsevec and multivec columns, pgsieve
indexes created by ``create_all``, ORM inserts, ``ORDER BY`` MaxSim / ``<#>`` / ``<=>`` with ``LIMIT`` served by
the indexes (EXPLAIN) and equal to the exact ranking computed here, and reflection of ``multivec`` columns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")

from pgvector import SparseVector  # noqa: E402
from pgvector.sqlalchemy import SPARSEVEC, VECTOR  # noqa: E402
from sqlalchemy import Index, MetaData, Table, func, inspect, select, text  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402
from sqlalchemy.schema import CreateIndex  # noqa: E402

from pgsieve.adapters import MultiVector  # noqa: E402
from pgsieve.catalog import sqlalchemy_url  # noqa: E402
from pgsieve.sqlalchemy import (  # noqa: E402
    MULTIVEC,
    binary_scan_index,
    check_reloptions,
    multivec_fde_index,
    pgsieve_index,
    set_local,
    sparse_block_index,
)

N, DIM, TDIM, SDIM = 120, 16, 8, 64


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "orm_docs"
    id: Mapped[int] = mapped_column(primary_key=True)
    emb: Mapped[Any] = mapped_column(VECTOR(DIM))
    sparse: Mapped[Any] = mapped_column(SPARSEVEC(SDIM))
    tokens: Mapped[Any] = mapped_column(MULTIVEC(TDIM))
    tokens8: Mapped[Any] = mapped_column(MULTIVEC(TDIM, "int8"), nullable=True)
    __table_args__ = (
        binary_scan_index("orm_docs_emb_idx", "emb", opclass="vector_cosine_ops", quantizer="sign"),
        sparse_block_index("orm_docs_sparse_idx", "sparse", n_postings=100000, max_fraction=10.0),
        multivec_fde_index("orm_docs_tokens_idx", "tokens", reps=4, ksim=3, dproj=8, seed=7),
    )


def maxsim(doc: np.ndarray, query: np.ndarray) -> float:
    return float((query.astype(np.float64) @ doc.astype(np.float64).T).max(axis=1).sum())


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(11)
    emb = rng.standard_normal((N, DIM)).astype(np.float32)
    tokens = [rng.standard_normal((int(rng.integers(2, 9)), TDIM)).astype(np.float32) for _ in range(N)]
    sparse = []
    for _ in range(N):
        idx = rng.choice(SDIM, size=6, replace=False)
        sparse.append(SparseVector({int(i): float(v) for i, v in zip(idx, rng.uniform(0.1, 2.0, 6))}, SDIM))
    return {"emb": emb, "tokens": tokens, "sparse": sparse}


@pytest.fixture(scope="module")
def engine(db_url: str, data: dict[str, Any]) -> Iterator[Any]:
    eng = sqlalchemy.create_engine(sqlalchemy_url(db_url))
    Base.metadata.create_all(eng)
    with Session(eng) as s:
        s.add_all([Doc(id=i, emb=data["emb"][i], sparse=data["sparse"][i], tokens=data["tokens"][i],
                       tokens8=MultiVector(data["tokens"][i], "int8") if i % 2 else data["tokens"][i])
                   for i in range(N)])
        s.commit()
    with eng.begin() as conn:
        conn.exec_driver_sql("ANALYZE orm_docs")
    try:
        yield eng
    finally:
        eng.dispose()


def explain(session: Session, stmt: Any) -> str:
    compiled = stmt.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    return "\n".join(r[0] for r in session.execute(text(f"EXPLAIN {compiled}")))


def test_ddl_uses_the_access_methods_and_opclasses(engine: Any) -> None:
    ddl = {i.name: str(CreateIndex(i).compile(engine)) for i in Doc.__table__.indexes}
    assert ddl["orm_docs_emb_idx"] == ("CREATE INDEX orm_docs_emb_idx ON orm_docs USING binary_scan "
                                       "(emb vector_cosine_ops) WITH (quantizer = sign)")
    assert "USING sparse_block (sparse sparsevec_ip_ops) WITH (n_postings = 100000, max_fraction = 10.0)" in \
        ddl["orm_docs_sparse_idx"]
    assert "USING multivec_fde (tokens multivec_maxsim_ops) WITH (reps = 4, ksim = 3, dproj = 8, seed = 7)" in \
        ddl["orm_docs_tokens_idx"]
    with engine.connect() as conn:
        got = dict(conn.exec_driver_sql(
            "SELECT c.relname, a.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'orm_docs'::regclass AND NOT i.indisprimary").all())
    assert got == {"orm_docs_emb_idx": "binary_scan", "orm_docs_sparse_idx": "sparse_block",
                   "orm_docs_tokens_idx": "multivec_fde"}


def test_round_trip(engine: Any, data: dict[str, Any]) -> None:
    with Session(engine) as s:
        d = s.get(Doc, 3)
        assert isinstance(d.tokens, np.ndarray) and d.tokens.dtype == np.float32
        assert np.array_equal(d.tokens, data["tokens"][3])
        q8 = MultiVector(data["tokens"][3], "int8").to_numpy()
        assert np.allclose(d.tokens8, q8, rtol=1e-6, atol=1e-7)  # stored as int8 codes: the dequantized values
        assert s.scalar(select(func.multivec_format(Doc.tokens8)).where(Doc.id == 4)) == "int8"
        assert s.scalar(select(Doc.tokens.ntok()).where(Doc.id == 3)) == data["tokens"][3].shape[0]
        s.add(Doc(id=N + 1, emb=np.ones(DIM, np.float32), sparse=SparseVector({1: 1.0}, SDIM),
                  tokens=[[0.5] * TDIM, [0.25] * TDIM]))  # list of tokens
        s.flush()
        assert s.get(Doc, N + 1).tokens.shape == (2, TDIM)
        s.rollback()


def test_order_by_maxsim_uses_multivec_fde(engine: Any, data: dict[str, Any]) -> None:
    rng = np.random.default_rng(5)
    q = rng.standard_normal((3, TDIM)).astype(np.float32)
    exact = sorted(range(N), key=lambda i: -maxsim(data["tokens"][i], q))[:5]
    stmt = select(Doc.id, Doc.tokens.maxsim(q).label("score")).order_by(Doc.tokens.maxsim_distance(q)).limit(5)
    with Session(engine) as s:
        s.execute(text("SET enable_seqscan = off"))
        plan = explain(s, stmt)
        assert "Index Scan using orm_docs_tokens_idx" in plan, plan
        rows = s.execute(stmt).all()
    assert [r.id for r in rows] == exact  # 120 rows < fde_rerank: every row is re-ranked exactly
    assert [r.score for r in rows] == pytest.approx([maxsim(data["tokens"][i], q) for i in exact], rel=1e-5)


def test_order_by_sparse_and_dense_use_the_indexes(engine: Any, data: dict[str, Any]) -> None:
    rng = np.random.default_rng(6)
    sq = SparseVector({3: 1.0, 10: 0.5, 40: 2.0, 63: 0.25}, SDIM)
    dense_sparse = np.stack([v.to_numpy() for v in data["sparse"]])
    scores = dense_sparse @ sq.to_numpy()
    e = rng.standard_normal(DIM).astype(np.float32)
    dense_stmt = select(Doc.id).order_by(Doc.emb.cosine_distance(e)).limit(5)
    with Session(engine) as s:
        s.execute(text("SET enable_seqscan = off"))
        # with the index pruning nothing: exact; for this transaction only
        assert set_local(s, sparse_query_cut=0, **{"pgsieve.sparse_heap_factor": 0.0}, sparse_top_k=5) == \
            {"pgsieve.sparse_query_cut": "0", "pgsieve.sparse_heap_factor": "0", "pgsieve.sparse_top_k": "5"}
        sparse_stmt = select(Doc.id).order_by(Doc.sparse.max_inner_product(sq)).limit(5)
        plan = explain(s, sparse_stmt)
        assert "Index Scan using orm_docs_sparse_idx" in plan, plan
        got = s.scalars(sparse_stmt).all()
        assert sorted(scores[got], reverse=True) == pytest.approx(sorted(scores, reverse=True)[:5], rel=1e-5)
        assert "Index Scan using orm_docs_emb_idx" in explain(s, dense_stmt)
        cos = (data["emb"] @ e) / np.linalg.norm(data["emb"], axis=1) / np.linalg.norm(e)
        assert s.scalars(dense_stmt).all() == list(np.argsort(-cos)[:5])
        s.commit()
        assert s.scalar(text("SHOW pgsieve.sparse_top_k")) == "10"  # back to the default after the transaction


def test_reflection_returns_multivec(engine: Any) -> None:
    meta = MetaData()
    table = Table("orm_docs", meta, autoload_with=engine)
    tokens, tokens8 = table.c.tokens.type, table.c.tokens8.type
    assert isinstance(tokens, MULTIVEC) and (tokens.dim, tokens.fmt) == (TDIM, None)
    assert isinstance(tokens8, MULTIVEC) and (tokens8.dim, tokens8.fmt) == (TDIM, "int8")
    assert type(table.c.emb.type).__name__ == "VECTOR"
    idx = {i["name"]: i for i in inspect(engine).get_indexes("orm_docs")}
    assert idx["orm_docs_tokens_idx"]["dialect_options"]["postgresql_using"] == "multivec_fde"
    # a reflected MULTIVEC still binds and compares
    with engine.connect() as conn:
        q = np.eye(TDIM, dtype=np.float32)[:2]
        n = conn.scalar(select(func.count()).select_from(table).where(table.c.tokens.maxsim(q) > -1e9))
        assert n == N


def test_type_and_index_errors_before_sql() -> None:
    assert MULTIVEC().get_col_spec() == "MULTIVEC" and MULTIVEC(128).get_col_spec() == "MULTIVEC(128)"
    assert MULTIVEC(128, "int8").get_col_spec() == "MULTIVEC(128, int8)"
    assert repr(MULTIVEC(128, "float16")) == "MULTIVEC(dim=128, fmt='float16')"
    with pytest.raises(ValueError, match="fmt must be one of"):
        MULTIVEC(128, "int4")
    with pytest.raises(ValueError, match="needs dim"):
        MULTIVEC(fmt="int8")
    with pytest.raises(ValueError, match="dim must be"):
        MULTIVEC(0)
    with pytest.raises(ValueError, match="unknown sparse_block option 'n_posting'"):
        sparse_block_index("i", "sparse", n_posting=10)
    with pytest.raises(ValueError, match="must be an integer"):
        multivec_fde_index("i", "tokens", reps=2.5)
    with pytest.raises(ValueError, match="quantizer must be one of"):
        binary_scan_index("i", "emb", quantizer="median")
    with pytest.raises(ValueError, match="operator class"):
        binary_scan_index("i", "emb", opclass="vector_hamming_ops")
    with pytest.raises(ValueError, match="finite"):
        check_reloptions("sparse_block", {"max_fraction": float("nan")})
    with pytest.raises(ValueError, match="access method"):
        pgsieve_index("i", "emb", "hnsw")
    with pytest.raises(ValueError, match="True or False"):
        multivec_fde_index("i", "tokens", store_tokens=1)
    assert check_reloptions("multivec_fde", {"store_tokens": False, "reps": np.int64(3)}) == \
        {"store_tokens": False, "reps": 3}
    idx = pgsieve_index("i", "emb", "binary_scan", "halfvec_cosine_ops", concurrently=True)
    assert isinstance(idx, Index) and idx.dialect_options["postgresql"]["concurrently"] is True
    with pytest.raises(ValueError, match="unknown pgsieve setting 'sparse_topk'"):
        set_local(None, sparse_topk=5)
    with pytest.raises(ValueError, match="must be an integer"):
        set_local(None, fde_rerank=1.5)
    with pytest.raises(ValueError, match="multivec"):
        MULTIVEC.bind_processor(MULTIVEC(), None)([[1.0, 2.0], [3.0]])  # ragged: refused on the client
