"""Compile a checked :class:`~pgsieve.pipeline.Pipeline` over a collection's fields into ONE SQL statement.

The statement (named placeholders, psycopg ``%(name)s``) has this shape, whatever the stages::

    WITH g_0 AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank, <norm>
                 FROM (<gather 0: ORDER BY <distance> LIMIT k_0>) AS s),
         g_1 AS (...),
         cand AS (SELECT 'bm25' AS stage, id, rank, score, <contribution> FROM g_0 UNION ALL ...),
         fused AS (SELECT id, sum(contribution) AS fscore, jsonb_object_agg(stage, {rank, score}) AS stages
                   ... ORDER BY fscore DESC, id LIMIT k_fused),
         rr AS (SELECT fused.*, <exact MaxSim / float similarity> AS rscore FROM fused JOIN docs ...)
    SELECT id, score, stages, text, metadata FROM ... ORDER BY score DESC, id LIMIT k

Each gather is the plain ``ORDER BY <col> <op> q LIMIT k`` query its index serves (``sparse_block``,
``binary_scan``, ``multivec_fde`` or pgvector HNSW); scores are similarities (larger is better): the inner
product for sparse, 1 − cosine distance for dense and binary, MaxSim for multivector.  In ``managed`` mode the
same stages are written over pgvector alone (see :mod:`pgsieve.fields`).  Ties are broken by id everywhere, so
exact stages give identical results in both modes.

Query-side GUCs go in ``SET LOCAL`` statements run in the same transaction (``Compiled.settings``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from psycopg import sql
from psycopg.types.json import Jsonb

from .fields import Field
from .pipeline import Gather, Pipeline, PipelineError

__all__ = ["Compiled", "compile_pipeline", "SPARSE_HNSW_MAX_NNZ", "MODES", "mv_array_type"]

MODES = ("pgsieve", "managed")
#: pgvector's HNSW indexes sparsevec values with at most this many non-zeros
SPARSE_HNSW_MAX_NNZ = 1000
_HNSW_EF_MAX = 1000


@dataclass
class Compiled:
    """One statement, its parameters and the ``SET LOCAL`` settings that go before it."""

    statement: sql.Composed
    params: dict[str, Any]
    settings: dict[str, Any]
    stages: list[str]          # stage labels in the order hits' ``stages`` report them
    filtered: bool = False     # a metadata filter is part of the statement
    # what the statement's text depends on (not its parameters): equal keys, equal text, so a caller may render it
    # once (rendering the composed statement costs about a millisecond of Python per query)
    key: Optional[tuple[Any, ...]] = None

    def text(self, conn: Any) -> str:
        """The SET LOCALs and the statement as one SQL text (placeholders kept), then the parameters."""
        sets = [f"SET LOCAL {k} = {sql.Literal(v).as_string(conn)};" for k, v in self.settings.items()]
        lines = sets + [self.statement.as_string(conn) + ";", "-- parameters:"]
        lines += [f"--   %({k})s = {_show(v)}" for k, v in self.params.items()]
        return "\n".join(lines)


def _show(v: Any, limit: int = 6) -> str:
    """A short, readable rendering of a parameter for explain()."""
    from pgvector import SparseVector

    if isinstance(v, SparseVector):
        idx, val = v.indices(), v.values()
        body = ", ".join(f"{i}:{x:.4g}" for i, x in zip(idx[:limit], val[:limit]))
        more = f", … ({len(idx)} non-zeros)" if len(idx) > limit else ""
        return f"sparsevec {{{body}{more}}}/{v.dimensions()}"
    if isinstance(v, np.ndarray):
        flat = v.reshape(-1)
        body = ", ".join(f"{x:.4g}" for x in flat[:limit])
        more = ", …" if flat.size > limit else ""
        kind = "vector" if v.ndim == 1 else "tokens"
        return f"{kind}{list(v.shape)} [{body}{more}]"
    if isinstance(v, Jsonb):
        return f"jsonb {json.dumps(v.obj)}"
    if isinstance(v, (list, tuple)):
        return f"array of {len(v)} × {type(v[0]).__name__ if v else '?'}"
    return repr(v)


def mv_array_type(f: Field) -> str:
    """Managed mode's token array element type: ``vector`` for float32, ``halfvec`` for float16 / int8."""
    return "vector" if f.fmt == "float32" else "halfvec"


