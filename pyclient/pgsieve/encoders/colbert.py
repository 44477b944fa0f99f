"""Late-interaction (ColBERT) encoder: one L2-normalized vector per token, for MaxSim scoring.

Three checkpoint layouts are detected from the model folder (see :func:`read_checkpoint`):

``pylate``
    A PyLate / sentence-transformers folder: ``modules.json`` lists a Transformer module and one or more
    token-level ``Dense`` projections (``pylate.models.Dense.Dense`` or a sentence-transformers ``Dense``), each in
    a subfolder with ``config.json`` ``{in_features, out_features, bias, activation_function[, use_residual]}`` and
    ``model.safetensors`` or ``pytorch_model.bin``.  Settings come from ``config_sentence_transformers.json``
    (PyLate's ``query_prefix``, ``document_prefix``, ``query_length``, ``document_length``, ``do_query_expansion``,
    ``attend_to_expansion_tokens``, ``skiplist_words``), with PyLate's defaults ``"[Q] "``, ``"[D] "``, 32, 180,
    True, False and ``string.punctuation``.  Native sentence-transformers v6 ``MultiVectorEncoder`` saves (a
    ``MultiVectorMask`` module; markers in ``prompts``; lengths and ``query_expansion`` in the Transformer's
    ``sentence_bert_config.json``) are read too.
``stanford``
    A Stanford ColBERT (``colbert-ai``) Hugging Face folder: ``config.json`` with ``architectures ==
    ["HF_ColBERT"]`` (or an ``artifact.metadata`` file, or a ``linear.weight`` tensor in the weights), a BERT-like
    encoder under the ``bert.`` prefix plus ``linear.weight`` ``(dim, hidden)`` with no bias.  ``artifact.metadata``
    (JSON) gives ``query_maxlen``, ``doc_maxlen``, ``dim``, ``query_token_id``, ``doc_token_id``,
    ``attend_to_mask_tokens`` and ``mask_punctuation``; defaults are ColBERTConfig's ``[unused0]`` / ``[unused1]``,
    32, 220, False and True.
``transformers``
    Any other transformers encoder (e.g. the packaged all-MiniLM-L6-v2, whose Pooling/Normalize modules are
    ignored): the last hidden state's token vectors, no projection and, by default, no markers.

ColBERT conventions applied to every layout (PyLate ``models/colbert.py`` ``tokenize``/``encode`` and Stanford
``modeling/colbert.py`` / ``tokenization/*_tokenization.py`` agree on all of them):

* the marker token is *inserted* as a token id right after the first token ([CLS]); the text is tokenized with
  ``maxlen - 1`` tokens so that the marked sequence has at most ``maxlen``;
* queries are padded with [MASK] ids up to ``query_maxlen`` ("query augmentation"); the expansion positions get
  attention 0 in the encoder (unless the checkpoint attends to them) but their output vectors are kept and score;
  longer queries are truncated to ``query_maxlen``;
* documents are truncated to ``doc_maxlen``; padding is removed, and tokens in the skiplist (punctuation) are
  dropped when ``skip_punctuation``; [CLS], the marker and [SEP] are kept;
* each kept token vector is L2-normalized.

Models load from local folders only; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .base import ModelAttributes, check_texts, load_local_model

__all__ = ["LateInteractionEncoder", "CheckpointSpec", "DenseSpec", "read_checkpoint", "resolve_device"]

PathLike = Union[str, os.PathLike[str]]

LAYOUTS = ("pylate", "stanford", "transformers")
PRUNING_RULES = ("norm", "first")

#: PyLate's defaults (``pylate/models/colbert.py``): prefixes, lengths
_PYLATE_DEFAULTS = {"query_marker": "[Q] ", "doc_marker": "[D] ", "query_maxlen": 32, "doc_maxlen": 180}
#: Stanford ColBERTConfig's defaults (``colbert/infra/config/settings.py``)
_STANFORD_DEFAULTS = {"query_marker": "[unused0]", "doc_marker": "[unused1]", "query_maxlen": 32, "doc_maxlen": 220}
#: what a bare transformers folder gets: the ColBERT lengths of PyLate, no markers
_PLAIN_DEFAULTS = {"query_marker": "", "doc_marker": "", "query_maxlen": 32, "doc_maxlen": 180}

#: doc_maxlen placeholder meaning "as long as the model allows" (tokenizer model_max_length, position embeddings)
_MODEL_LIMIT = 1 << 30


@dataclass(frozen=True)
class DenseSpec:
    """One token-level projection module of a PyLate / sentence-transformers folder."""

    folder: Path
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "torch.nn.modules.linear.Identity"
    use_residual: bool = False


@dataclass(frozen=True)
class CheckpointSpec:
    """What :func:`read_checkpoint` found in a model folder (no weights loaded)."""

    layout: str
    transformer_dir: Path
    query_marker: str = ""
    doc_marker: str = ""
    query_maxlen: int = 32
    doc_maxlen: int = 180
    query_expansion: bool = True
    attend_to_expansion: bool = False
    skip_punctuation: bool = True
    skiplist_words: tuple[str, ...] = tuple(string.punctuation)
    do_lower_case: bool = False
    strip: bool = True  # sentence-transformers strips texts before tokenizing; Stanford ColBERT does not
    dense: tuple[DenseSpec, ...] = ()
    stanford_dim: Optional[int] = None  # artifact.metadata ``dim``, checked against linear.weight
    similarity: str = "cosine"
    sources: tuple[str, ...] = field(default=())  # the files the settings were read from


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _local_dir(path: PathLike) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model_path {str(folder)!r} is not a local directory "
                                "(pgsieve loads models from local folders only)")
    return folder


def _module_kind(kind: str) -> str:
    """Classify a ``modules.json`` type by its class name: ``pylate.models.Dense.Dense``,
    ``sentence_transformers.models.Dense`` and sentence-transformers v6's ``...modules.dense.Dense`` are all Dense."""
    last = kind.rsplit(".", 1)[-1]
    if last in ("Transformer", "Dense", "Pooling", "Normalize", "MultiVectorMask"):
        return last.lower()
    return "other"


