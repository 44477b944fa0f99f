"""Collection fields: what each retrievable representation of a document is, and how it is stored per mode.

A field is a value (``kind``, ``name``, dimensions, format) plus the encoder that produces it.  The encoder is
kept out of equality and out of the persisted spec, which holds its *config* (``{"factory": "module:Class",
"kwargs": {...}}``, the form :class:`pgsieve.workers.EncoderSpec` takes) so :meth:`Collection.open` can rebuild it.

Storage per mode (``pgsieve``: the extension's types and indexes; ``managed``: pgvector alone):

============  =======================================  ==========================================================
kind          pgsieve                                  managed (pgvector only)
============  =======================================  ==========================================================
dense         ``vector(d)`` + HNSW (cosine)            the same
binary        ``binary_scan`` on ``(src::halfvec(d))`` HNSW ``bit_hamming_ops`` on ``binary_quantize(src)::bit(d)``
              (Hamming + asymmetric + exact, 1 scan)   + exact re-rank of ``oversample × k`` in SQL
sparse        ``sparsevec(V)`` + ``sparse_block``      ``sparsevec(V)`` + HNSW on rows with ≤ 1000 non-zeros
                                                       (``<f>_nnz`` column); the rest scanned exactly
multivector   ``multivec(d, fmt)`` + ``multivec_fde``  ``halfvec(d)[]`` (``vector(d)[]`` for float32) + MUVERA
                                                       FDE ``vector(D)`` column ``<f>_fde`` with HNSW; MaxSim in SQL
============  =======================================  ==========================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["Field", "FieldError", "FIELD_KINDS", "RESERVED_COLUMNS", "MV_FORMATS", "encoder_config",
           "build_encoder", "MANAGED_FDE"]

FIELD_KINDS = ("dense", "sparse", "binary", "multivector")
RESERVED_COLUMNS = ("id", "text", "metadata")
MV_FORMATS = ("int8", "float16", "float32")
#: MUVERA parameters of managed mode's FDE column: pgvector's HNSW indexes at most 2,000 dimensions, so the
#: 20 × 32 × 16 FDE is projected to 1,536 (pgsieve's own index stores the full 10,240 bits)
MANAGED_FDE: dict[str, int] = {"reps": 20, "ksim": 5, "dproj": 16, "seed": 42, "final_dim": 1536}
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


class FieldError(ValueError):
    """A field declaration that cannot be stored (bad name, kind, dimensions, format)."""


@dataclass
class Field:
    """One retrievable representation of the documents (see the module docstring for storage)."""

    name: str
    kind: str
    dim: Optional[int] = None
    encoder: Any = field(default=None, compare=False, repr=False)
    query_encoder: Any = field(default=None, compare=False, repr=False)
    source: Optional[str] = None  # binary: the dense field it quantizes
    fmt: str = "float32"          # multivector storage format
    index: bool = True            # multivector: build the FDE index (else re-rank only)
    oversample: int = 4           # binary (managed) / multivector (managed): exact re-rank of oversample × k
    config: Optional[dict[str, Any]] = None        # the encoder's persisted config
    query_config: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise FieldError(f"field name {self.name!r} must match [a-z_][a-z0-9_]* (at most 40 characters)")
        if self.name in RESERVED_COLUMNS:
            raise FieldError(f"field name {self.name!r} is reserved (the table has {RESERVED_COLUMNS} columns)")
        if self.kind not in FIELD_KINDS:
            raise FieldError(f"field kind must be one of {FIELD_KINDS}, got {self.kind!r}")
        if self.fmt not in MV_FORMATS:
            raise FieldError(f"multivector fmt must be one of {MV_FORMATS}, got {self.fmt!r}")
        if isinstance(self.oversample, bool) or not isinstance(self.oversample, int) or self.oversample < 1:
            raise FieldError(f"oversample must be a positive int, got {self.oversample!r}")
        if self.dim is None and self.encoder is not None:
            self.dim = int(self.encoder.dim)
        if self.kind == "binary" and self.source is not None:
            if self.encoder is not None:
                raise FieldError(f"binary field {self.name!r}: pass encoder= or source=, not both")
        elif self.dim is None:
            raise FieldError(f"{self.kind} field {self.name!r} needs an encoder (or dim=)")
        if self.dim is not None:
            limit = 1_000_000_000 if self.kind == "sparse" else 16000
            if isinstance(self.dim, bool) or not isinstance(self.dim, int) or not 1 <= self.dim <= limit:
                raise FieldError(f"field {self.name!r}: dim must be an int in 1..{limit}, got {self.dim!r}")
        if self.config is None and self.encoder is not None:
            self.config = encoder_config(self.encoder)
        if self.query_config is None and self.query_encoder is not None:
            self.query_config = encoder_config(self.query_encoder)

    # -- constructors (the public spelling) --------------------------------------
    @classmethod
    def dense(cls, name: str, encoder: Any = None, *, dim: Optional[int] = None) -> "Field":
        """A ``vector(dim)`` field, cosine similarity (encoders should normalize)."""
        return cls(name, "dense", dim, encoder)

    @classmethod
    def sparse(cls, name: str, encoder: Any = None, *, query_encoder: Any = None,
               dim: Optional[int] = None) -> "Field":
        """A ``sparsevec(V)`` field: BM25 (:class:`~pgsieve.encoders.BM25Encoder`, statistics kept in the
        database and updated by ``add``) or SPLADE; ``query_encoder`` e.g. an inference-free query encoder."""
        return cls(name, "sparse", dim, encoder, query_encoder)

    @classmethod
    def binary(cls, name: str, encoder: Any = None, *, source: Optional[str] = None,
               dim: Optional[int] = None, oversample: int = 4) -> "Field":
        """Binary-quantized retrieval over a dense field (``source=``) or over its own encoder's vectors."""
        return cls(name, "binary", dim, encoder, source=source, oversample=oversample)

    @classmethod
    def multivector(cls, name: str, encoder: Any = None, *, fmt: str = "int8", index: bool = True,
                    dim: Optional[int] = None, oversample: int = 4) -> "Field":
        """Token vectors (ColBERT-style :class:`~pgsieve.encoders.LateInteractionEncoder`) for MaxSim."""
        return cls(name, "multivector", dim, encoder, fmt=fmt, index=index, oversample=oversample)

    # -- persisted form ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "dim": self.dim, "source": self.source, "fmt": self.fmt,
                "index": self.index, "oversample": self.oversample, "config": self.config,
                "query_config": self.query_config}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], encoder: Any = None, query_encoder: Any = None) -> "Field":
        return cls(d["name"], d["kind"], d.get("dim"), encoder, query_encoder, d.get("source"),
                   d.get("fmt", "float32"), bool(d.get("index", True)), int(d.get("oversample", 4)),
                   d.get("config"), d.get("query_config"))

    @property
    def needs_encoder(self) -> bool:
        return not (self.kind == "binary" and self.source is not None)


