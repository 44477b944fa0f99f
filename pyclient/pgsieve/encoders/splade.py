"""SPLADE document/query encoding over a local masked-LM checkpoint, and inference-free query encoding.

SPLADE (v2 and later) turns the MLM head's logits ``(tokens, vocab)`` into one weight per vocabulary entry:
w_j = max_i log(1 + ReLU(logit_ij)) over the text's real (attention-masked) tokens.  This is what naver/splade,
sentence-transformers' ``SpladePooling`` and pgvector-python's sparse example compute; special-token columns are
not zeroed (trained checkpoints put no weight there, and zeroing would diverge from those references).

Inference-free SPLADE (OpenSearch doc-only models, SPLADE-doc) runs the model on documents only; a query is its
tokenizer ids with a fixed per-token weight (an idf table shipped with the model, or 1.0), which costs microseconds
and no GPU — see :class:`InferenceFreeQueryEncoder`.

Everything loads from local folders (``local_files_only=True``); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .base import ModelAttributes, check_texts, load_local_model
from .sparse import SparseVector, from_arrays, top_k

__all__ = ["SpladeEncoder", "InferenceFreeQueryEncoder", "splade_pool", "load_token_weights"]

PathLike = Union[str, os.PathLike[str]]


def _local_dir(path: PathLike, what: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {str(folder)!r} is not a local directory "
                                "(pgsieve loads models from local folders only)")
    return folder


def splade_pool(logits: Any, attention_mask: Any) -> Any:
    """``(batch, tokens, vocab)`` logits → ``(batch, vocab)`` SPLADE weights: masked max of log(1 + ReLU)."""
    import torch

    weights = torch.log1p(torch.relu(logits))
    # weights are >= 0, so zeroing padded positions removes them from the max
    weights = weights * attention_mask.unsqueeze(-1).to(weights.dtype)
    return weights.max(dim=1).values


class SpladeEncoder(ModelAttributes):
    """SPLADE document and query vectors from a local ``AutoModelForMaskedLM`` folder.

    Parameters
    ----------
    model_path: local folder holding the MLM checkpoint and its tokenizer.
    device: torch device string.
    batch_size: texts per forward pass (sorted by length first, so padding is small).
    max_length / query_max_length: token limits for documents / queries (capped by position embeddings).
    top_k: keep only the k largest weights per vector.  Off by default: the encoder never prunes unless asked,
        and a vector with more non-zeros than ``sparsevec`` allows (16,000) raises instead.
    """

    def __init__(self, model_path: PathLike, device: str = "cpu", batch_size: int = 32, max_length: int = 256,
                 query_max_length: int = 64, top_k: Optional[int] = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 2 or query_max_length < 2:
            raise ValueError(f"max_length and query_max_length must be >= 2, got {max_length}, {query_max_length}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        self.model_path = _local_dir(model_path, "model_path")
        self._device = str(device)
        self._batch_size = int(batch_size)
        self.top_k = top_k
        self._tokenizer, self._model = self._load(self.model_path)
        limit = int(getattr(self._model.config, "max_position_embeddings", max_length))
        self.max_length = min(max_length, limit)
        self.query_max_length = min(query_max_length, limit)
        self._dim = int(self._model.config.vocab_size)

    def _load(self, folder: Path) -> tuple[Any, Any]:
        return load_local_model(folder, "AutoModelForMaskedLM", self._device)

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """SPLADE vectors of documents (truncated to ``max_length`` tokens), in input order."""
        return self.encode(texts, self.max_length, "document")

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """SPLADE vectors of queries (truncated to ``query_max_length`` tokens), in input order."""
        return self.encode(texts, self.query_max_length, "query")

    def encode_query(self, texts: Sequence[str]) -> list[SparseVector]:
        return self.encode_queries(texts)

    def encode_document(self, texts: Sequence[str]) -> list[SparseVector]:
        return self.encode_documents(texts)

    def encode(self, texts: Sequence[str], max_length: int, kind: str = "text") -> list[SparseVector]:
        """Encode in length-sorted batches and restore input order."""
        items = check_texts(texts)
        out: list[Optional[SparseVector]] = [None] * len(items)
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        for start in range(0, len(order), self._batch_size):
            idx = order[start:start + self._batch_size]
            weights = self._forward([items[i] for i in idx], max_length)
            for row, i in enumerate(idx):
                out[i] = self._to_sparse(weights[row], f"SPLADE {kind} {i}")
        return [v for v in out if v is not None]

    def _forward(self, texts: list[str], max_length: int) -> Any:
        import torch

        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        batch = {k: v.to(self._model.device) for k, v in batch.items()}
        with torch.inference_mode():
            logits = self._model(**batch).logits
            return splade_pool(logits.float(), batch["attention_mask"]).cpu()

    def _to_sparse(self, row: Any, what: str) -> SparseVector:
        nz = row.nonzero().flatten()
        idx, val = nz.numpy().astype(np.int64), row[nz].numpy()
        if self.top_k is not None:
            idx, val = top_k(idx, val, self.top_k)
        return from_arrays(idx, val, self._dim, nonnegative=True, what=what)

    def __repr__(self) -> str:
        return (f"SpladeEncoder({str(self.model_path)!r}, dim={self._dim}, device={self._device!r}, "
                f"top_k={self.top_k})")


def load_token_weights(source: Union[PathLike, Mapping[Any, float]], tokenizer: Any) -> dict[int, float]:
    """Per-token query weights as ``{token_id: weight}``.

    ``source`` is a mapping or a path to ``.json`` (keys are token ids or token strings — OpenSearch's
    ``idf.json`` uses strings) or ``.npy`` (a dense array indexed by token id).  Unknown token strings raise,
    because a silently skipped weight would change scores without a trace.
    """
    if isinstance(source, Mapping):
        raw: Mapping[Any, float] = source
    else:
        path = Path(source)
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 1:
                raise ValueError(f"{path}: expected a 1-D weight array, got shape {arr.shape}")
            return {i: float(v) for i, v in enumerate(arr.tolist())}
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        if not isinstance(raw, Mapping):
            raise ValueError(f"{path}: expected a JSON object of token -> weight")
    vocab = tokenizer.get_vocab()
    out: dict[int, float] = {}
    for key, w in raw.items():
        out[_token_id(key, vocab)] = float(w)
    return out


def _token_id(key: Any, vocab: Mapping[str, int]) -> int:
    """A weight table key as a token id: ints and digit strings are ids unless the vocabulary has that token."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    key = str(key)
    if key in vocab:
        return int(vocab[key])
    if key.isdigit():
        return int(key)
    raise ValueError(f"weight table token {key!r} is not in the tokenizer's vocabulary")