def _first_not_none(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _safetensors_keys(folder: Path) -> set[str]:
    """Tensor names of the folder's safetensors weights (headers only), or an empty set."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set((_read_json(index).get("weight_map") or {}).keys())
    path = folder / "model.safetensors"
    if not path.is_file():
        return set()
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def _read_dense(folder: Path, kind: str) -> DenseSpec:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: Dense module without config.json")
    cfg = _read_json(cfg_path)
    try:
        in_f, out_f = int(cfg["in_features"]), int(cfg["out_features"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{cfg_path}: expected integer in_features and out_features") from exc
    # each library's constructor default when the key is absent: PyLate Identity, sentence-transformers Tanh
    default_act = ("torch.nn.modules.linear.Identity" if kind.startswith("pylate")
                   else "torch.nn.modules.activation.Tanh")
    if str(cfg.get("module_input_name", "token_embeddings")) != "token_embeddings":
        raise NotImplementedError(f"{cfg_path}: a Dense on {cfg.get('module_input_name')!r} is not a token-level "
                                  "projection")
    return DenseSpec(folder=folder, in_features=in_f, out_features=out_f, bias=bool(cfg.get("bias", True)),
                     activation=str(cfg.get("activation_function") or default_act),
                     use_residual=bool(cfg.get("use_residual", False)))


def _read_st_folder(folder: Path) -> CheckpointSpec:
    """PyLate / sentence-transformers folder (``modules.json``)."""
    modules_path = folder / "modules.json"
    modules = _read_json(modules_path)
    if not isinstance(modules, list):
        raise ValueError(f"{modules_path}: expected a JSON list of modules")
    transformer_dir: Optional[Path] = None
    dense: list[DenseSpec] = []
    seen: list[str] = []
    mv_mask: Optional[Path] = None
    for module in modules:
        kind_name = str(module.get("type", ""))
        kind = _module_kind(kind_name)
        mpath = folder / str(module.get("path", ""))
        if kind == "transformer":
            if transformer_dir is not None:
                raise NotImplementedError(f"{modules_path}: more than one Transformer module")
            transformer_dir = mpath
        elif kind == "dense":
            if "pooling" in seen:
                raise NotImplementedError(f"{modules_path}: a Dense module after Pooling projects sentence "
                                          "embeddings; this is a single-vector model, not a late-interaction one")
            dense.append(_read_dense(mpath, kind_name))
        elif kind == "multivectormask":
            mv_mask = mpath
        elif kind in ("pooling", "normalize"):
            pass  # sentence-level pooling is dropped; token vectors are normalized by the encoder
        else:
            raise NotImplementedError(f"{modules_path}: module type {kind_name!r} is not supported "
                                      "(supported: Transformer, Dense, MultiVectorMask, Pooling, Normalize)")
        seen.append(kind)
    if transformer_dir is None:
        raise ValueError(f"{modules_path}: unknown checkpoint layout (no Transformer module)")
    sources = [str(modules_path)]

    st_cfg_path = folder / "config_sentence_transformers.json"
    st_cfg: dict[str, Any] = {}
    if st_cfg_path.is_file():
        st_cfg = _read_json(st_cfg_path)
        sources.append(str(st_cfg_path))
    tr_cfg_path = transformer_dir / "sentence_bert_config.json"
    tr_cfg: dict[str, Any] = {}
    if tr_cfg_path.is_file():
        tr_cfg = _read_json(tr_cfg_path)
        sources.append(str(tr_cfg_path))

    pylate_keys = ("query_prefix", "document_prefix", "query_length", "document_length", "do_query_expansion",
                   "attend_to_expansion_tokens", "skiplist_words")
    is_pylate = bool(dense) or st_cfg.get("model_type") == "ColBERT" or any(k in st_cfg for k in pylate_keys)
    if not is_pylate and mv_mask is None:
        # a sentence-transformers single-vector folder such as all-MiniLM-L6-v2: plain token vectors
        return CheckpointSpec(layout="transformers", transformer_dir=transformer_dir,
                              do_lower_case=bool(tr_cfg.get("do_lower_case", False)),
                              sources=tuple(sources), **_PLAIN_DEFAULTS)

    prompts = st_cfg.get("prompts") or {}
    native = mv_mask is not None and not any(k in st_cfg for k in pylate_keys)
    if native:
        # sentence-transformers v6 MultiVectorEncoder save: markers are the prompts, lengths on the Transformer
        query_marker = str(prompts.get("query") or "")
        doc_marker = str(prompts.get("document") or "")
        expansion = tr_cfg.get("query_expansion")
        if expansion is not None and expansion.get("strategy", "fixed") != "fixed":
            raise NotImplementedError(f"{tr_cfg_path}: query_expansion strategy {expansion.get('strategy')!r} is "
                                      "not supported (only 'fixed')")
        query_maxlen = _first_not_none((expansion or {}).get("length"), tr_cfg.get("query_length"),
                                       _PYLATE_DEFAULTS["query_maxlen"])
        # no document_length: sentence-transformers uses the model's maximum (resolved once it is loaded)
        doc_maxlen = _first_not_none(tr_cfg.get("document_length"), tr_cfg.get("max_seq_length"), _MODEL_LIMIT)
        do_expansion = expansion is not None
        attend = bool((expansion or {}).get("attend", False))
        skiplist: list[str] = []
        mask_cfg_path = mv_mask / "config.json"
        if mask_cfg_path.is_file():
            mask_cfg = _read_json(mask_cfg_path)
            sources.append(str(mask_cfg_path))
            skiplist = list(mask_cfg.get("skiplist_words") or [])
            tasks = mask_cfg.get("skiplist_tasks") or ["document"]
            if sorted([tasks] if isinstance(tasks, str) else tasks) != ["document"]:
                raise NotImplementedError(f"{mask_cfg_path}: skiplist_tasks {tasks!r} is not supported "
                                          "(only ['document'])")
            if mask_cfg.get("keep_only_token_ids"):
                raise NotImplementedError(f"{mask_cfg_path}: keep_only_token_ids is not supported")
    else:
        # PyLate: top-level keys of config_sentence_transformers.json; None means "PyLate's default"
        query_marker = _first_not_none(st_cfg.get("query_prefix"), _PYLATE_DEFAULTS["query_marker"])
        doc_marker = _first_not_none(st_cfg.get("document_prefix"), _PYLATE_DEFAULTS["doc_marker"])
        query_maxlen = _first_not_none(st_cfg.get("query_length"), _PYLATE_DEFAULTS["query_maxlen"])
        doc_maxlen = _first_not_none(st_cfg.get("document_length"), _PYLATE_DEFAULTS["doc_maxlen"])
        do_expansion = bool(_first_not_none(st_cfg.get("do_query_expansion"), True))
        attend = bool(_first_not_none(st_cfg.get("attend_to_expansion_tokens"), False)) and do_expansion
        skiplist = list(_first_not_none(st_cfg.get("skiplist_words"), list(string.punctuation)))
        for prompt_key in ("query", "document"):
            if prompts.get(prompt_key):
                raise NotImplementedError(f"{st_cfg_path}: a text prompt for {prompt_key!r} on top of the marker "
                                          "token is not supported")
    return CheckpointSpec(
        layout="pylate", transformer_dir=transformer_dir, query_marker=str(query_marker), doc_marker=str(doc_marker),
        query_maxlen=int(query_maxlen), doc_maxlen=int(doc_maxlen), query_expansion=do_expansion,
        attend_to_expansion=attend, skip_punctuation=bool(skiplist), skiplist_words=tuple(skiplist),
        do_lower_case=bool(tr_cfg.get("do_lower_case", False)), dense=tuple(dense), sources=tuple(sources))


def _read_stanford(folder: Path) -> CheckpointSpec:
    meta_path = folder / "artifact.metadata"
    meta: dict[str, Any] = {}
    sources = [str(folder / "config.json")]
    if meta_path.is_file():
        meta = _read_json(meta_path)
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_path}: expected a JSON object")
        sources.append(str(meta_path))
    d = _STANFORD_DEFAULTS
    mask_punct = bool(_first_not_none(meta.get("mask_punctuation"), True))
    return CheckpointSpec(
        layout="stanford", transformer_dir=folder,
        query_marker=str(meta.get("query_token_id") or d["query_marker"]),
        doc_marker=str(meta.get("doc_token_id") or d["doc_marker"]),
        query_maxlen=int(meta.get("query_maxlen") or d["query_maxlen"]),
        doc_maxlen=int(meta.get("doc_maxlen") or d["doc_maxlen"]),
        query_expansion=True,  # Stanford ColBERT always [MASK]-augments queries
        attend_to_expansion=bool(meta.get("attend_to_mask_tokens", False)),
        skip_punctuation=mask_punct, skiplist_words=tuple(string.punctuation) if mask_punct else (),
        strip=False, stanford_dim=int(meta["dim"]) if meta.get("dim") is not None else None,
        similarity=str(meta.get("similarity", "cosine")), sources=tuple(sources))


def read_checkpoint(model_path: PathLike) -> CheckpointSpec:
    """Detect the layout of a local model folder and read its ColBERT settings (no weights are loaded).

    Raises FileNotFoundError for a missing folder, ValueError for a folder that is no known layout and
    NotImplementedError for a recognised layout with a setting this encoder does not reproduce.
    """
    folder = _local_dir(model_path)
    if (folder / "modules.json").is_file():
        return _read_st_folder(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{folder}: unknown checkpoint layout (no modules.json and no transformers config.json; "
                         "expected a PyLate / sentence-transformers, Stanford ColBERT or transformers folder)")
    config = _read_json(config_path)
    archs = config.get("architectures") or []
    if ("HF_ColBERT" in archs or (folder / "artifact.metadata").is_file()
            or "linear.weight" in _safetensors_keys(folder)):
        return _read_stanford(folder)
    return CheckpointSpec(layout="transformers", transformer_dir=folder, sources=(str(config_path),),
                          **_PLAIN_DEFAULTS)


def resolve_device(device: Any) -> str:
    """Validate a torch device string; a CUDA/MPS device that is not available is a clear error, not a fallback."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"invalid device {device!r} (expected e.g. 'cpu', 'cuda', 'cuda:1')") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available in this torch build/machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RuntimeError(f"device {device!r} requested but MPS is not available")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r}: only cpu, cuda and mps devices are supported")
    return str(dev)


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype {dtype} is not supported (float32, float16, bfloat16)")
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if str(dtype) not in names:
        raise ValueError(f"dtype {dtype!r} is not supported (float32, float16, bfloat16)")
    return names[str(dtype)]


