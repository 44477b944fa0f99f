"""Sparse vectors as pgvector-python's ``SparseVector``, validated against ``sparsevec``'s limits.

Why ``pgvector.SparseVector`` as the output type: it is what pgvector-python
already dumps to and loads from a ``sparsevec`` column (text and binary), so
every sparse encoder here feeds ``INSERT``/``COPY`` and ``ORDER BY emb <#> q``
with no adapter of our own.

Why validate here rather than let the server complain: ``sparsevec`` rejects
more than 16,000 non-zeros, dimensions above 1,000,000,000, NaN and infinity,
and stores float32.  An error from the server arrives in the middle of a
batched ``COPY`` with no hint which document caused it; an error here names
the vector and the limit.  Nothing is ever truncated silently: pruning to the
largest weights is an explicit encoder option (``top_k``) or :func:`top_k`.

Values are rounded to float32 on construction (what the column stores), so a
vector read back from the database compares equal to the one written, and a
weight that underflows to 0 in float32 is dropped rather than sent as an
explicit zero (which ``sparsevec``'s binary input refuses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Union, runtime_checkable

import numpy as np
from pgvector import SparseVector

__all__ = [
    "SparseVector",
    "SparseEncoder",
    "SparseQueryEncoder",
    "MAX_DIM",
    "MAX_NNZ",
    "from_arrays",
    "from_dict",
    "to_arrays",
    "to_dict",
    "check_sparse",
    "sparse_dot",
    "top_k",
]

#: ``sparsevec``'s largest dimension (pgvector ``SPARSEVEC_MAX_DIM``).
MAX_DIM = 1_000_000_000
#: ``sparsevec``'s largest number of non-zero elements (pgvector ``SPARSEVEC_MAX_NNZ``).
MAX_NNZ = 16_000

_F32_MAX = float(np.finfo(np.float32).max)

ArrayLike = Union[Sequence[float], np.ndarray]


@runtime_checkable
class SparseQueryEncoder(Protocol):
    """Texts in, one ``SparseVector`` per query out (e.g. inference-free SPLADE queries)."""

    @property
    def dim(self) -> int:
        """Vector dimension (the ``sparsevec(dim)`` column size, usually the vocabulary size)."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode search queries, in input order."""
        ...


@runtime_checkable
class SparseEncoder(SparseQueryEncoder, Protocol):
    """A sparse encoder for both sides (BM25, SPLADE)."""

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """Encode documents, in input order."""
        ...


def _check_dim(dim: int, what: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{what}: dim must be an int, got {type(dim).__name__}")
    if not 1 <= int(dim) <= MAX_DIM:
        raise ValueError(f"{what}: dim {int(dim)} outside sparsevec's range 1..{MAX_DIM}")
    return int(dim)


def _check_values(values: np.ndarray, nonnegative: bool, what: str) -> None:
    """Finite, float32-representable, and (for BM25/SPLADE) non-negative."""
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{what}: non-finite weight {values[bad][0]!r} "
                         f"({int(bad.sum())} of {values.size}); sparsevec stores finite floats only")
    big = np.abs(values) > _F32_MAX
    if big.any():
        raise ValueError(f"{what}: weight {values[big][0]!r} overflows float32 (sparsevec stores float32)")
    if nonnegative and (values < 0).any():
        raise ValueError(f"{what}: negative weight {values[values < 0][0]!r}; "
                         "BM25/SPLADE weights must be >= 0")


def _check_nnz(nnz: int, what: str) -> None:
    if nnz > MAX_NNZ:
        raise ValueError(f"{what}: {nnz} non-zero weights exceed sparsevec's limit of {MAX_NNZ}; "
                         "split the document into passages or prune explicitly (top_k=...)")


