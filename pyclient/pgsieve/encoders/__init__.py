"""Text encoders (models load from local paths only; no network).

Encoders are imported lazily so that ``import pgsieve.encoders`` does not pull
in torch/transformers for code that only needs the protocols.
"""

from __future__ import annotations

from typing import Any

from .base import Encoder, check_texts

#: public name -> the submodule that defines it
_LAZY = {
    "DenseEncoder": "dense",
    "default_model_path": "dense",
    "BM25Encoder": "bm25",
    "CorpusStats": "bm25",
    "SpladeEncoder": "splade",
    "InferenceFreeQueryEncoder": "splade",
    "LateInteractionEncoder": "colbert",
}

__all__ = ["Encoder", "check_texts", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
