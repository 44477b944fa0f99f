"""First search helpers: a plain pgvector ``ORDER BY ... LIMIT`` query, with knobs.

The point of pgsieve's ``binary_scan`` index is that users keep the query
they already run.  ``binary_search`` therefore issues exactly that query and
only adds ``SET LOCAL pgsieve.binary_rerank`` (scoped to one transaction so
it cannot leak through a connection pool).  ``exact_search`` runs the same
query with index scans disabled: the brute-force ground truth used to
measure recall.

Every result carries the SQL it ran, so examples and benchmarks can print it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import psycopg
from psycopg import sql

from .ingest import _ensure_vector_adapters, table_identifier

__all__ = ["METRIC_OPERATORS", "SearchResult", "binary_search", "exact_search"]

#: pgvector distance operators by metric name
METRIC_OPERATORS: dict[str, str] = {"cosine": "<=>", "ip": "<#>", "l2": "<->"}


@dataclass
class SearchResult:
    """Ranked ids and distances (smaller is better, pgvector's convention)."""

    ids: list[int]
    scores: list[float]
    sql: str
    params: tuple[Any, ...]
    elapsed_ms: float
    settings: dict[str, Any] = field(default_factory=dict)  # the SET LOCALs applied


def _query_vector(query_vec: Any) -> np.ndarray:
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
    _ensure_vector_adapters(conn)
    sets = [sql.SQL("SET LOCAL {} = {}").format(sql.SQL(_guc_name(name)), sql.Literal(value))
            for name, value in settings.items()]
    with conn.transaction(), conn.cursor() as cur:
        for stmt in sets:
            cur.execute(stmt)
        t0 = time.perf_counter()
        # prepare=False: both helpers send the same text, and a server-side prepared
        # statement's generic plan ignores the planner settings of later calls
        # (exact_search would silently reuse the index plan, or vice versa)
        rows = cur.execute(select, params, prepare=False).fetchall()
        elapsed = (time.perf_counter() - t0) * 1000.0
    text = ";\n".join([s.as_string(conn) for s in sets] + [select.as_string(conn)])
    return SearchResult([int(r[0]) for r in rows], [float(r[1]) for r in rows], text, params,
                        elapsed, dict(settings))


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
    """The same query as a sequential scan + sort: exact ground truth for recall."""
    settings = {"enable_indexscan": "off", "enable_bitmapscan": "off"}
    return _run(conn, table, query_vec, k, metric, column, settings)
