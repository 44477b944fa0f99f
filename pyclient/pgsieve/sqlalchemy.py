"""SQLAlchemy 2 support: the ``MULTIVEC`` column type with MaxSim comparators, and index constructors for
pgsieve's access methods (``binary_scan``, ``sparse_block``, ``multivec_fde``).

Types of pgvector's own (``VECTOR``, ``HALFVEC``, ``SPARSEVEC``, ``BIT``) come from ``pgvector.sqlalchemy``, whose
comparators (``.max_inner_product()`` = ``<#>``, ``.cosine_distance()`` = ``<=>``, ...) are the ``ORDER BY``
expressions the ``binary_scan`` and ``sparse_block`` indexes serve.  An ORM model::

    from pgvector.sqlalchemy import SPARSEVEC, VECTOR
    from pgsieve.sqlalchemy import MULTIVEC, binary_scan_index, multivec_fde_index, sparse_block_index

    class Doc(Base):
        __tablename__ = "docs"
        id: Mapped[int] = mapped_column(primary_key=True)
        emb = mapped_column(VECTOR(384))
        sparse = mapped_column(SPARSEVEC(30522))
        tokens = mapped_column(MULTIVEC(128, "int8"))
        __table_args__ = (
            binary_scan_index("docs_emb_idx", "emb", opclass="vector_cosine_ops", quantizer="mean"),
            sparse_block_index("docs_sparse_idx", "sparse", n_postings=3500),
            multivec_fde_index("docs_tokens_idx", "tokens", reps=20),
        )

    select(Doc.id).order_by(Doc.tokens.maxsim_distance(q)).limit(10)      # multivec_fde, exact MaxSim order
    select(Doc.id).order_by(Doc.sparse.max_inner_product(sq)).limit(10)   # sparse_block
    select(Doc.id).order_by(Doc.emb.cosine_distance(e)).limit(10)         # binary_scan

The constructors return plain ``sqlalchemy.Index`` objects, the same as writing the recipe out::

    Index("docs_sparse_idx", Doc.sparse, postgresql_using="sparse_block",
          postgresql_with={"n_postings": 3500}, postgresql_ops={"sparse": "sparsevec_ip_ops"})

but they check the reloption names, types and values (and the operator class) before any SQL runs.

``MULTIVEC`` values go to the server in ``multivec``'s text form (any 2-D array, list of tokens, or
:class:`pgsieve.adapters.MultiVector`; no driver registration needed, as with pgvector's types; a typed column
converts to its format) and come back as ``(ntok, dim)`` numpy arrays.  Importing this module registers
``multivec`` with the PostgreSQL dialect's reflection (``MetaData.reflect``, Alembic autogenerate).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Union

import numpy as np
from sqlalchemy import Float, Index, bindparam, func
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.types import String, TypeEngine, UserDefinedType

from .adapters import MULTIVEC_FORMATS, MULTIVEC_MAX_DIM, MultiVector

__all__ = [
    "MULTIVEC",
    "ACCESS_METHODS",
    "RELOPTIONS",
    "OPCLASSES",
    "check_reloptions",
    "pgsieve_index",
    "binary_scan_index",
    "sparse_block_index",
    "multivec_fde_index",
    "QUERY_SETTINGS",
    "set_local",
]


# ---------------------------------------------------------------------------------------------------------------
# the multivec type

def _to_db(value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return MultiVector(value).to_text()


def _from_db(value: Any) -> Optional[np.ndarray]:
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, MultiVector):
        return value.to_numpy()
    return MultiVector.from_text(value).to_numpy()


class MULTIVEC(UserDefinedType[Any]):
    """``multivec``, ``multivec(dim)`` or ``multivec(dim, fmt)`` (``fmt``: float32, float16 or int8).

    Comparators: ``col.maxsim(q)`` (``maxsim(col, q)``, higher is better) and ``col.maxsim_distance(q)``
    (``col @# q`` = −MaxSim: ``ORDER BY col @# q LIMIT k`` is what a ``multivec_fde`` index serves).
    """

    cache_ok = True
    _string = String()

    def __init__(self, dim: Optional[int] = None, fmt: Optional[str] = None) -> None:
        super().__init__()
        if dim is not None:
            if isinstance(dim, str) and dim.strip().isdigit():  # from reflection: format_type's text
                dim = int(dim)
            if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or not 1 <= dim <= MULTIVEC_MAX_DIM:
                raise ValueError(f"MULTIVEC dim must be an integer in [1, {MULTIVEC_MAX_DIM}], got {dim!r}")
            dim = int(dim)
        if fmt is not None:
            fmt = str(fmt).strip().strip('"').lower()
            if fmt not in MULTIVEC_FORMATS:
                raise ValueError(f"MULTIVEC fmt must be one of {MULTIVEC_FORMATS}, got {fmt!r}")
            if dim is None:
                raise ValueError("MULTIVEC fmt needs dim: multivec(dim, fmt)")
        self.dim = dim
        self.fmt = fmt

    def get_col_spec(self, **kw: Any) -> str:
        if self.dim is None:
            return "MULTIVEC"
        if self.fmt is None:
            return f"MULTIVEC({self.dim})"
        return f"MULTIVEC({self.dim}, {self.fmt})"

    def __repr__(self) -> str:
        args = [] if self.dim is None else [f"dim={self.dim}"]
        if self.fmt is not None:
            args.append(f"fmt={self.fmt!r}")
        return f"MULTIVEC({', '.join(args)})"

    def bind_processor(self, dialect: Any) -> Any:
        return _to_db

    def literal_processor(self, dialect: Any) -> Any:
        quote = self._string._cached_literal_processor(dialect)

        def process(value: Any) -> Any:
            return quote(_to_db(value))

        return process

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return _from_db

    class Comparator(TypeEngine.Comparator[Any]):
        def _bind(self, other: Any) -> Any:
            if isinstance(other, ClauseElement):
                return other
            return bindparam(None, other, type_=self.type)

        def maxsim(self, other: Any) -> ColumnElement[float]:
            """``maxsim(col, other)``: Σ over query tokens of the best inner product (higher is better)."""
            return func.maxsim(self.expr, self._bind(other), type_=Float)

        def maxsim_distance(self, other: Any) -> ColumnElement[float]:
            """``col @# other`` = −MaxSim, for ``ORDER BY ... LIMIT k`` (served by a ``multivec_fde`` index)."""
            return self.op("@#", return_type=Float)(self._bind(other))

        def ntok(self) -> ColumnElement[int]:
            """``multivec_ntok(col)``: number of tokens."""
            from sqlalchemy import Integer

            return func.multivec_ntok(self.expr, type_=Integer)

    comparator_factory = Comparator


# reflection (MetaData.reflect, Alembic autogenerate): "multivec" columns come back as MULTIVEC
ischema_names["multivec"] = MULTIVEC


# ---------------------------------------------------------------------------------------------------------------
# indexes

#: pgsieve's index access methods
ACCESS_METHODS: tuple[str, ...] = ("binary_scan", "sparse_block", "multivec_fde")
_QUANTIZERS = ("mean", "sign")
#: build parameters (reloptions) per access method: name -> type (str options list their allowed values)
RELOPTIONS: dict[str, dict[str, Any]] = {
    "binary_scan": {"quantizer": _QUANTIZERS},
    "sparse_block": {"n_postings": int, "max_fraction": float, "centroid_fraction": float,
                     "summary_energy": float, "min_cluster_size": int, "doc_cut": int},
    "multivec_fde": {"reps": int, "ksim": int, "dproj": int, "seed": int, "final_dim": int,
                     "quantizer": _QUANTIZERS, "store_tokens": bool},
}
#: operator classes per access method (the first is the default)
OPCLASSES: dict[str, tuple[str, ...]] = {
    "binary_scan": ("vector_l2_ops", "vector_ip_ops", "vector_cosine_ops", "halfvec_l2_ops", "halfvec_ip_ops",
                    "halfvec_cosine_ops", "bit_hamming_ops"),
    "sparse_block": ("sparsevec_ip_ops",),
    "multivec_fde": ("multivec_maxsim_ops",),
}

ColumnRef = Union[str, Any]


def check_reloptions(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``method``'s reloptions (names, types, allowed values); returns a copy.

    Values become plain ``key = value`` text in ``WITH (...)``: numbers, booleans, or one of the listed words.
    """
    if method not in RELOPTIONS:
        raise ValueError(f"unknown pgsieve access method {method!r} (known: {ACCESS_METHODS})")
    known = RELOPTIONS[method]
    out: dict[str, Any] = {}
    for key, value in options.items():
        want = known.get(key)
        if want is None:
            raise ValueError(f"unknown {method} option {key!r} (known: {sorted(known)})")
        if isinstance(want, tuple):
            if value not in want:
                raise ValueError(f"{method} option {key} must be one of {want}, got {value!r}")
        elif want is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{method} option {key} must be True or False, got {value!r}")
            value = bool(value)
        elif want is int:
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise ValueError(f"{method} option {key} must be an integer, got {value!r}")
            value = int(value)
        else:
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{method} option {key} must be a finite number, got {value!r}")
            value = float(value)
        out[key] = value
    return out


def _column_key(column: ColumnRef) -> str:
    if isinstance(column, str):
        return column
    for attr in ("key", "name"):
        key = getattr(column, attr, None)
        if isinstance(key, str):
            return key
    raise TypeError(f"cannot tell the column name of {column!r}; pass a column, an ORM attribute, a name, "
                    "or a labeled expression (expr.label('name'))")


def pgsieve_index(name: str, column: ColumnRef, method: str, opclass: Optional[str] = None,
                  concurrently: bool = False, **reloptions: Any) -> Index:
    """``CREATE INDEX name ON ... USING method (column opclass) WITH (reloptions)`` as an ``sqlalchemy.Index``.

    ``column``: a ``Column``, an ORM attribute, a column name (inside ``__table_args__``), or a labeled
    expression (``func.cast(Doc.emb, HALFVEC(384)).label("emb_half")``; the operator class is keyed by the
    label).  ``opclass`` defaults to the method's default; it is always written out, so the DDL never depends on
    which opclass is the default.  ``concurrently``: ``CREATE INDEX CONCURRENTLY`` (outside a transaction).
    """
    options = check_reloptions(method, reloptions)
    classes = OPCLASSES[method]
    opclass = classes[0] if opclass is None else opclass
    if opclass not in classes:
        raise ValueError(f"{method} operator class must be one of {classes}, got {opclass!r}")
    kwargs: dict[str, Any] = {"postgresql_using": method, "postgresql_ops": {_column_key(column): opclass}}
    if options:
        kwargs["postgresql_with"] = options
    if concurrently:
        kwargs["postgresql_concurrently"] = True
    return Index(name, column, **kwargs)


def binary_scan_index(name: str, column: ColumnRef, opclass: str = "vector_cosine_ops",
                      quantizer: Optional[str] = None, concurrently: bool = False) -> Index:
    """``binary_scan`` index on a ``vector`` / ``halfvec`` / ``bit`` column; ``opclass`` must match the
    distance of the ``ORDER BY`` (``vector_cosine_ops`` for ``.cosine_distance()``, ``vector_ip_ops`` for
    ``.max_inner_product()``, ...); ``quantizer``: ``mean`` (server default) or ``sign``."""
    options = {} if quantizer is None else {"quantizer": quantizer}
    return pgsieve_index(name, column, "binary_scan", opclass, concurrently, **options)


def sparse_block_index(name: str, column: ColumnRef, concurrently: bool = False, **reloptions: Any) -> Index:
    """``sparse_block`` index on a ``sparsevec`` column for ``ORDER BY col <#> q`` (``.max_inner_product()``);
    reloptions: ``n_postings``, ``max_fraction``, ``centroid_fraction``, ``summary_energy``,
    ``min_cluster_size``, ``doc_cut``."""
    return pgsieve_index(name, column, "sparse_block", None, concurrently, **reloptions)


def multivec_fde_index(name: str, column: ColumnRef, concurrently: bool = False, **reloptions: Any) -> Index:
    """``multivec_fde`` index on a ``multivec`` column for ``ORDER BY col @# q`` (``.maxsim_distance()``);
    reloptions: ``reps``, ``ksim``, ``dproj``, ``seed``, ``final_dim``, ``quantizer``, ``store_tokens`` (needs an
    extension build that has it)."""
    return pgsieve_index(name, column, "multivec_fde", None, concurrently, **reloptions)


# ---------------------------------------------------------------------------------------------------------------
# query settings

#: pgsieve's query-time settings (GUCs), by short name, with their type
QUERY_SETTINGS: dict[str, type] = {
    "binary_rerank": int, "binary_oversample": int,
    "sparse_top_k": int, "sparse_query_cut": int, "sparse_heap_factor": float,
    "fde_rerank": int, "fde_oversample": int,
}


def set_local(conn: Any, **settings: Any) -> dict[str, str]:
    """``SET LOCAL pgsieve.<name> = value`` for each setting, on an SQLAlchemy ``Connection`` or ``Session``
    (for the current transaction only, so they never leak to the next user of a pooled connection)::

        with Session(engine) as s, s.begin():
            set_local(s, sparse_top_k=10)                 # the LIMIT you are about to use
            s.scalars(select(Doc.id).order_by(Doc.sparse.max_inner_product(q)).limit(10))

    Names are :data:`QUERY_SETTINGS` (``fde_rerank=400`` or ``**{"pgsieve.fde_rerank": 400}``); unknown names
    and values of the wrong type raise ``ValueError`` before any SQL runs.  Returns the values as the server
    took them.
    """
    from sqlalchemy import text

    checked: dict[str, Any] = {}
    for name, value in settings.items():
        short = name[len("pgsieve."):] if name.startswith("pgsieve.") else name
        want = QUERY_SETTINGS.get(short)
        if want is None:
            raise ValueError(f"unknown pgsieve setting {name!r} (known: {sorted(QUERY_SETTINGS)})")
        ok = isinstance(value, numbers.Integral) if want is int else isinstance(value, numbers.Real)
        if not ok or isinstance(value, bool) or (want is float and not math.isfinite(value)):
            raise ValueError(f"pgsieve.{short} must be {'an integer' if want is int else 'a finite number'}, "
                             f"got {value!r}")
        checked[f"pgsieve.{short}"] = value
    stmt = text("SELECT set_config(:name, :value, true)")
    return {name: conn.execute(stmt, {"name": name, "value": str(value)}).scalar_one()
            for name, value in checked.items()}