class _Builder:
    def __init__(self, table: sql.Composable, mode: str, fields: Mapping[str, Field],
                 queries: Mapping[str, Any], filter_: Optional[Mapping[str, Any]], iterative_scan: bool) -> None:
        self.t = table
        self.iterative_scan = iterative_scan
        self.mode = mode
        self.fields = fields
        self.queries = queries
        self.params: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}
        # gathers also return each row's ctid (pgsieve-mode MaxSim re-rank: maxsim_rerank takes TIDs, so the
        # candidates need no second look-up by id)
        self.want_tid = False
        self.filter = None
        if filter_:
            self.params["filter"] = Jsonb(dict(filter_))
            self.filter = sql.SQL("metadata @> %(filter)s::jsonb")

    def where(self, *conds: sql.Composable) -> sql.Composable:
        parts = list(conds) + ([self.filter] if self.filter is not None else [])
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)

    def tid(self) -> sql.Composable:
        """``, ctid AS pgs_tid`` in a gather's select list when the candidates' TIDs are wanted."""
        return sql.SQL(", ctid AS pgs_tid") if self.want_tid else sql.SQL("")

    def tid_col(self) -> sql.Composable:
        """``, pgs_tid``: the gather's TID column passed through an enclosing select."""
        return sql.SQL(", pgs_tid") if self.want_tid else sql.SQL("")

    def setting_max(self, name: str, value: int, floor: int = 0, cap: Optional[int] = None) -> None:
        v = max(int(self.settings.get(name, floor)), value, floor)
        self.settings[name] = min(v, cap) if cap is not None else v

    def hnsw(self, fetch: int) -> None:
        self.setting_max("hnsw.ef_search", fetch, floor=40, cap=_HNSW_EF_MAX)
        # pgvector >= 0.8: with a metadata filter, keep scanning the graph until LIMIT rows pass it.  Without one
        # every row the graph yields passes (NULLs are not indexed) and ef_search >= LIMIT already returns LIMIT
        # rows: the iterative scan would only add work (about 10-20% of an HNSW gather of 100, same rows)
        if self.iterative_scan and self.filter is not None:
            self.settings["hnsw.iterative_scan"] = "strict_order"

    def query(self, field: str, what: str) -> Any:
        if field not in self.queries:
            raise PipelineError(f"no query value for field {field!r} ({what})")
        return self.queries[field]

    # -- expressions over the table alias t ----------------------------------------
    def maxsim_expr(self, f: Field, qp: str, alias: sql.Composable) -> sql.Composable:
        col = sql.SQL("{}.{}").format(alias, sql.Identifier(f.name))
        if self.mode == "pgsieve":
            return sql.SQL("maxsim({}, %({})s)").format(col, sql.SQL(qp))
        typ = sql.SQL("{}({})[]").format(sql.SQL(mv_array_type(f)), sql.Literal(f.dim))
        return sql.SQL("(SELECT sum(m.best) FROM (SELECT max(-(d <#> qt.v)) AS best "
                       "FROM unnest(%({q})s::{typ}) WITH ORDINALITY AS qt(v, i) CROSS JOIN unnest({col}) AS d "
                       "GROUP BY qt.i) AS m)").format(q=sql.SQL(qp), typ=typ, col=col)

    # -- gathers --------------------------------------------------------------------
    def gather(self, i: int, g: Gather) -> sql.Composable:
        f = self.fields[g.field]
        kind = g.kind or f.kind
        qp, kp = f"q_{i}", f"k_{i}"
        self.params[kp] = g.k
        col = sql.Identifier(f.name)
        if kind == "sparse":
            self.params[qp] = self.query(f.name, "sparse gather")
            return self._sparse(f, col, qp, kp, g.k)
        if kind == "dense":
            self.params[qp] = self.query(f.name, "dense gather")
            self.hnsw(g.k)
            return sql.SQL("SELECT id{tid}, 1 - ({c} <=> %({q})s) AS score FROM {t}{w} ORDER BY {c} <=> %({q})s "
                           "LIMIT %({k})s").format(c=col, q=sql.SQL(qp), k=sql.SQL(kp), t=self.t, tid=self.tid(),
                                                   w=self.where(sql.SQL("{} IS NOT NULL").format(col)))
        if kind == "binary":
            return self._binary(f, qp, kp, g.k)
        return self._multivector(f, col, qp, kp, g.k)

    def _sparse(self, f: Field, col: sql.Composable, qp: str, kp: str, k: int) -> sql.Composable:
        one = "SELECT id{tid}, -({c} <#> %({q})s) AS score FROM {t}{w} ORDER BY {c} <#> %({q})s LIMIT %({k})s"
        if self.mode == "pgsieve":
            self.setting_max("pgsieve.sparse_top_k", k)
            return sql.SQL(one).format(c=col, q=sql.SQL(qp), k=sql.SQL(kp), t=self.t, tid=self.tid(),
                                       w=self.where(sql.SQL("{} IS NOT NULL").format(col)))
        self.hnsw(k)
        nnz = sql.Identifier(f"{f.name}_nnz")
        lim = sql.Literal(SPARSE_HNSW_MAX_NNZ)
        small = sql.SQL(one).format(c=col, q=sql.SQL(qp), k=sql.SQL(kp), t=self.t, tid=self.tid(),
                                    w=self.where(sql.SQL("{} <= {}").format(nnz, lim)))
        large = sql.SQL(one).format(c=col, q=sql.SQL(qp), k=sql.SQL(kp), t=self.t, tid=self.tid(),
                                    w=self.where(sql.SQL("{} > {}").format(nnz, lim)))
        return sql.SQL("SELECT id{tid}, score FROM (({small}) UNION ALL ({large})) AS u "
                       "ORDER BY score DESC, id LIMIT %({k})s").format(
            small=small, large=large, k=sql.SQL(kp), tid=self.tid_col())

    def _binary(self, f: Field, qp: str, kp: str, k: int) -> sql.Composable:
        src = f.source or f.name
        self.params[qp] = self.query(src, "binary gather")
        col = sql.Identifier(src)
        d = sql.Literal(f.dim)
        if self.mode == "pgsieve":
            self.setting_max("pgsieve.binary_rerank", k, floor=200)
            expr = sql.SQL("({}::halfvec({}))").format(col, d)
            return sql.SQL("SELECT id{tid}, 1 - ({e} <=> %({q})s::halfvec({d})) AS score FROM {t}{w} "
                           "ORDER BY {e} <=> %({q})s::halfvec({d}) LIMIT %({k})s").format(
                e=expr, q=sql.SQL(qp), d=d, k=sql.SQL(kp), t=self.t, tid=self.tid(),
                w=self.where(sql.SQL("{} IS NOT NULL").format(col)))
        fetch = k * f.oversample
        op = f"o_{kp}"
        self.params[op] = fetch
        self.hnsw(fetch)
        return sql.SQL("SELECT id{tido}, 1 - (v <=> %({q})s) AS score FROM (SELECT id{tid}, {c} AS v FROM {t}{w} "
                       "ORDER BY (binary_quantize({c})::bit({d})) <~> binary_quantize(%({q})s::vector({d}))::bit({d}) "
                       "LIMIT %({o})s) AS b ORDER BY v <=> %({q})s, id LIMIT %({k})s").format(
            c=col, d=d, q=sql.SQL(qp), o=sql.SQL(op), k=sql.SQL(kp), t=self.t, tid=self.tid(),
            tido=self.tid_col(), w=self.where(sql.SQL("{} IS NOT NULL").format(col)))

    def _multivector(self, f: Field, col: sql.Composable, qp: str, kp: str, k: int) -> sql.Composable:
        q = self.query(f.name, "multivector gather")
        if self.mode == "pgsieve":
            self.params[qp] = q
            self.setting_max("pgsieve.fde_rerank", k, floor=200)
            return sql.SQL("SELECT id{tid}, -({c} @# %({q})s) AS score FROM {t}{w} ORDER BY {c} @# %({q})s "
                           "LIMIT %({k})s").format(c=col, q=sql.SQL(qp), k=sql.SQL(kp), t=self.t, tid=self.tid(),
                                                   w=self.where(sql.SQL("{} IS NOT NULL").format(col)))
        tokens, fde = q
        self.params[qp] = tokens
        fp, op = f"f_{qp}", f"o_{kp}"
        self.params[fp] = fde
        fetch = k * f.oversample
        self.params[op] = fetch
        self.hnsw(fetch)
        fcol = sql.Identifier(f"{f.name}_fde")
        inner = sql.SQL("SELECT *{tid} FROM {t}{w} ORDER BY {fc} <#> %({fq})s LIMIT %({o})s").format(tid=self.tid(),
            t=self.t, w=self.where(sql.SQL("{} IS NOT NULL").format(fcol)), fc=fcol, fq=sql.SQL(fp),
            o=sql.SQL(op))
        return sql.SQL("SELECT id{tid}, {ms} AS score FROM ({inner}) AS c ORDER BY score DESC, id LIMIT %({k})s").format(
            tid=self.tid_col(), ms=self.maxsim_expr(f, qp, sql.SQL("c")), inner=inner, k=sql.SQL(kp))


