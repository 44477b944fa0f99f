"""The encoder interface every pgsieve ingest/search path accepts.

It mirrors sentence-transformers' ``encode_query`` / ``encode_document``
split (queries and documents may get different prompts or models) in the
plural form used by FlagEmbedding (``encode_queries``), so that any object
with these members — ours, or a thin wrapper around someone else's model —
can be passed to ``pgsieve.ingest`` and ``pgsieve.search``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Encoder", "ModelAttributes", "check_texts"]


@runtime_checkable
class Encoder(Protocol):
    """A dense text encoder: texts in, float32 ``(n, dim)`` arrays out."""

    @property
    def dim(self) -> int:
        """Embedding width (the ``vector(dim)`` column size)."""
        ...

    @property
    def batch_size(self) -> int:
        """Texts per forward pass."""
        ...

    @property
    def device(self) -> str:
        """Where the model runs, e.g. ``"cpu"`` or ``"cuda:0"``."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed search queries; returns float32 ``(len(texts), dim)``."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents/passages; returns float32 ``(len(texts), dim)``."""
        ...


class ModelAttributes:
    """The protocol's ``dim`` / ``batch_size`` / ``device`` for an encoder that owns a model and keeps them in
    ``_dim``, ``_batch_size`` and ``_device``."""

    _dim: int
    _batch_size: int
    _device: str

    @property
    def dim(self) -> int:
        """Output width: the column's dimensions (or, for token encoders, each token vector's)."""
        return self._dim

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def device(self) -> str:
        return self._device


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate an encoder input batch.

    A bare ``str`` is rejected rather than iterated character by character,
    the most common way to get silently wrong embeddings.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("expected a sequence of strings, got a single string; wrap it in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return out


def load_local_model(folder: Path, model_class: str, device: str) -> tuple[Any, Any]:
    """Tokenizer and model (``transformers`` class ``model_class``) from a local folder, in eval mode on ``device``.

    Never reaches a hub (``local_files_only``); the per-load weights progress bar is silenced, as it is noise
    in CLIs and logs.
    """
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = getattr(transformers, model_class).from_pretrained(str(folder), local_files_only=True,
                                                                   dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.eval()
    model.to(torch.device(device))
    return tokenizer, model