def _load_state_dict(folder: Path) -> dict[str, Any]:
    """``model.safetensors`` or ``pytorch_model.bin`` of a small module folder (a Dense projection)."""
    import torch

    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin")


def _load_tensor(folder: Path, name: str) -> Any:
    """One tensor from a (possibly sharded) checkpoint, reading only what is needed for safetensors."""
    import torch

    index = folder / "model.safetensors.index.json"
    files: list[Path] = []
    if index.is_file():
        shard = (_read_json(index).get("weight_map") or {}).get(name)
        if shard:
            files.append(folder / shard)
    files.append(folder / "model.safetensors")
    for path in files:
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                if name in f.keys():
                    return f.get_tensor(name)
    if (folder / "pytorch_model.bin").is_file():
        sd = torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
        if name in sd:
            return sd[name].clone()
    raise ValueError(f"{folder}: Stanford ColBERT checkpoint without a {name!r} tensor")


def _activation(name: str) -> Any:
    """A ``torch.nn`` activation module from its saved class path (only torch.nn classes are accepted)."""
    import torch

    cls = getattr(torch.nn, name.rsplit(".", 1)[-1], None) if name.startswith("torch.nn.") else None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise NotImplementedError(f"activation function {name!r} is not supported (only torch.nn modules)")
    return cls()