def compile_pipeline(table: sql.Composable, mode: str, fields: Mapping[str, Field], pipeline: Pipeline, k: int,
                     queries: Mapping[str, Any], filter: Optional[Mapping[str, Any]] = None, *,
                     regclass: str = "", iterative_scan: bool = True) -> Compiled:
    """The one statement for a pipeline *already checked* against ``fields`` (``Pipeline.check``).

    ``regclass``: the table as ``maxsim_rerank`` takes it (``'"schema"."name"'``), for a pgsieve-mode MaxSim re-rank.
    ``iterative_scan``: set ``hnsw.iterative_scan`` (pgvector 0.8 and later).

    ``queries``: the encoded query per field a stage reads — a dense ``np.ndarray``, a ``SparseVector``, a
    multivector's tokens (pgsieve mode: the ``MultiVector``/array the adapters send as ``multivec``; managed: a
    ``(tokens as a list of pgvector values, FDE np.ndarray)`` pair for gathers, the token list for re-rank).
    """
    if mode not in MODES:
        raise PipelineError(f"mode must be one of {MODES}, got {mode!r}")
    b = _Builder(table, mode, fields, queries, filter, iterative_scan)
    rr = pipeline.rerank
    b.want_tid = mode == "pgsieve" and rr is not None and rr.method == "maxsim"
    tid_col = b.tid_col()
    ctes: list[sql.Composable] = []
    branches: list[sql.Composable] = []
    per_stage: list[sql.Composable] = []
    fusion = pipeline.fusion
    for i, g in enumerate(pipeline.gathers):
        inner = b.gather(i, g)
        norm = sql.SQL("")
        if fusion is not None and fusion.method == "weighted":
            norm = sql.SQL(", coalesce((score - min(score) OVER ()) / "
                           "nullif(max(score) OVER () - min(score) OVER (), 0), 1.0) AS norm")
        ctes.append(sql.SQL("{g} AS (SELECT id{tc}, score, row_number() OVER (ORDER BY score DESC, id) AS rank{n} "
                            "FROM ({inner}) AS s)").format(g=sql.Identifier(f"g_{i}"), tc=tid_col, n=norm,
                                                           inner=inner))
        if fusion is None:
            contrib = sql.SQL("score")
        else:
            wp = f"w_{i}"
            b.params[wp] = fusion.weight(g.label)
            if fusion.method == "rrf":
                b.params["rrf_k"] = float(fusion.k)
                contrib = sql.SQL("%({w})s::float8 / (%(rrf_k)s::float8 + rank)").format(w=sql.SQL(wp))
            else:
                contrib = sql.SQL("%({w})s::float8 * norm").format(w=sql.SQL(wp))
        branches.append(sql.SQL("SELECT {i} AS stage, id{tc}, rank, score, {c} AS contrib FROM {g}").format(
            i=sql.Literal(i), tc=tid_col, c=contrib, g=sql.Identifier(f"g_{i}")))
        # each stage's rank and score as columns; the jsonb is built for the returned rows only
        per_stage.append(sql.SQL("max(rank) FILTER (WHERE stage = {i}) AS {r}, "
                                 "max(score) FILTER (WHERE stage = {i}) AS {s}").format(
            i=sql.Literal(i), r=sql.Identifier(f"r_{i}"), s=sql.Identifier(f"s_{i}")))
    ctes.append(sql.SQL("cand AS ({})").format(sql.SQL(" UNION ALL ").join(branches)))
    b.params["k_fused"] = pipeline.fused_limit(k)
    ctes.append(sql.SQL(
        "fused AS (SELECT *, row_number() OVER (ORDER BY fscore DESC, id) AS frank "
        "FROM (SELECT id, sum(contrib)::float8 AS fscore{tagg}, {cols} "
        "FROM cand GROUP BY id) AS a ORDER BY fscore DESC, id LIMIT %(k_fused)s)").format(
        tagg=sql.SQL(", min(pgs_tid) AS pgs_tid") if b.want_tid else sql.SQL(""),
        cols=sql.SQL(", ").join(per_stage)))
    b.params["k"] = k
    labels = [g.label for g in pipeline.gathers]
    stages = sql.SQL(" || ").join(
        [sql.SQL("(CASE WHEN r.{r} IS NULL THEN '{{}}'::jsonb ELSE jsonb_build_object({l}, jsonb_build_object("
                 "'rank', r.{r}, 'score', r.{s})) END)").format(
            r=sql.Identifier(f"r_{i}"), s=sql.Identifier(f"s_{i}"), l=sql.Literal(g.label))
         for i, g in enumerate(pipeline.gathers)])
    if fusion is not None:
        labels.append(fusion.method)
        stages = stages + sql.SQL(" || jsonb_build_object({m}, jsonb_build_object('rank', r.frank, 'score', r.fscore))"
                                  ).format(m=sql.Literal(fusion.method))
    if rr is None:
        final = sql.SQL("SELECT r.id, r.fscore AS score, {st} AS stages, t.text, t.metadata "
                        "FROM fused AS r JOIN {t} AS t ON t.id = r.id ORDER BY r.fscore DESC, r.id LIMIT %(k)s"
                        ).format(st=stages, t=table)
    else:
        assert rr.field is not None, "Pipeline.check resolves the re-rank field"
        f = fields[rr.field]
        if rr.method == "maxsim":
            q = b.query(f.name, "MaxSim re-rank")
            b.params["q_rr"] = q[0] if mode == "managed" and isinstance(q, tuple) else q
        else:
            b.params["q_rr"] = b.query(f.name, "exact re-rank")
        labels.append(rr.method)
        if rr.method == "maxsim" and mode == "pgsieve":
            # maxsim_rerank fetches each candidate by the TID its gather saw and scores it with the C kernel:
            # measured about 1.5x faster than maxsim() per joined row (bench suite pipeline), same results
            b.params.update(rr_rel=regclass, rr_col=f.name, rr_alpha=rr.alpha, rr_beta=rr.beta)
            ctes.append(sql.SQL(
                "rr AS (SELECT r.*, m.score AS rscore FROM maxsim_rerank("
                "%(rr_rel)s::regclass, %(rr_col)s::name, "
                "ARRAY(SELECT f.pgs_tid FROM fused AS f ORDER BY f.fscore DESC, f.id), "
                "ARRAY(SELECT f.fscore FROM fused AS f ORDER BY f.fscore DESC, f.id), %(q_rr)s, %(k)s, "
                "%(rr_alpha)s::float8, %(rr_beta)s::integer) AS m JOIN fused AS r ON r.pgs_tid = m.tid)"))
        else:
            if rr.alpha is not None or rr.beta is not None:
                raise PipelineError("rerank_maxsim(alpha=, beta=): candidate pruning and early exit need pgsieve "
                                    "mode (maxsim_rerank); managed mode re-ranks exactly")
            if rr.method == "maxsim":
                expr = b.maxsim_expr(f, "q_rr", sql.SQL("t"))
            else:
                expr = sql.SQL("1 - (t.{} <=> %(q_rr)s)").format(sql.Identifier(f.name))
            ctes.append(sql.SQL("rr AS (SELECT r.*, {e} AS rscore "
                                "FROM fused AS r JOIN {t} AS t ON t.id = r.id)").format(e=expr, t=table))
        final = sql.SQL(
            "SELECT r.id, r.rscore AS score, {st} || jsonb_build_object({m}, jsonb_build_object("
            "'rank', row_number() OVER (ORDER BY r.rscore DESC NULLS LAST, r.id), 'score', r.rscore)) AS stages, "
            "t.text, t.metadata FROM rr AS r JOIN {t} AS t ON t.id = r.id "
            "ORDER BY r.rscore DESC NULLS LAST, r.id LIMIT %(k)s").format(
            st=stages, m=sql.Literal(rr.method), t=table)
    stmt = sql.SQL("WITH {ctes}\n{final}").format(ctes=sql.SQL(",\n").join(ctes), final=final)
    key = (mode, repr(table), regclass, iterative_scan, b.filter is not None, repr(pipeline),
           tuple(repr(f) for f in fields.values()))
    return Compiled(stmt, b.params, b.settings, labels, filtered=b.filter is not None, key=key)
