"""Text encoders (models load from local paths only; no network).

``DenseEncoder`` is imported lazily so that ``import pgsieve.encoders`` does
not pull in torch/transformers for code that only needs the protocol.
"""

from __future__ import annotations

from typing import Any

from .base import Encoder, check_texts

__all__ = ["Encoder", "DenseEncoder", "check_texts", "default_model_path"]


def __getattr__(name: str) -> Any:
    if name in ("DenseEncoder", "default_model_path"):
        from . import dense

        return getattr(dense, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
