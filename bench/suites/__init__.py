"""Benchmark suites: name -> function(ctx) returning JSON rows (binary, sparse, multivector, pipeline)."""
from __future__ import annotations

from typing import Callable


def _binary(ctx):
    from . import binary
    return binary.run(ctx)


SUITES: dict[str, Callable] = {
    "binary": _binary,
}

# systems each suite knows (for --systems validation and --help)
SYSTEMS: dict[str, list[str]] = {
    "binary": ["seqscan", "pgsieve", "pgsieve_sign", "faiss_binary_flat", "pgvector_hnsw", "pgvector_hnsw_bit"],
}

from .sparse import register as _register_sparse; _register_sparse(SUITES, SYSTEMS)  # suite "sparse" (sparse.py)
from .multivector import register as _register_mv; _register_mv(SUITES, SYSTEMS)  # suite "multivector"
from .pipeline import register as _register_pipeline; _register_pipeline(SUITES, SYSTEMS)  # suite "pipeline"