class InferenceFreeQueryEncoder:
    """Inference-free SPLADE queries: tokenizer ids with per-token weights, no model.

    Parameters
    ----------
    tokenizer_path: local folder with the *document* model's tokenizer (ids must match its vocabulary).
    weights: None (every token 1.0), ``{token_id or token: weight}``, or a path to ``.json`` / ``.npy``.
    default_weight: weight of tokens missing from a ``weights`` table.
    count_duplicates: multiply by the token's count in the query (some implementations do; OpenSearch does not).
    dim: vector dimension; default the weight array's length (``.npy``) or the tokenizer's size.  Set it to the
        document encoder's ``dim`` when the MLM head is wider than the tokenizer.
    """

    def __init__(self, tokenizer_path: PathLike, weights: Union[PathLike, Mapping[Any, float], None] = None,
                 default_weight: float = 1.0, count_duplicates: bool = False, dim: Optional[int] = None) -> None:
        from transformers import AutoTokenizer

        folder = _local_dir(tokenizer_path, "tokenizer_path")
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self._tokenizer.model_max_length = int(1e30)  # no model: no sequence limit, no truncation
        table = load_token_weights(weights, self._tokenizer) if weights is not None else {}
        npy_dim = self._npy_len(weights)
        self._dim = int(dim) if dim is not None else (npy_dim or len(self._tokenizer))
        self._weights = self._dense_weights(table, float(default_weight))
        self.count_duplicates = bool(count_duplicates)
        self._special = set(self._tokenizer.all_special_ids)

    @staticmethod
    def _npy_len(weights: Any) -> Optional[int]:
        if weights is None or isinstance(weights, Mapping) or Path(weights).suffix != ".npy":
            return None
        return int(np.load(weights, mmap_mode="r").shape[0])

    def _dense_weights(self, table: Mapping[int, float], default: float) -> np.ndarray:
        """One float64 weight per id, validated once (finite, >= 0) so queries need no checks."""
        w = np.full(self._dim, default, dtype=np.float64)
        for i, v in table.items():
            if not 0 <= i < self._dim:
                raise ValueError(f"weight table id {i} outside 0..{self._dim - 1}")
            w[i] = v
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("query token weights must be finite and >= 0")
        return w

    @property
    def dim(self) -> int:
        return self._dim

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """One vector per query: weight[token] (× count if ``count_duplicates``) per distinct non-special token."""
        items = check_texts(texts)
        if not items:
            return []
        ids = self._tokenizer(items, add_special_tokens=False, truncation=False)["input_ids"]
        return [self._vector(x, i) for i, x in enumerate(ids)]

    def encode_query(self, texts: Sequence[str]) -> list[SparseVector]:
        return self.encode_queries(texts)

    def _vector(self, ids: Sequence[int], i: int) -> SparseVector:
        counts = Counter(int(t) for t in ids if int(t) not in self._special)
        terms = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        if terms.size and terms.max() >= self._dim:
            raise ValueError(f"query {i}: token id {int(terms.max())} outside dim {self._dim}")
        weights = self._weights[terms]
        if self.count_duplicates:
            weights = weights * np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        return from_arrays(terms, weights, self._dim, nonnegative=True, what=f"inference-free query {i}")

    def __repr__(self) -> str:
        return f"InferenceFreeQueryEncoder(dim={self._dim}, count_duplicates={self.count_duplicates})"