def from_arrays(indices: ArrayLike, values: ArrayLike, dim: int, *, nonnegative: bool = False,
                what: str = "sparse vector") -> SparseVector:
    """Build a validated ``SparseVector`` from parallel index/value arrays (any order).

    Zeros (including float32 underflow) are dropped; duplicate indices,
    out-of-range indices, non-finite values and too many non-zeros raise
    ``ValueError``.  ``what`` names the vector in error messages.
    """
    dim = _check_dim(dim, what)
    idx = np.asarray(indices)
    val = np.asarray(values, dtype=np.float64)
    if idx.ndim != 1 or val.ndim != 1 or idx.shape != val.shape:
        raise ValueError(f"{what}: indices and values must be 1-D of equal length, "
                         f"got shapes {idx.shape} and {val.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"{what}: indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64, copy=False)
    _check_values(val, nonnegative, what)
    if idx.size and (idx.min() < 0 or idx.max() >= dim):
        bad = idx[(idx < 0) | (idx >= dim)][0]
        raise ValueError(f"{what}: index {int(bad)} outside 0..{dim - 1}")
    val32 = val.astype(np.float32)
    keep = val32 != 0
    idx, val32 = idx[keep], val32[keep]
    order = np.argsort(idx, kind="stable")
    idx, val32 = idx[order], val32[order]
    if idx.size > 1 and (np.diff(idx) == 0).any():
        dup = idx[1:][np.diff(idx) == 0][0]
        raise ValueError(f"{what}: duplicate index {int(dup)}")
    _check_nnz(int(idx.size), what)
    return SparseVector(dict(zip(idx.tolist(), val32.tolist())), dim)


def from_dict(weights: Mapping[int | str, float], dim: int, *, nonnegative: bool = False,
              what: str = "sparse vector") -> SparseVector:
    """``{index: weight}`` to ``SparseVector``; string keys (BGE-M3 ``lexical_weights``) are parsed as ints."""
    keys = [int(k) for k in weights.keys()]
    idx = np.asarray(keys, dtype=np.int64)
    val = np.asarray([float(v) for v in weights.values()], dtype=np.float64)
    return from_arrays(idx, val, dim, nonnegative=nonnegative, what=what)


def to_arrays(vec: SparseVector) -> tuple[np.ndarray, np.ndarray]:
    """``(indices int64, values float32)``, indices ascending: the form numpy code wants."""
    return (np.asarray(vec.indices(), dtype=np.int64), np.asarray(vec.values(), dtype=np.float32))


def to_dict(vec: SparseVector) -> dict[int, float]:
    """``{index: weight}`` (fastembed ``as_dict`` style)."""
    return dict(zip((int(i) for i in vec.indices()), (float(v) for v in vec.values())))


def check_sparse(vec: SparseVector, *, nonnegative: bool = False, what: str = "sparse vector") -> SparseVector:
    """Validate a ``SparseVector`` built elsewhere against ``sparsevec``'s rules; returns it unchanged."""
    dim = _check_dim(vec.dimensions(), what)
    idx, val = np.asarray(vec.indices(), dtype=np.int64), np.asarray(vec.values(), dtype=np.float64)
    _check_values(val, nonnegative, what)
    if idx.size and (idx.min() < 0 or idx.max() >= dim):
        raise ValueError(f"{what}: index outside 0..{dim - 1}")
    if idx.size > 1 and (np.diff(idx) <= 0).any():
        raise ValueError(f"{what}: indices must be strictly increasing")
    if (val == 0).any():
        raise ValueError(f"{what}: explicit zero weight (sparsevec's binary input refuses it)")
    _check_nnz(int(idx.size), what)
    return vec


def sparse_dot(a: SparseVector, b: SparseVector) -> float:
    """Inner product in float64 (what ``-(a <#> b)`` computes in the database, up to float32 sums)."""
    if a.dimensions() != b.dimensions():
        raise ValueError(f"dimension mismatch: {a.dimensions()} vs {b.dimensions()}")
    ai, av = to_arrays(a)
    bi, bv = to_arrays(b)
    common, ia, ib = np.intersect1d(ai, bi, assume_unique=True, return_indices=True)
    if common.size == 0:
        return 0.0
    return float(np.dot(av[ia].astype(np.float64), bv[ib].astype(np.float64)))


def top_k(indices: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``k`` largest weights (ties: the lower index wins, so the result is deterministic)."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    if values.size <= k:
        return indices, values
    order = np.lexsort((indices, -values))[:k]
    return indices[order], values[order]
