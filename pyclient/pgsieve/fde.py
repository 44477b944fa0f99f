"""MUVERA fixed dimensional encodings (FDE), byte-identical to the server's ``muvera_fde``.

An FDE turns a set of token vectors (ColBERT-style multivectors) into one vector whose inner products
approximate Chamfer / MaxSim similarity: ``<fde_query(Q), fde_document(D)> ~ sum_q max_d <q, d>``.  So a
single-vector index (or a plain ``ORDER BY <#>``) can gather candidates that an exact MaxSim re-rank then
orders.

Every function here calls the C kernel ``ext/kernels/pgs_fde.c`` through cffi — the very file the
PostgreSQL extension compiles — so an FDE computed here equals the server's byte for byte.  The
construction (pgsieve FDE spec v1: a counter-based SplitMix64 PRNG, Rademacher SimHash, AMS count-sketch,
float64 sums) is written out at the top of that file and in the README.

Persist the :class:`FdeParams` a set of document FDEs was built with (``to_dict``) and encode queries
with the same ones: FDEs built with different parameters are not comparable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pgsieve._kernels import ffi, lib
from pgsieve.kernels import _check_finite

__all__ = ["SPEC", "FdeParams", "fde_query", "fde_document", "fde_queries", "fde_documents"]

#: Identifier of the construction, stored with the parameters so a future spec change is detected.
SPEC = "pgsieve-fde-1"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MASK = 2**64 - 1


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return int(value)


@dataclass(frozen=True)
class FdeParams:
    """Parameters of an FDE; validated on construction (``ValueError``/``TypeError``).

    * ``dim``: token dimensions (e.g. 128 for ColBERTv2).
    * ``reps``: repetitions R, 1..4096 (paper: 20).
    * ``ksim``: SimHash bits per repetition, 0..15; B = 2**ksim partitions (paper: 5).
    * ``dproj``: AMS count-sketch dimension of each partition block, 0 = no projection (paper: 16).
    * ``seed``: the PRNG seed, a SQL ``bigint`` (read as its two's complement uint64).
    * ``final_dim``: 0, or the dimension of a final count-sketch of the whole encoding.
    * ``fill_empty``: documents only: an empty partition takes the projected token whose SimHash
      pattern is nearest (the paper always fills documents).  Queries are never filled.

    The defaults equal ``muvera_fde``'s: R=20, ksim=5, dproj=16, seed 42 -> 10,240 dimensions.
    """

    dim: int
    reps: int = 20
    ksim: int = 5
    dproj: int = 16
    seed: int = 42
    final_dim: int = 0
    fill_empty: bool = True

    def __post_init__(self) -> None:
        for name in ("dim", "reps", "ksim", "dproj", "seed", "final_dim"):
            object.__setattr__(self, name, _check_int(name, getattr(self, name)))
        if not isinstance(self.fill_empty, (bool, np.bool_)):
            raise TypeError(f"fill_empty must be a bool, not {type(self.fill_empty).__name__}")
        object.__setattr__(self, "fill_empty", bool(self.fill_empty))
        if not _INT64_MIN <= self.seed <= _INT64_MAX:
            raise ValueError(f"seed must fit a SQL bigint ({_INT64_MIN}..{_INT64_MAX}), got {self.seed}")
        for name in ("dim", "reps", "ksim", "dproj", "final_dim"):
            if not -(2**31) <= getattr(self, name) < 2**31:
                raise ValueError(f"{name} out of range: {getattr(self, name)}")
        # the kernel's own check is the single source of truth for the ranges
        rc = lib.pgs_fde_check(self._c_params(is_query=False), 0)
        if rc != lib.PGS_FDE_OK:
            raise ValueError(_error_message(rc))

    @property
    def output_dim(self) -> int:
        """Length of the encoding: ``final_dim``, or ``reps * 2**ksim * (dproj or dim)``."""
        return int(lib.pgs_fde_output_dim(self._c_params(is_query=False)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, tagged with :data:`SPEC`, for storing next to an index."""
        return {"spec": SPEC, **asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FdeParams:
        """Inverse of :meth:`to_dict`; refuses another spec version and unknown keys."""
        data = dict(d)
        spec = data.pop("spec", None)
        if spec != SPEC:
            raise ValueError(f"FDE parameters were written for spec {spec!r}; this client implements {SPEC!r}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown FDE parameter(s): {sorted(unknown)}")
        return cls(**data)

    def _c_params(self, *, is_query: bool) -> Any:
        p = ffi.new("PgsFdeParams *")
        p.dim = self.dim
        p.reps = self.reps
        p.ksim = self.ksim
        p.dproj = self.dproj
        p.final_dim = self.final_dim
        p.fill_empty = int(self.fill_empty and not is_query)
        p.seed = self.seed & _UINT64_MASK
        return p


def _error_message(rc: int) -> str:
    return ffi.string(lib.pgs_fde_strerror(rc)).decode("ascii")


def _tokens(tokens: Any, params: FdeParams, name: str = "tokens") -> np.ndarray:
    """A finite, C-contiguous float32 (ntok, dim) matrix; float32 only, never a silent cast."""
    a = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens)
    if a.dtype != np.float32:
        raise ValueError(f"{name} must have dtype float32, got {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (ntok, dim), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name}: at least one token is required")
    if a.shape[1] != params.dim:
        raise ValueError(f"{name} have {a.shape[1]} dimensions but params.dim is {params.dim}")
    a = np.ascontiguousarray(a)
    _check_finite(a, name)
    return a


class _Encoder:
    """One parameter set and one scratch buffer, reused across a batch."""

    def __init__(self, params: FdeParams, is_query: bool) -> None:
        if not isinstance(params, FdeParams):
            raise TypeError(f"params must be FdeParams, not {type(params).__name__}")
        self.params = params
        self.is_query = is_query
        self.cparams = params._c_params(is_query=is_query)
        self.scratch = np.empty(0, dtype=np.uint8)

    def encode_into(self, x: np.ndarray, out: np.ndarray) -> None:
        ntok = x.shape[0]
        need = int(lib.pgs_fde_scratch_bytes(self.cparams, ntok))
        if need == 0:
            raise ValueError(f"{ntok} tokens: at most {lib.PGS_FDE_MAX_TOKENS} are allowed")
        if self.scratch.size < need:
            self.scratch = np.empty(need, dtype=np.uint8)
        rc = lib.pgs_fde_encode(
            self.cparams, int(self.is_query), ffi.cast("float *", ffi.from_buffer(x)), ntok,
            ffi.cast("float *", ffi.from_buffer(out)), ffi.from_buffer(self.scratch), self.scratch.size)
        if rc != lib.PGS_FDE_OK:
            raise ValueError(_error_message(rc))

    def encode_one(self, tokens: Any) -> np.ndarray:
        out = np.empty(self.params.output_dim, dtype=np.float32)
        self.encode_into(_tokens(tokens, self.params), out)
        return out

    def encode_many(self, batch: Iterable[Any]) -> np.ndarray:
        mats = [_tokens(t, self.params, f"tokens[{i}]") for i, t in enumerate(batch)]
        out = np.empty((len(mats), self.params.output_dim), dtype=np.float32)
        for i, x in enumerate(mats):
            self.encode_into(x, out[i])
        return out


def fde_query(tokens: Any, params: FdeParams) -> np.ndarray:
    """Query FDE (SUM per partition, never filled) of a float32 (ntok, dim) token matrix."""
    return _Encoder(params, is_query=True).encode_one(tokens)


def fde_document(tokens: Any, params: FdeParams) -> np.ndarray:
    """Document FDE (AVERAGE per partition, filled if ``params.fill_empty``)."""
    return _Encoder(params, is_query=False).encode_one(tokens)


def fde_queries(batch: Sequence[Any] | Iterable[Any], params: FdeParams) -> np.ndarray:
    """Query FDEs of several token matrices (token counts may differ): float32 (n, output_dim)."""
    return _Encoder(params, is_query=True).encode_many(batch)


def fde_documents(batch: Sequence[Any] | Iterable[Any], params: FdeParams) -> np.ndarray:
    """Document FDEs of several token matrices: float32 (n, output_dim)."""
    return _Encoder(params, is_query=False).encode_many(batch)
