"""Search helpers: plain pgvector ``ORDER BY ... LIMIT`` queries with knobs, and hybrid search in one statement.

The point of pgsieve's ``binary_scan`` index is that users keep the query
they already run.  ``binary_search`` therefore issues exactly that query and
only adds ``SET LOCAL pgsieve.binary_rerank`` (scoped to one transaction so
it cannot leak through a connection pool).  ``exact_search`` runs the same
query with index scans disabled: the brute-force ground truth used to
measure recall.

``sparse_search`` is the same for a ``sparsevec`` column and its
``sparse_block`` index (BM25, SPLADE): ``ORDER BY sparse <#> q LIMIT k`` with
``SET LOCAL pgsieve.sparse_top_k = k``.  ``hybrid_search`` compiles sparse +
dense retrieval and Reciprocal Rank Fusion into one SQL statement (no
client-side merging), so any application can run the same text.

Every result carries the SQL it ran, so examples and benchmarks can print it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Optional, Union

import numpy as np
import psycopg
from pgvector import SparseVector
from psycopg import sql

from .ingest import _ensure_vector_adapters, table_identifier

__all__ = ["METRIC_OPERATORS", "SearchResult", "binary_search", "exact_search", "sparse_search",
           "hybrid_search"]

#: pgvector distance operators by metric name
METRIC_OPERATORS: dict[str, str] = {"cosine": "<=>", "ip": "<#>", "l2": "<->"}


@dataclass
class SearchResult:
    """Ranked ids and scores.

    ``scores`` are pgvector distances (smaller is better) for the single-stage helpers, and RRF
    scores (larger is better) for :func:`hybrid_search`, whose ``ranks`` give each result's rank in
    each stage's gather (``None``: not gathered by that stage).  ``sql`` runs with ``params``
    (a tuple for ``%s`` placeholders, a dict for ``%(name)s`` ones) after the ``SET LOCAL`` lines.
    """

    ids: list[int]
    scores: list[float]
    sql: str
    params: Union[tuple[Any, ...], dict[str, Any]]
    elapsed_ms: float
    settings: dict[str, Any] = field(default_factory=dict)  # the SET LOCALs applied
    ranks: dict[str, list[Optional[int]]] = field(default_factory=dict)  # hybrid: stage -> rank per result


def _query_vector(query_vec: Any) -> Any:
    if isinstance(query_vec, SparseVector):
        from .encoders.sparse import check_sparse

        return check_sparse(query_vec, what="query_vec")
    q = np.asarray(query_vec)
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"query_vec must be a non-empty 1-D vector, got shape {q.shape}")
    if not np.issubdtype(q.dtype, np.number):
        raise ValueError(f"query_vec must be numeric, got dtype {q.dtype}")
    q = q.astype(np.float32, copy=False)
    if not np.isfinite(q).all():
        raise ValueError("query_vec contains NaN or Inf")
    return q


_GUC_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


def _guc_name(name: str) -> str:
    """A setting name safe to splice into SET LOCAL (SET takes no bind parameters)."""
    if not _GUC_RE.match(name):
        raise ValueError(f"invalid setting name {name!r}")
    return name


def _select(table: str, metric: str, column: str) -> sql.Composed:
    if metric not in METRIC_OPERATORS:
        raise ValueError(f"metric must be one of {tuple(METRIC_OPERATORS)}, got {metric!r}")
    op = sql.SQL(METRIC_OPERATORS[metric])
    col = sql.Identifier(column)
    return sql.SQL("SELECT id, {col} {op} %s AS score FROM {t} ORDER BY {col} {op} %s LIMIT %s").format(
        col=col, op=op, t=table_identifier(table))


def _run(conn: psycopg.Connection[Any], table: str, query_vec: Any, k: int, metric: str,
         column: str, settings: dict[str, Any]) -> SearchResult:
    """Apply ``settings`` with SET LOCAL and run the ORDER BY query in one transaction."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    q = _query_vector(query_vec)
    select = _select(table, metric, column)
    params = (q, q, k)
    rows, elapsed, text = _execute(conn, select, params, settings)
    return SearchResult([int(r[0]) for r in rows], [float(r[1]) for r in rows], text, params,
                        elapsed, dict(settings))