def _build_dense(spec: DenseSpec) -> Any:
    import torch

    class _Dense(torch.nn.Module):
        """The forward of PyLate's / sentence-transformers' Dense: act(W x + b) (+ residual)."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)
            self.activation_function = _activation(spec.activation)
            self.use_residual = spec.use_residual
            if spec.use_residual and spec.in_features != spec.out_features:
                self.residual = torch.nn.Linear(spec.in_features, spec.out_features, bias=False)

        def forward(self, x: Any) -> Any:
            out = self.activation_function(self.linear(x))
            if self.use_residual:
                out = out + (self.residual(x) if hasattr(self, "residual") else x)
            return out

    module = _Dense()
    state = _load_state_dict(spec.folder)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{spec.folder}: weights do not match its config.json: {exc}") from exc
    return module


def _file_fingerprint(folder: Path, extra: str) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".md" or path.name.startswith("."):
            continue
        h.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(extra.encode())
    return h.hexdigest()[:16]


class LateInteractionEncoder(ModelAttributes):
    """ColBERT-style token embeddings from a local PyLate, Stanford ColBERT or transformers folder.

    ``encode_query`` / ``encode_document`` return one float32 ``(ntok, dim)`` array per text, in input order.

    Parameters (``None`` = the checkpoint's value, see the module docstring for each layout's defaults)
    ----------
    model_path: local folder; default the packaged all-MiniLM-L6-v2 (layout ``transformers``).
    query_maxlen / doc_maxlen: token budgets including [CLS], marker and [SEP]; queries are padded/truncated to
        exactly ``query_maxlen`` when query expansion is on.  Capped by the model's position embeddings.
    query_marker / doc_marker: marker token inserted after [CLS] (``""`` = none).  Must be one token of the
        tokenizer's vocabulary (PyLate's ``"[Q] "`` is an added token of its saved tokenizer).
    query_expansion: pad queries with [MASK] to ``query_maxlen`` and keep those vectors.
    attend_to_expansion: let the encoder attend to the [MASK] positions (PyLate ``attend_to_expansion_tokens``,
        Stanford ``attend_to_mask_tokens``); off in classic ColBERT.
    normalize: L2-normalize each token vector.
    skip_punctuation: drop document tokens in the skiplist (the checkpoint's ``skiplist_words``, else
        ``string.punctuation``); a word that is not a single token of the vocabulary is ignored, never mapped to
        [UNK].
    doc_token_limit: keep at most this many vectors per document (``None`` = all), chosen by ``doc_pruning``:
        ``"norm"`` keeps the tokens whose projected vectors have the largest L2 norm *before* normalization
        (ties: earlier position), ``"first"`` keeps the first ones; kept vectors stay in text order.  Applied after
        the punctuation skiplist.  Queries are never pruned.
    device: "cpu", "cuda", "cuda:1", "mps"; an unavailable accelerator raises instead of falling back.
    batch_size: texts per forward pass; texts are tokenized first and batched by token length.
    dtype: model weights' dtype ("float32" default, "float16", "bfloat16"); outputs are always float32.
    """

    def __init__(self, model_path: Optional[PathLike] = None, *, query_maxlen: Optional[int] = None,
                 doc_maxlen: Optional[int] = None, query_marker: Optional[str] = None,
                 doc_marker: Optional[str] = None, query_expansion: Optional[bool] = None,
                 attend_to_expansion: Optional[bool] = None, normalize: bool = True,
                 skip_punctuation: Optional[bool] = None, doc_token_limit: Optional[int] = None,
                 doc_pruning: str = "norm", device: str = "cpu", batch_size: int = 32, dtype: Any = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if doc_token_limit is not None and doc_token_limit < 1:
            raise ValueError(f"doc_token_limit must be >= 1 or None, got {doc_token_limit}")
        if doc_pruning not in PRUNING_RULES:
            raise ValueError(f"doc_pruning must be one of {PRUNING_RULES}, got {doc_pruning!r}")
        for name, value in (("query_maxlen", query_maxlen), ("doc_maxlen", doc_maxlen)):
            if value is not None and value < 3:
                raise ValueError(f"{name} must be >= 3, got {value}")
        if model_path is None:
            from .dense import default_model_path

            model_path = default_model_path()
        spec = read_checkpoint(model_path)
        self.model_path = Path(model_path)
        self._device = resolve_device(device)
        self._dtype = _resolve_dtype(dtype)
        self._batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.doc_token_limit = doc_token_limit
        self.doc_pruning = doc_pruning

        overrides: dict[str, Any] = {}
        for key, value in (("query_maxlen", query_maxlen), ("doc_maxlen", doc_maxlen),
                           ("query_marker", query_marker), ("doc_marker", doc_marker),
                           ("query_expansion", query_expansion), ("skip_punctuation", skip_punctuation)):
            if value is not None:
                overrides[key] = value
        if attend_to_expansion is not None:
            overrides["attend_to_expansion"] = bool(attend_to_expansion)
        if skip_punctuation and not spec.skiplist_words:
            overrides["skiplist_words"] = tuple(string.punctuation)
        spec = replace(spec, **overrides)
        if not spec.query_expansion:
            spec = replace(spec, attend_to_expansion=False)

        self._tokenizer, self._model = self._load(spec)
        self._model.to(self._dtype)
        limit = int(getattr(self._model.config, "max_position_embeddings", 0) or 0)
        if limit > 0:
            # RoBERTa-style position ids start after the padding index; leave room for it
            if getattr(self._model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
                limit -= int(getattr(self._model.config, "pad_token_id", 0) or 0) + 1
            spec = replace(spec, query_maxlen=min(spec.query_maxlen, limit), doc_maxlen=min(spec.doc_maxlen, limit))
        if spec.doc_maxlen >= _MODEL_LIMIT:
            tok_limit = int(getattr(self._tokenizer, "model_max_length", 0) or 0)
            if not 0 < tok_limit < _MODEL_LIMIT:
                raise ValueError(f"{self.model_path}: no document length in the checkpoint and no model limit; "
                                 "pass doc_maxlen=")
            spec = replace(spec, doc_maxlen=tok_limit)
        self.spec = spec
        self._query_marker_id = self._marker_id(spec.query_marker, "query_marker")
        self._doc_marker_id = self._marker_id(spec.doc_marker, "doc_marker")
        self._pad_id = int(self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else 0)
        self._expansion_id: Optional[int] = None
        if spec.query_expansion:
            # PyLate's fallback chain: [MASK] for encoder models, else EOS
            exp = _first_not_none(self._tokenizer.mask_token_id, self._tokenizer.eos_token_id)
            if exp is None:
                raise ValueError(f"{self.model_path}: query expansion needs a [MASK] (or EOS) token, the tokenizer "
                                 "has neither; pass query_expansion=False")
            self._expansion_id = int(exp)
        self._skip_ids = self._skiplist_ids(spec.skiplist_words) if spec.skip_punctuation else np.zeros(0, np.int64)
        self._token_types = "token_type_ids" in getattr(self._tokenizer, "model_input_names", ())
        self._projection = self._load_projection(spec)
        hidden = int(self._model.config.hidden_size)
        self._dim = hidden
        if spec.layout == "stanford":
            self._dim = int(self._projection[-1].out_features)
        elif spec.dense:
            self._dim = spec.dense[-1].out_features
        self._fingerprint: Optional[str] = None

    # -- loading --------------------------------------------------------------
    def _load(self, spec: CheckpointSpec) -> tuple[Any, Any]:
        from transformers.utils import logging as hf_logging

        if not (spec.transformer_dir / "config.json").is_file():
            raise ValueError(f"{spec.transformer_dir}: no transformers config.json for the {spec.layout} encoder")
        level = hf_logging.get_verbosity()
        if spec.layout == "stanford":
            hf_logging.set_verbosity_error()  # the extra linear.weight key is expected: no "unexpected keys" report
        try:
            tokenizer, model = load_local_model(spec.transformer_dir, "AutoModel", self._device)
        finally:
            hf_logging.set_verbosity(level)
        return tokenizer, model

    def _load_projection(self, spec: CheckpointSpec) -> list[Any]:
        import torch

        hidden = int(self._model.config.hidden_size)
        layers: list[Any] = []
        if spec.layout == "stanford":
            weight = _load_tensor(spec.transformer_dir, "linear.weight")
            if weight.ndim != 2 or weight.shape[1] != hidden:
                raise ValueError(f"{spec.transformer_dir}: linear.weight has shape {tuple(weight.shape)}, expected "
                                 f"(dim, {hidden})")
            if spec.stanford_dim is not None and spec.stanford_dim != weight.shape[0]:
                raise ValueError(f"{spec.transformer_dir}: artifact.metadata dim={spec.stanford_dim} but "
                                 f"linear.weight projects to {weight.shape[0]}")
            layer = torch.nn.Linear(hidden, int(weight.shape[0]), bias=False)  # ColBERT's self.linear
            with torch.no_grad():
                layer.weight.copy_(weight.float())
            layers.append(layer)
        else:
            width = hidden
            for d in spec.dense:
                if d.in_features != width:
                    raise ValueError(f"{d.folder}: Dense in_features={d.in_features} does not match the width "
                                     f"{width} it receives")
                layers.append(_build_dense(d))
                width = d.out_features
        for layer in layers:
            layer.eval()
            layer.to(device=self._model.device, dtype=self._dtype)
        return layers

    def _marker_id(self, marker: str, what: str) -> Optional[int]:
        if not marker:
            return None
        tok = self._tokenizer
        # the exact token first (PyLate adds "[Q] " with its space), then the bare token of a prompt written as
        # text with a separating space ("[unused0] " in sentence-transformers v6 prompts)
        for candidate in dict.fromkeys((marker, marker.strip())):
            tid = tok.convert_tokens_to_ids(candidate) if candidate else None
            if tid is not None and (tid != tok.unk_token_id or candidate == tok.unk_token):
                return int(tid)
        raise ValueError(f"{what} {marker!r} is not a token of the tokenizer in {self.spec.transformer_dir} "
                         "(a marker is inserted as one token id; text prompts are not supported; pass \"\" for "
                         "no marker)")

    def _skiplist_ids(self, words: Sequence[str]) -> np.ndarray:
        tok = self._tokenizer
        vocab = tok.get_vocab()
        ids: set[int] = set()
        for w in words:
            if w in vocab:
                ids.add(int(vocab[w]))
                continue
            pieces = tok(w, add_special_tokens=False)["input_ids"]
            if len(pieces) == 1 and pieces[0] != tok.unk_token_id:
                ids.add(int(pieces[0]))
        return np.array(sorted(ids), dtype=np.int64)

    # -- protocol ---------------------------------------------------------------
    @property
    def layout(self) -> str:
        return self.spec.layout

    @property
    def query_maxlen(self) -> int:
        return self.spec.query_maxlen

    @property
    def doc_maxlen(self) -> int:
        return self.spec.doc_maxlen

    @property
    def model(self) -> Any:
        """The underlying transformers encoder (e.g. to register hooks)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def encode_query(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Query token vectors: ``query_maxlen`` rows each when query expansion is on."""
        return self._encode(texts, is_query=True)

    def encode_document(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Document token vectors: padding and (by default) punctuation removed, at most ``doc_maxlen`` rows."""
        return self._encode(texts, is_query=False)

    # FlagEmbedding / pgsieve Encoder spelling, so either name works
    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.encode_query(texts)

    def encode_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.encode_document(texts)

    # -- work ---------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str], is_query: bool) -> list[list[int]]:
        """Token ids of each text as fed to the model, marker included, before padding/expansion."""
        spec = self.spec
        items = check_texts(texts)
        if spec.strip:
            items = [t.strip() for t in items]
        if spec.do_lower_case:
            items = [t.lower() for t in items]
        marker = self._query_marker_id if is_query else self._doc_marker_id
        maxlen = spec.query_maxlen if is_query else spec.doc_maxlen
        if not items:
            return []
        ids = self._tokenizer(items, add_special_tokens=True, truncation=True,
                              max_length=maxlen - (1 if marker is not None else 0))["input_ids"]
        if marker is None:
            return [list(x) for x in ids]
        return [[x[0], marker, *x[1:]] if x else [marker] for x in ids]

    def tokenize(self, texts: Sequence[str], is_query: bool) -> dict[str, Any]:
        """The padded batch for ``texts`` (in the given order): ``input_ids``, ``attention_mask``,
        ``token_type_ids`` (when the model takes them) and ``score_mask`` (the rows that become vectors)."""
        return self._pad(self.token_ids(texts, is_query), is_query)

    def _pad(self, ids: list[list[int]], is_query: bool) -> dict[str, Any]:
        import torch

        expand = is_query and self.spec.query_expansion
        width = self.spec.query_maxlen if expand else max((len(x) for x in ids), default=0)
        n = len(ids)
        fill = self._expansion_id if expand else self._pad_id
        input_ids = torch.full((n, width), int(fill), dtype=torch.long)
        real = torch.zeros((n, width), dtype=torch.bool)
        for row, x in enumerate(ids):
            input_ids[row, :len(x)] = torch.tensor(x, dtype=torch.long)
            real[row, :len(x)] = True
        if expand:
            attention = torch.ones_like(real) if self.spec.attend_to_expansion else real
            score = torch.ones_like(real)  # the [MASK] expansion vectors are kept and score
        else:
            attention = real
            score = real
            if not is_query and self._skip_ids.size:
                score = score & ~torch.isin(input_ids, torch.from_numpy(self._skip_ids))
        batch = {"input_ids": input_ids, "attention_mask": attention.long(), "score_mask": score}
        if self._token_types:
            batch["token_type_ids"] = torch.zeros_like(input_ids)
        return batch

    def _encode(self, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        ids = self.token_ids(texts, is_query)
        out: list[Optional[np.ndarray]] = [None] * len(ids)
        # longest first: little padding per batch, and an OOM shows up at once
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), self._batch_size):
            idx = order[start:start + self._batch_size]
            vecs = self._forward(self._pad([ids[i] for i in idx], is_query), is_query)
            for i, v in zip(idx, vecs):
                out[i] = v
        return [v for v in out if v is not None]

    def _forward(self, batch: dict[str, Any], is_query: bool) -> list[np.ndarray]:
        import torch

        score = batch.pop("score_mask")
        inputs = {k: v.to(self._model.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = self._model(**inputs).last_hidden_state
            for layer in self._projection:
                hidden = layer(hidden)
            hidden = hidden.float()
            norms = hidden.norm(dim=-1)
            if self.normalize:
                hidden = torch.nn.functional.normalize(hidden, p=2, dim=-1)
            hidden_np = hidden.cpu().numpy()
            norms_np = norms.cpu().numpy()
        score_np = score.numpy()
        out = []
        for row in range(hidden_np.shape[0]):
            keep = np.flatnonzero(score_np[row])
            if not is_query and self.doc_token_limit is not None and keep.size > self.doc_token_limit:
                keep = self._prune(keep, norms_np[row])
            out.append(np.ascontiguousarray(hidden_np[row, keep], dtype=np.float32))
        return out

    def _prune(self, keep: np.ndarray, norms: np.ndarray) -> np.ndarray:
        k = int(self.doc_token_limit)  # type: ignore[arg-type]
        if self.doc_pruning == "first":
            return keep[:k]
        # largest pre-normalization norm first; a stable sort keeps earlier positions on ties
        best = np.argsort(-norms[keep], kind="stable")[:k]
        return keep[np.sort(best)]

    def fingerprint(self) -> str:
        """Hash of the weights, configs and encoding settings: a cache key for stored token vectors."""
        if self._fingerprint is None:
            settings = repr((self.spec, self.normalize, self.doc_token_limit, self.doc_pruning, str(self._dtype)))
            self._fingerprint = _file_fingerprint(self.model_path, settings)
        return self._fingerprint

    def __repr__(self) -> str:
        return (f"LateInteractionEncoder({str(self.model_path)!r}, layout={self.spec.layout!r}, dim={self._dim}, "
                f"device={self._device!r}, query_maxlen={self.spec.query_maxlen}, "
                f"doc_maxlen={self.spec.doc_maxlen})")