def _cls_path(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}:{t.__qualname__}"


def encoder_config(enc: Any) -> Optional[dict[str, Any]]:
    """``{"factory", "kwargs"}`` that rebuilds ``enc`` (None when it cannot be described: pass it to ``open``).

    Knows pgsieve's encoders; any other object may define ``pgsieve_config() -> dict`` itself; a pool
    (``EncoderPool``) is described by its spec.
    """
    own = getattr(enc, "pgsieve_config", None)
    if callable(own):
        return dict(own())
    spec = getattr(enc, "spec", None)
    factory = getattr(spec, "factory", None)
    if isinstance(factory, str):  # an EncoderPool built from ("module:Class", kwargs)
        return {"factory": factory, "kwargs": dict(getattr(spec, "kwargs", {}) or {})}
    name = type(enc).__name__
    mod = type(enc).__module__
    if not mod.startswith("pgsieve.encoders"):
        return None
    if name == "DenseEncoder":
        kw: dict[str, Any] = {"model_path": str(enc.model_path), "normalize": enc.normalize,
                              "max_length": enc.max_length}
    elif name == "BM25Encoder":
        kw = {"tokenizer_path": str(getattr(enc.tokenizer, "name_or_path", "")) or None, "k1": enc.k1, "b": enc.b,
              "lowercase": enc.lowercase, "drop_punctuation": enc.drop_punctuation}
    elif name == "SpladeEncoder":
        kw = {"model_path": str(enc.model_path), "max_length": enc.max_length,
              "query_max_length": enc.query_max_length, "top_k": enc.top_k}
    elif name == "LateInteractionEncoder":
        kw = {"model_path": str(enc.model_path), "query_maxlen": enc.query_maxlen, "doc_maxlen": enc.doc_maxlen,
              "normalize": enc.normalize, "doc_token_limit": enc.doc_token_limit, "doc_pruning": enc.doc_pruning}
    else:
        return None
    return {"factory": _cls_path(enc), "kwargs": kw}


def build_encoder(config: Mapping[str, Any]) -> Any:
    """The encoder a config describes (models load from local paths only)."""
    from .workers import EncoderSpec

    return EncoderSpec.coerce((config["factory"], dict(config.get("kwargs") or {}))).build()