def _execute(conn: psycopg.Connection[Any], stmt: sql.Composable, params: Any,
             settings: Mapping[str, Any]) -> tuple[list[Any], float, str]:
    """SET LOCAL ``settings`` and run ``stmt`` in one transaction; (rows, ms, SQL text with the SETs)."""
    _ensure_vector_adapters(conn)
    sets = [sql.SQL("SET LOCAL {} = {}").format(sql.SQL(_guc_name(name)), sql.Literal(value))
            for name, value in settings.items()]
    with conn.transaction(), conn.cursor() as cur:
        for s in sets:
            cur.execute(s)
        t0 = time.perf_counter()
        # prepare=False: both helpers send the same text, and a server-side prepared
        # statement's generic plan ignores the planner settings of later calls
        # (exact_search would silently reuse the index plan, or vice versa)
        rows = cur.execute(stmt, params, prepare=False).fetchall()
        elapsed = (time.perf_counter() - t0) * 1000.0
    text = ";\n".join([s.as_string(conn) for s in sets] + [stmt.as_string(conn)])
    return rows, elapsed, text


def binary_search(conn: psycopg.Connection[Any], table: str, query_vec: Any, k: int = 10,
                  rerank: Optional[int] = None, metric: str = "cosine", *,
                  column: str = "emb", force_index: bool = False) -> SearchResult:
    """Top-``k`` by pgvector distance; the planner uses a ``binary_scan`` index if one exists.

    ``rerank`` sets ``pgsieve.binary_rerank`` (how many binary candidates are
    re-scored exactly) for this query only.  ``force_index`` adds
    ``SET LOCAL enable_seqscan = off``: on small tables the planner rightly
    prefers a sequential scan, which tests and demos must override to
    exercise the index.
    """
    settings: dict[str, Any] = {"enable_seqscan": "off"} if force_index else {}
    if rerank is not None:
        if not isinstance(rerank, int) or rerank < 1:
            raise ValueError(f"rerank must be a positive int, got {rerank!r}")
        settings["pgsieve.binary_rerank"] = rerank
    return _run(conn, table, query_vec, k, metric, column, settings)


def exact_search(conn: psycopg.Connection[Any], table: str, query_vec: Any, k: int = 10,
                 metric: str = "cosine", *, column: str = "emb") -> SearchResult:
    """The same query as a sequential scan + sort: exact ground truth for recall.

    ``query_vec`` may be a ``SparseVector`` (with ``metric="ip"`` and a ``sparsevec`` column).
    """
    settings = {"enable_indexscan": "off", "enable_bitmapscan": "off"}
    return _run(conn, table, query_vec, k, metric, column, settings)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def sparse_search(conn: psycopg.Connection[Any], table: str, query_vec: Any, k: int = 10, *,
                  column: str = "sparse", top_k: Optional[int] = None, force_index: bool = False,
                  settings: Optional[Mapping[str, Any]] = None) -> SearchResult:
    """Top-``k`` by inner product on a ``sparsevec`` column: ``ORDER BY sparse <#> q LIMIT k``.

    Uses a ``sparse_block`` index if there is one, with ``SET LOCAL pgsieve.sparse_top_k = top_k``
    (default ``k``: the index ranks as many rows per round as the LIMIT wants).  Scores are
    ``<#>`` (the negative inner product, smaller is better).  ``settings``: further ``SET LOCAL``
    values, e.g. ``{"pgsieve.sparse_query_cut": 0}``.
    """
    k = _positive_int("k", k)
    merged: dict[str, Any] = {"enable_seqscan": "off"} if force_index else {}
    merged["pgsieve.sparse_top_k"] = _positive_int("top_k", top_k if top_k is not None else k)
    merged.update(settings or {})
    return _run(conn, table, query_vec, k, "ip", column, merged)


def _sparse_query(q: Any) -> SparseVector:
    if not isinstance(q, SparseVector):
        raise TypeError(f"sparse_q must be a pgvector.SparseVector, got {type(q).__name__}")
    return _query_vector(q)


