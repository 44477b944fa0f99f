"""Retrieval pipelines: gather stages → fusion → re-rank, validated before any SQL is built.

A :class:`Pipeline` is a plain value: the first-stage *gathers* (each names a collection field and how many
candidates it returns), a *fusion* of their ranked lists (Reciprocal Rank Fusion, or a weighted sum of
min-max normalized scores) and an optional *re-rank* of the fused candidates (exact MaxSim over a multivector
field, or the exact float distance of a dense field)::

    from pgsieve.pipeline import Pipeline, gather, rrf, rerank_maxsim

    p = Pipeline(gather("bm25", k=100), gather("dense", k=100), rrf(k=60), rerank_maxsim("colbert", k=100))
    hits = coll.search("create a directory", p, k=10)

:func:`pgsieve.sqlcompile.compile_pipeline` turns a pipeline and a collection's fields into ONE SQL statement
(``coll.explain`` shows it).  ``Pipeline.to_dict()`` / ``Pipeline.from_dict()`` are the JSON form the SQL
function ``pgsieve_catalog.search(collection, pipeline jsonb, ...)`` takes.

Structural errors (no gather, two gathers and no fusion, k ≤ 0, unknown fusion weights) raise
:class:`PipelineError` when the pipeline is built; errors that need the collection (unknown field, a stage kind
the field cannot serve, a re-rank over a missing multivector field) raise it in :meth:`Pipeline.check`, which
``search`` and ``explain`` call before any SQL is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    from .collections import Collection, Field

__all__ = ["PipelineError", "Gather", "Fusion", "Rerank", "Pipeline", "gather", "rrf", "weighted",
           "rerank_maxsim", "rerank_exact", "GATHER_KINDS"]

#: which field kinds each gather kind can read
GATHER_KINDS: dict[str, tuple[str, ...]] = {
    "sparse": ("sparse",),
    "dense": ("dense",),
    "binary": ("binary",),
    "multivector": ("multivector",),
}
_MAX_K = 100_000
#: stage names hits use for fusion and re-rank scores
RESERVED_STAGE_NAMES = ("rrf", "weighted", "maxsim", "exact")


class PipelineError(ValueError):
    """A malformed pipeline or a request the collection cannot serve (raised before any SQL runs)."""


def _k(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_K:
        raise PipelineError(f"{name} must be an int in 1..{_MAX_K}, got {value!r}")
    return value


def _name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise PipelineError(f"{what} must be a field name (non-empty str), got {value!r}")
    return value


@dataclass(frozen=True)
class Gather:
    """First stage: the top ``k`` rows of one field by its own similarity (through that field's index).

    ``kind`` (``sparse`` / ``dense`` / ``binary`` / ``multivector``) defaults to the field's kind; ``name``
    (default: the field) labels the stage in hits' ``stages`` and must be unique in a pipeline.
    """

    field: str
    k: int = 100
    kind: Optional[str] = None
    name: Optional[str] = None

    def __post_init__(self) -> None:
        _name("gather field", self.field)
        _k(f"gather({self.field!r}) k", self.k)
        if self.kind is not None and self.kind not in GATHER_KINDS:
            raise PipelineError(f"gather kind must be one of {tuple(GATHER_KINDS)}, got {self.kind!r}")
        if self.name is not None:
            _name("gather name", self.name)

    @property
    def label(self) -> str:
        return self.name or self.field


@dataclass(frozen=True)
class Fusion:
    """How gathered lists merge: ``rrf`` (Σ w_s / (k + rank_s)) or ``weighted`` (Σ w_s · minmax(score_s))."""

    method: str = "rrf"
    k: float = 60.0
    weights: Optional[Mapping[str, float]] = None
    limit: Optional[int] = None  # fused candidates kept (default: the re-rank's k, else the search's k)

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "weighted"):
            raise PipelineError(f"fusion method must be 'rrf' or 'weighted', got {self.method!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, float)) or not (0 <= self.k < math.inf):
            raise PipelineError(f"rrf k must be a finite number >= 0, got {self.k!r}")
        if self.weights is not None:
            if not isinstance(self.weights, Mapping) or not self.weights:
                raise PipelineError(f"fusion weights must be a non-empty mapping stage -> weight, got {self.weights!r}")
            for s, w in self.weights.items():
                _name("fusion weight key", s)
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                    raise PipelineError(f"fusion weight for {s!r} must be a finite number >= 0, got {w!r}")
        if self.method == "weighted" and self.weights is None:
            raise PipelineError("weighted fusion needs weights={stage: weight}")
        if self.limit is not None:
            _k("fusion limit", self.limit)

    def weight(self, stage: str) -> float:
        return 1.0 if self.weights is None else float(self.weights.get(stage, 0.0))


@dataclass(frozen=True)
class Rerank:
    """Re-rank the best ``k`` fused candidates exactly: ``maxsim`` on a multivector field, ``exact`` on a dense one."""

    method: str
    field: Optional[str] = None
    k: int = 100
    alpha: Optional[float] = None  # maxsim, pgsieve mode: candidate pruning (maxsim_rerank's alpha)
    beta: Optional[int] = None     # maxsim, pgsieve mode: early exit after beta non-improving candidates

    def __post_init__(self) -> None:
        if self.method not in ("maxsim", "exact"):
            raise PipelineError(f"rerank method must be 'maxsim' or 'exact', got {self.method!r}")
        if self.field is not None:
            _name("rerank field", self.field)
        _k("rerank k", self.k)
        if (self.alpha is not None or self.beta is not None) and self.method != "maxsim":
            raise PipelineError("alpha/beta (candidate pruning, early exit) apply to rerank_maxsim only")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float))
                                       or not 0 <= self.alpha <= 1):
            raise PipelineError(f"rerank alpha must be a number in [0, 1], got {self.alpha!r}")
        if self.beta is not None:
            _k("rerank beta", self.beta)


def gather(field: str, k: int = 100, *, kind: Optional[str] = None, name: Optional[str] = None) -> Gather:
    """A gather stage over ``field`` returning ``k`` candidates."""
    return Gather(field, k, kind, name)


def rrf(k: float = 60, weights: Optional[Mapping[str, float]] = None, *, limit: Optional[int] = None) -> Fusion:
    """Reciprocal Rank Fusion (Cormack et al. 2009): score = Σ_stages w_s / (k + rank_s); a stage that did not
    gather a row adds nothing."""
    return Fusion("rrf", k, dict(weights) if weights is not None else None, limit)


def weighted(weights: Mapping[str, float], *, limit: Optional[int] = None) -> Fusion:
    """Weighted sum of each stage's scores, min-max normalized over that stage's gathered list."""
    return Fusion("weighted", 60.0, dict(weights), limit)


def rerank_maxsim(field: Optional[str] = None, k: int = 100, *, alpha: Optional[float] = None,
                  beta: Optional[int] = None) -> Rerank:
    """Exact MaxSim (late interaction) over the best ``k`` fused candidates; ``field``: the multivector field
    (default: the collection's only one).  pgsieve mode only: ``alpha`` (candidate pruning) and ``beta`` (early
    exit) as in ``maxsim_rerank`` (Martinico et al. 2026: 0.03 and 3) trade exactness for speed."""
    return Rerank("maxsim", field, k, alpha, beta)


def rerank_exact(field: Optional[str] = None, k: int = 100) -> Rerank:
    """Exact float similarity of a dense field over the best ``k`` fused candidates (default: the only dense
    field)."""
    return Rerank("exact", field, k)


Stage = Union[Gather, Fusion, Rerank]


@dataclass(frozen=True, init=False)
class Pipeline:
    """Gathers → fusion → optional re-rank; ``Pipeline(gather(...), gather(...), rrf(), rerank_maxsim())``."""

    gathers: tuple[Gather, ...]
    fusion: Optional[Fusion] = None
    rerank: Optional[Rerank] = None

    def __init__(self, *stages: Stage, gathers: Sequence[Gather] = (), fusion: Optional[Fusion] = None,
                 rerank: Optional[Rerank] = None) -> None:
        gs = list(gathers)
        for s in stages:
            if isinstance(s, Gather):
                gs.append(s)
            elif isinstance(s, Fusion):
                if fusion is not None:
                    raise PipelineError("a pipeline has at most one fusion stage")
                fusion = s
            elif isinstance(s, Rerank):
                if rerank is not None:
                    raise PipelineError("a pipeline has at most one re-rank stage")
                rerank = s
            else:
                raise PipelineError(f"not a pipeline stage: {s!r} (use gather(), rrf(), weighted(), "
                                    "rerank_maxsim(), rerank_exact())")
        if not gs:
            raise PipelineError("a pipeline needs at least one gather stage")
        labels = [g.label for g in gs]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise PipelineError(f"gather stages must have distinct names; repeated: {dup} (pass name=...)")
        if len(gs) > 1 and fusion is None:
            raise PipelineError(f"a pipeline with {len(gs)} gather stages needs a fusion stage (rrf() or weighted())")
        if fusion is not None and fusion.weights is not None:
            unknown = sorted(set(fusion.weights) - set(labels))
            if unknown:
                raise PipelineError(f"fusion weights name unknown stages {unknown}; the gathers are {labels}")
        object.__setattr__(self, "gathers", tuple(gs))
        object.__setattr__(self, "fusion", fusion)
        object.__setattr__(self, "rerank", rerank)

    # -- against a collection ---------------------------------------------------
    def check(self, fields: Mapping[str, "Field"]) -> "Pipeline":
        """Validate against a collection's fields; returns the pipeline with kinds and re-rank field resolved."""
        resolved: list[Gather] = []
        for g in self.gathers:
            if g.label in RESERVED_STAGE_NAMES:
                raise PipelineError(f"gather stage name {g.label!r} is reserved for fusion/re-rank stages; "
                                    "pass name=...")
            f = fields.get(g.field)
            if f is None:
                raise PipelineError(f"gather({g.field!r}): unknown field; the collection has {sorted(fields)}")
            kind = g.kind or f.kind
            if f.kind not in GATHER_KINDS[kind]:
                raise PipelineError(f"gather({g.field!r}, kind={kind!r}): field {g.field!r} is a {f.kind} field; "
                                    f"a {kind} gather needs a {'/'.join(GATHER_KINDS[kind])} field")
            if f.kind == "multivector" and not f.index:
                raise PipelineError(f"gather({g.field!r}): multivector field {g.field!r} was created without an "
                                    "index (index=False); it can only re-rank")
            resolved.append(Gather(g.field, g.k, kind, g.name))
        rr = self.rerank
        if rr is not None:
            want = "multivector" if rr.method == "maxsim" else "dense"
            if rr.field is None:
                cands = [n for n, f in fields.items() if f.kind == want]
                if len(cands) != 1:
                    raise PipelineError(f"rerank_{rr.method}(): the collection has {len(cands)} {want} fields "
                                        f"{cands}; name one")
                rr = Rerank(rr.method, cands[0], rr.k, rr.alpha, rr.beta)
            f = fields.get(rr.field)  # type: ignore[arg-type]
            if f is None:
                raise PipelineError(f"rerank_{rr.method}({rr.field!r}): unknown field; the collection has "
                                    f"{sorted(fields)}")
            if f.kind != want:
                raise PipelineError(f"rerank_{rr.method}({rr.field!r}): needs a {want} field, {rr.field!r} is "
                                    f"{f.kind}")
        return Pipeline(gathers=resolved, fusion=self.fusion, rerank=rr)

    @classmethod
    def default(cls, coll: "Collection", k: int = 100) -> "Pipeline":
        """The collection's default hybrid: each sparse field and each dense field gathers ``k`` (a binary field
        stands in for dense when there is no dense field), RRF(k=60), then MaxSim re-rank of the best ``k`` when
        a multivector field exists."""
        fields = coll.fields
        sparse = [n for n, f in fields.items() if f.kind == "sparse"]
        dense = [n for n, f in fields.items() if f.kind == "dense"] or \
            [n for n, f in fields.items() if f.kind == "binary"]
        names = sparse + dense
        if not names:
            names = [n for n, f in fields.items() if f.kind == "multivector" and f.index]
        if not names:
            raise PipelineError(f"collection {coll.name!r} has no field a gather can read")
        mv = [n for n, f in fields.items() if f.kind == "multivector"]
        stages: list[Stage] = [gather(n, k) for n in names]
        if len(stages) > 1:
            stages.append(rrf(60))
        if mv:
            stages.append(rerank_maxsim(mv[0], k))
        return cls(*stages)

    # -- JSON form (the SQL function API) ----------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"gather": [{"field": g.field, "k": g.k, **({"kind": g.kind} if g.kind else {}),
                                         **({"name": g.name} if g.name else {})} for g in self.gathers]}
        if self.fusion is not None:
            f = self.fusion
            d["fusion"] = {"method": f.method, **({"k": f.k} if f.method == "rrf" else {}),
                           **({"weights": dict(f.weights)} if f.weights is not None else {}),
                           **({"limit": f.limit} if f.limit is not None else {})}
        if self.rerank is not None:
            r = self.rerank
            d["rerank"] = {"method": r.method, "k": r.k, **({"field": r.field} if r.field else {}),
                           **({"alpha": r.alpha} if r.alpha is not None else {}),
                           **({"beta": r.beta} if r.beta is not None else {})}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Pipeline":
        if not isinstance(d, Mapping):
            raise PipelineError(f"a pipeline is a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"gather", "fusion", "rerank"})
        if unknown:
            raise PipelineError(f"unknown pipeline keys {unknown} (known: gather, fusion, rerank)")
        gs = d.get("gather")
        if not isinstance(gs, list) or not gs:
            raise PipelineError("pipeline 'gather' must be a non-empty list of {field, k}")
        try:
            gathers = [Gather(**g) for g in gs]
            fusion = Fusion(**d["fusion"]) if d.get("fusion") is not None else None
            rerank = Rerank(**d["rerank"]) if d.get("rerank") is not None else None
        except TypeError as e:  # unexpected keys
            raise PipelineError(f"malformed pipeline stage: {e}") from None
        return cls(gathers=gathers, fusion=fusion, rerank=rerank)

    def fused_limit(self, k: int) -> int:
        """How many fused candidates the fusion keeps: the fusion's ``limit``, else the re-rank's k, else k."""
        if self.fusion is not None and self.fusion.limit is not None:
            return self.fusion.limit
        if self.rerank is not None:
            return max(self.rerank.k, k)
        return k