def _hybrid_statement(table: str, dense_column: str, sparse_column: str, metric: str) -> sql.Composed:
    if metric not in METRIC_OPERATORS:
        raise ValueError(f"metric must be one of {tuple(METRIC_OPERATORS)}, got {metric!r}")
    return sql.SQL("""WITH sparse_hits AS (
    SELECT id, row_number() OVER (ORDER BY dist, id) AS rank
    FROM (SELECT id, {sp} <#> %(sparse_q)s AS dist FROM {t}
          WHERE {sp} IS NOT NULL
          ORDER BY {sp} <#> %(sparse_q)s LIMIT %(k_gather)s) AS s
), dense_hits AS (
    SELECT id, row_number() OVER (ORDER BY dist, id) AS rank
    FROM (SELECT id, {de} {op} %(dense_q)s AS dist FROM {t}
          WHERE {de} IS NOT NULL
          ORDER BY {de} {op} %(dense_q)s LIMIT %(k_gather)s) AS d
)
SELECT id,
       coalesce(1.0 / (%(rrf_k)s::float8 + s.rank), 0.0)
         + coalesce(1.0 / (%(rrf_k)s::float8 + d.rank), 0.0) AS rrf,
       s.rank AS sparse_rank, d.rank AS dense_rank
FROM sparse_hits AS s FULL OUTER JOIN dense_hits AS d USING (id)
ORDER BY rrf DESC, id
LIMIT %(k)s""").format(sp=sql.Identifier(sparse_column), de=sql.Identifier(dense_column),
                      op=sql.SQL(METRIC_OPERATORS[metric]), t=table_identifier(table))


def hybrid_search(conn: psycopg.Connection[Any], table: str, dense_q: Any, sparse_q: SparseVector,
                  k: int = 10, k_gather: int = 50, rrf_k: float = 60, *, dense_column: str = "emb",
                  sparse_column: str = "sparse", metric: str = "cosine", rerank: Optional[int] = None,
                  force_index: bool = False, settings: Optional[Mapping[str, Any]] = None) -> SearchResult:
    """Sparse + dense retrieval fused with Reciprocal Rank Fusion, in ONE SQL statement.

    Two CTEs gather the top ``k_gather`` rows of each stage with the usual pgvector queries
    (``ORDER BY sparse <#> q LIMIT k_gather``, served by a ``sparse_block`` index, and
    ``ORDER BY emb <=> q LIMIT k_gather``, served by ``binary_scan``); each gathered row gets its
    rank in its stage (ties broken by id), and the full outer join of the two gathers is ranked by
    RRF: ``score = Σ_stages 1 / (rrf_k + rank)`` (Cormack et al. 2009; a row missing from a gather
    adds nothing for that stage).  Ties in RRF are broken by id.

    The statement is plain SQL with named placeholders (``%(sparse_q)s``, ``%(dense_q)s``,
    ``%(k_gather)s``, ``%(rrf_k)s``, ``%(k)s``): ``result.sql`` and ``result.params`` run it.  Per
    transaction it sets ``pgsieve.sparse_top_k = k_gather`` and, with ``rerank``,
    ``pgsieve.binary_rerank`` (keep it ≥ ``k_gather``; the default 200 is); ``force_index`` adds
    ``enable_seqscan = off`` (small tables); ``settings`` adds further ``SET LOCAL`` values.

    Returns the top ``k`` ids with RRF scores (larger is better) and ``ranks["sparse"]`` /
    ``ranks["dense"]``: each result's rank in that stage's gather, or ``None``.
    """
    k = _positive_int("k", k)
    k_gather = _positive_int("k_gather", k_gather)
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, (int, float)) or not (0 <= rrf_k < float("inf")):
        raise ValueError(f"rrf_k must be a finite number >= 0, got {rrf_k!r}")
    dq = _query_vector(dense_q)
    if isinstance(dq, SparseVector):
        raise TypeError("dense_q must be a dense vector (numpy array or list), got a SparseVector")
    sq = _sparse_query(sparse_q)
    stmt = _hybrid_statement(table, dense_column, sparse_column, metric)
    merged: dict[str, Any] = {"enable_seqscan": "off"} if force_index else {}
    merged["pgsieve.sparse_top_k"] = k_gather
    if rerank is not None:
        merged["pgsieve.binary_rerank"] = _positive_int("rerank", rerank)
    merged.update(settings or {})
    params = {"sparse_q": sq, "dense_q": dq, "k_gather": k_gather, "rrf_k": rrf_k, "k": k}
    rows, elapsed, text = _execute(conn, stmt, params, merged)
    ranks: dict[str, list[Optional[int]]] = {
        "sparse": [None if r[2] is None else int(r[2]) for r in rows],
        "dense": [None if r[3] is None else int(r[3]) for r in rows],
    }
    return SearchResult([int(r[0]) for r in rows], [float(r[1]) for r in rows], text, params, elapsed,
                        merged, ranks)
