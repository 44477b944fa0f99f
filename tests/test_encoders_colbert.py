"""LateInteractionEncoder: ColBERT token vectors from PyLate, Stanford ColBERT and plain transformers folders.

The packaged all-MiniLM-L6-v2 covers the plain layout (shapes, [MASK] query augmentation, punctuation skiplist,
determinism, and a MaxSim retrieval sanity check).  The PyLate and Stanford layouts use tiny randomly initialised
BERTs built here over MiniLM's vocabulary: their outputs are checked against a step-by-step computation with the
saved weights, the token ids fed to the model are captured with a forward hook, and — when sentence-transformers
v6 is installed — everything is compared with its ``MultiVectorEncoder``, an independent reader of both formats.
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pgsieve.encoders import Encoder, LateInteractionEncoder  # noqa: E402
from pgsieve.encoders.colbert import read_checkpoint, resolve_device  # noqa: E402
from pgsieve.encoders.dense import default_model_path  # noqa: E402

DOCS = [
    "The open() system call opens the file specified by pathname.",
    "close() closes a file descriptor, so that it no longer refers to any file and may be reused.",
    "The fork() system call creates a new process by duplicating the calling process.",
    "Signals are a limited form of inter-process communication; kill sends a signal to a process.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
    "A recipe for banana bread needs ripe bananas, flour, sugar, butter and eggs.",
    "The Pacific Ocean is the largest and deepest of Earth's oceanic divisions.",
]
QUERIES = [  # QUERIES[i] is a paraphrase / known-item query for DOCS[i]
    "how to open a file by its path",
    "release a file descriptor",
    "spawn a child process by duplicating the parent",
    "send a signal to kill a process",
    "how plants turn sunlight into sugar",
    "when was the Eiffel tower built",
    "baking bread with bananas",
    "biggest ocean on earth",
]
PUNCT_DOC = "hello, world!!! (really?)"
LONG_DOC = "token " * 400
LONG_QUERY = " ".join(["question"] * 60)

HIDDEN, PROJ = 32, 16


def maxsim_numpy(query: np.ndarray, doc: np.ndarray) -> float:
    """ColBERT MaxSim: Σ over query vectors of the best dot product with any document vector."""
    return float((query @ doc.T).max(axis=1).sum())


def run_ids(enc: LateInteractionEncoder, fn: Any, texts: list[str]) -> tuple[list[np.ndarray], list[dict]]:
    """Call ``fn(texts)`` and capture every batch the transformer receives (forward pre-hook)."""
    seen: list[dict] = []

    def hook(_module: Any, args: tuple, kwargs: dict) -> None:
        seen.append({k: v.detach().cpu().clone() for k, v in kwargs.items() if torch.is_tensor(v)})

    handle = enc.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        out = fn(texts)
    finally:
        handle.remove()
    return out, seen


# ---------------------------------------------------------------------------
# tiny checkpoints
# ---------------------------------------------------------------------------

def _tiny_bert(vocab_size: int, seed: int) -> Any:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return BertModel(cfg).eval()


def _minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True)


PYLATE_CFG = {"model_type": "ColBERT", "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 12,
              "document_length": 20, "do_query_expansion": True, "attend_to_expansion_tokens": False,
              "skiplist_words": list(string.punctuation)}
STANFORD_META = {"query_maxlen": 10, "doc_maxlen": 24, "dim": PROJ, "attend_to_mask_tokens": False,
                 "mask_punctuation": True, "query_token_id": "[unused0]", "doc_token_id": "[unused1]",
                 "similarity": "cosine"}


def build_pylate(out: Path, st_cfg: dict | None = None, bin_weights: bool = False) -> Path:
    """A PyLate save: the encoder at the root (tokenizer with added "[Q] "/"[D] " tokens) + 1_Dense (32 → 16)."""
    from safetensors.torch import save_file

    tok = _minilm_tokenizer()
    tok.add_tokens(["[Q] ", "[D] "])  # what PyLate does before saving
    model = _tiny_bert(len(tok), 1)
    out.mkdir(parents=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 127, "do_lower_case": False}))
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
    dense = out / "1_Dense"
    dense.mkdir()
    (dense / "config.json").write_text(json.dumps({
        "in_features": HIDDEN, "out_features": PROJ, "bias": True,
        "activation_function": "torch.nn.modules.linear.Identity", "use_residual": False}))
    torch.manual_seed(2)
    weights = {"linear.weight": torch.randn(PROJ, HIDDEN), "linear.bias": torch.randn(PROJ) * 0.1}
    if bin_weights:
        torch.save(weights, str(dense / "pytorch_model.bin"))
    else:
        save_file(weights, str(dense / "model.safetensors"))
    (out / "config_sentence_transformers.json").write_text(json.dumps(PYLATE_CFG if st_cfg is None else st_cfg))
    return out


def build_stanford(out: Path, meta: dict | None = STANFORD_META, bin_weights: bool = False) -> Path:
    """A Stanford ColBERT HF save: ``bert.*`` + ``linear.weight`` (16 × 32) in one file, HF_ColBERT config."""
    from safetensors.torch import save_file

    tok = _minilm_tokenizer()
    model = _tiny_bert(len(tok), 3)
    out.mkdir(parents=True)
    state = {"bert." + k: v.contiguous() for k, v in model.state_dict().items()}
    torch.manual_seed(4)
    state["linear.weight"] = torch.randn(PROJ, HIDDEN)
    if bin_weights:
        torch.save(state, str(out / "pytorch_model.bin"))
    else:
        save_file(state, str(out / "model.safetensors"))
    model.config.architectures = ["HF_ColBERT"]
    model.config.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    if meta is not None:
        (out / "artifact.metadata").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def minilm() -> LateInteractionEncoder:
    return LateInteractionEncoder(batch_size=4)


@pytest.fixture(scope="module")
def pylate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pylate(tmp_path_factory.mktemp("pylate") / "model")


@pytest.fixture(scope="module")
def stanford_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_stanford(tmp_path_factory.mktemp("stanford") / "model")


@pytest.fixture(scope="module")
def pylate(pylate_dir: Path) -> LateInteractionEncoder:
    return LateInteractionEncoder(pylate_dir, batch_size=3)


@pytest.fixture(scope="module")
def stanford(stanford_dir: Path) -> LateInteractionEncoder:
    return LateInteractionEncoder(stanford_dir, batch_size=3)


# ---------------------------------------------------------------------------
# plain transformers layout: the packaged MiniLM
# ---------------------------------------------------------------------------

def test_minilm_layout_shapes_and_normalization(minilm: LateInteractionEncoder) -> None:
    assert (minilm.layout, minilm.dim, minilm.query_maxlen, minilm.doc_maxlen) == ("transformers", 384, 32, 180)
    assert minilm.spec.query_marker == minilm.spec.doc_marker == ""  # no markers on a plain model
    assert isinstance(minilm, Encoder) and (minilm.batch_size, minilm.device) == (4, "cpu")
    queries = minilm.encode_query(QUERIES[:3])
    docs = minilm.encode_document(DOCS[:3] + [LONG_DOC])
    for arr in queries + docs:
        assert arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[1] == 384 and arr.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    assert all(q.shape[0] == 32 for q in queries)  # padded with [MASK] to query_maxlen
    # a document keeps [CLS] + its non-punctuation tokens + [SEP]
    tok = minilm.tokenizer
    for text, arr in zip(DOCS[:3], docs):
        pieces = tok(text, add_special_tokens=False)["input_ids"]
        n_punct = sum(tok.convert_ids_to_tokens(p) in string.punctuation for p in pieces)
        assert arr.shape[0] == len(pieces) + 2 - n_punct
    assert docs[3].shape[0] == 180  # truncated to doc_maxlen ([CLS] … [SEP], no punctuation to drop)
    assert minilm.encode_document([]) == [] and minilm.encode_query([]) == []


def test_minilm_query_augmentation(minilm: LateInteractionEncoder) -> None:
    tok = minilm.tokenizer
    batch = minilm.tokenize(["open a file", LONG_QUERY], is_query=True)
    ids, att, score = batch["input_ids"], batch["attention_mask"], batch["score_mask"]
    assert ids.shape == (2, 32)
    real = len(tok("open a file")["input_ids"])  # [CLS] open a file [SEP]
    assert ids[0, real - 1].item() == tok.sep_token_id
    assert (ids[0, real:] == tok.mask_token_id).all()  # expansion with [MASK]
    assert att[0, :real].all() and not att[0, real:].any()  # the encoder does not attend to them …
    assert score.all()  # … but their vectors are kept and score
    # a long query is truncated to query_maxlen and ends with [SEP], no room left for [MASK]
    assert ids[1, -1].item() == tok.sep_token_id and not (ids[1] == tok.mask_token_id).any()
    q = minilm.encode_query(["open a file", LONG_QUERY])
    assert [x.shape[0] for x in q] == [32, 32]
    # the [MASK] rows are contextual outputs (one per position), not copies of one vector
    masks = q[0][real:]
    gram = masks @ masks.T
    assert gram[~np.eye(len(masks), dtype=bool)].max() < 0.9999
    # and they depend on the query: the same positions differ for another query
    other = minilm.encode_query(["close a socket"])[0]
    assert float((masks[-1] * other[-1]).sum()) < 0.9999


def test_minilm_punctuation_skipped(minilm: LateInteractionEncoder) -> None:
    tok = minilm.tokenizer
    batch = minilm.tokenize([PUNCT_DOC], is_query=False)
    kept = [tok.convert_ids_to_tokens(int(i)) for i, s in zip(batch["input_ids"][0], batch["score_mask"][0]) if s]
    assert kept == ["[CLS]", "hello", "world", "really", "[SEP]"]
    assert minilm.encode_document([PUNCT_DOC])[0].shape == (5, 384)
    full = LateInteractionEncoder(skip_punctuation=False, query_expansion=False)
    assert full.spec.skip_punctuation is False
    all_rows = full.encode_document([PUNCT_DOC])[0]
    assert all_rows.shape[0] == batch["input_ids"].shape[1]
    # skipping drops rows; it does not change the forward pass
    keep = np.flatnonzero(batch["score_mask"][0].numpy())
    np.testing.assert_allclose(minilm.encode_document([PUNCT_DOC])[0], all_rows[keep], atol=1e-5)
    # without expansion a query is its real tokens only (and queries never skip punctuation)
    assert full.encode_query(["open a file?"])[0].shape[0] == len(tok("open a file?")["input_ids"])


def test_minilm_deterministic_and_order(minilm: LateInteractionEncoder) -> None:
    texts = DOCS[:5] + [PUNCT_DOC]
    first = minilm.encode_document(texts)
    again = minilm.encode_document(texts)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    perm = [5, 2, 0, 4, 1, 3]
    permuted = minilm.encode_document([texts[i] for i in perm])
    for j, i in enumerate(perm):
        np.testing.assert_allclose(permuted[j], first[i], atol=1e-5)
    single = [minilm.encode_document([t])[0] for t in texts[:3]]  # batch of one: no padding at all
    for a, b in zip(single, first[:3]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    q1 = minilm.encode_query(QUERIES[:4])
    q2 = [minilm.encode_query([q])[0] for q in QUERIES[:4]]
    for a, b in zip(q1, q2):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_minilm_retrieval_sanity(minilm: LateInteractionEncoder) -> None:
    docs = minilm.encode_document(DOCS)
    queries = minilm.encode_query(QUERIES)
    scores = np.array([[maxsim_numpy(q, d) for d in docs] for q in queries])
    assert (scores.argmax(axis=1) == np.arange(len(QUERIES))).all(), scores.round(2)
    assert scores.max() <= 32 + 1e-3  # ≤ one per query vector (unit vectors)


# ---------------------------------------------------------------------------
# PyLate layout
# ---------------------------------------------------------------------------

def test_pylate_spec(pylate_dir: Path) -> None:
    spec = read_checkpoint(pylate_dir)
    assert spec.layout == "pylate" and spec.transformer_dir == pylate_dir
    assert (spec.query_marker, spec.doc_marker, spec.query_maxlen, spec.doc_maxlen) == ("[Q] ", "[D] ", 12, 20)
    assert spec.query_expansion and not spec.attend_to_expansion and spec.skip_punctuation
    assert len(spec.dense) == 1 and (spec.dense[0].in_features, spec.dense[0].out_features) == (HIDDEN, PROJ)
    assert str(pylate_dir / "config_sentence_transformers.json") in spec.sources


def _manual_tokens(enc: LateInteractionEncoder, text: str, is_query: bool) -> tuple[list[int], int, int]:
    """Ids the ColBERT conventions prescribe: [CLS] marker text… [SEP] (+ [MASK]s for queries)."""
    tok = enc.tokenizer
    marker = tok.convert_tokens_to_ids("[Q] " if is_query else "[D] ")
    maxlen = enc.query_maxlen if is_query else enc.doc_maxlen
    body = tok(text, add_special_tokens=False)["input_ids"][:maxlen - 3]
    ids = [tok.cls_token_id, marker, *body, tok.sep_token_id]
    real = len(ids)
    if is_query:
        ids += [tok.mask_token_id] * (maxlen - real)
    return ids, real, marker


def test_pylate_markers_fed_to_model(pylate: LateInteractionEncoder) -> None:
    tok = pylate.tokenizer
    q_marker, d_marker = tok.convert_tokens_to_ids("[Q] "), tok.convert_tokens_to_ids("[D] ")
    assert q_marker != tok.unk_token_id and d_marker != tok.unk_token_id and q_marker != d_marker
    texts = ["open a file", LONG_QUERY]
    out, seen = run_ids(pylate, pylate.encode_query, texts)
    ids = torch.cat([b["input_ids"] for b in seen])
    att = torch.cat([b["attention_mask"] for b in seen])
    assert ids.shape[1] == 12 and [x.shape for x in out] == [(12, PROJ)] * 2
    for text in texts:
        expected, real, _ = _manual_tokens(pylate, text, True)
        row = [r for r in range(ids.shape[0]) if ids[r].tolist() == expected]
        assert row, (text, ids.tolist(), expected)
        assert att[row[0], :real].all() and not att[row[0], real:].any()
    docs, seen = run_ids(pylate, pylate.encode_document, ["hello, world!", LONG_DOC])
    fed = [row.tolist() for b in seen for row in b["input_ids"]]
    assert all(r[1] == d_marker and r[0] == tok.cls_token_id for r in fed)
    assert max(len(r) for r in fed) == 20  # document_length includes the marker
    assert [d.shape for d in docs] == [(5, PROJ), (20, PROJ)]  # [CLS] [D] hello world [SEP]


def test_pylate_projection_matches_manual(pylate: LateInteractionEncoder, pylate_dir: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModel

    w = load_file(str(pylate_dir / "1_Dense" / "model.safetensors"))
    bert = AutoModel.from_pretrained(str(pylate_dir), local_files_only=True).eval()
    for text, is_query in (("how do I open a file?", True), ("The file, opened: twice!", False)):
        ids, real, _ = _manual_tokens(pylate, text, is_query)
        att = [1] * real + [0] * (len(ids) - real)
        with torch.no_grad():
            h = bert(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([att]),
                     token_type_ids=torch.zeros(1, len(ids), dtype=torch.long)).last_hidden_state[0]
            proj = h @ w["linear.weight"].T + w["linear.bias"]
        keep = [i for i, t in enumerate(ids)
                if is_query or pylate.tokenizer.convert_ids_to_tokens(t) not in string.punctuation]
        expected = torch.nn.functional.normalize(proj[keep], dim=-1).numpy()
        got = (pylate.encode_query if is_query else pylate.encode_document)([text])[0]
        assert got.shape == expected.shape == (len(keep), PROJ)
        np.testing.assert_allclose(got, expected, atol=1e-5)
        # and the projection really is applied: the raw 32-d hidden states would not even fit
        assert got.shape[1] != h.shape[1]


def test_pylate_variants(tmp_path: Path, pylate: LateInteractionEncoder) -> None:
    # pytorch_model.bin weights read the same
    enc_bin = LateInteractionEncoder(build_pylate(tmp_path / "bin", bin_weights=True))
    for a, b in zip(enc_bin.encode_document(DOCS[:2]), pylate.encode_document(DOCS[:2])):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # settings come from config_sentence_transformers.json: attend to expansion, own skiplist, no expansion
    cfg = dict(PYLATE_CFG, attend_to_expansion_tokens=True, skiplist_words=["!", "zzqqxxyy"])
    enc = LateInteractionEncoder(build_pylate(tmp_path / "attend", cfg))
    batch = enc.tokenize(["open"], is_query=True)
    assert batch["attention_mask"].all()
    assert enc.encode_document(["a, b!"])[0].shape[0] == 6  # [CLS] [D] a , b [SEP]: only "!" skipped
    # a skiplist word that is not one vocabulary token is ignored, not turned into [UNK] (which would drop
    # every unknown token of every document)
    snowman = enc.tokenize(["\u2603"], is_query=False)
    assert enc.tokenizer.unk_token_id in snowman["input_ids"][0].tolist() and snowman["score_mask"].all()
    assert enc.encode_document(["\u2603"])[0].shape[0] == 4  # [CLS] [D] [UNK] [SEP]
    cfg = dict(PYLATE_CFG, do_query_expansion=False, query_prefix=None, query_length=None)
    enc = LateInteractionEncoder(build_pylate(tmp_path / "noexp", cfg))
    assert (enc.spec.query_marker, enc.query_maxlen, enc.spec.query_expansion) == ("[Q] ", 32, False)
    assert enc.encode_query(["open a file"])[0].shape == (6, PROJ)  # [CLS] [Q] open a file [SEP]
    # explicit arguments win over the checkpoint
    enc = LateInteractionEncoder(tmp_path / "noexp", query_maxlen=8, query_expansion=True, query_marker="")
    assert enc.encode_query(["open a file"])[0].shape == (8, PROJ)
    assert enc.tokenize(["open"], True)["input_ids"][0, 1].item() != enc.tokenizer.convert_tokens_to_ids("[Q] ")


def test_doc_token_pruning(pylate_dir: Path, pylate: LateInteractionEncoder) -> None:
    raw = LateInteractionEncoder(pylate_dir, normalize=False).encode_document(DOCS[:3])
    full = pylate.encode_document(DOCS[:3])
    pruned = LateInteractionEncoder(pylate_dir, doc_token_limit=5).encode_document(DOCS[:3])
    first = LateInteractionEncoder(pylate_dir, doc_token_limit=5, doc_pruning="first").encode_document(DOCS[:3])
    for r, f, p, fst in zip(raw, full, pruned, first):
        norms = np.linalg.norm(r, axis=1)
        keep = np.sort(np.argsort(-norms, kind="stable")[:5])  # highest pre-normalization norms, text order
        assert p.shape == (5, PROJ)
        np.testing.assert_allclose(p, f[keep], atol=1e-6)
        np.testing.assert_allclose(fst, f[:5], atol=1e-6)
        np.testing.assert_allclose(f, r / norms[:, None], atol=1e-5)
    short = LateInteractionEncoder(pylate_dir, doc_token_limit=50).encode_document(DOCS[:1])[0]
    np.testing.assert_allclose(short, full[0], atol=1e-6)  # limit above the length: nothing pruned
    assert LateInteractionEncoder(pylate_dir, doc_token_limit=2).encode_query(["q"])[0].shape[0] == 12


# ---------------------------------------------------------------------------
# Stanford ColBERT layout
# ---------------------------------------------------------------------------

def test_stanford_spec_and_shapes(stanford: LateInteractionEncoder, stanford_dir: Path) -> None:
    spec = read_checkpoint(stanford_dir)
    assert spec.layout == "stanford" and not spec.dense and spec.stanford_dim == PROJ
    assert (spec.query_marker, spec.doc_marker, spec.query_maxlen, spec.doc_maxlen) == ("[unused0]", "[unused1]",
                                                                                        10, 24)
    assert stanford.dim == PROJ
    q = stanford.encode_query(["open a file", LONG_QUERY])
    d = stanford.encode_document(["hello, world!", LONG_DOC])
    assert [x.shape for x in q] == [(10, PROJ)] * 2
    assert [x.shape for x in d] == [(5, PROJ), (24, PROJ)]
    for arr in q + d:
        assert arr.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)


def test_stanford_markers_and_manual(stanford: LateInteractionEncoder, stanford_dir: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoModel

    tok = stanford.tokenizer
    q_id, d_id = tok.convert_tokens_to_ids("[unused0]"), tok.convert_tokens_to_ids("[unused1]")
    _, seen = run_ids(stanford, stanford.encode_query, ["open a file"])
    ids, att = seen[0]["input_ids"][0].tolist(), seen[0]["attention_mask"][0].tolist()
    body = tok("open a file", add_special_tokens=False)["input_ids"]
    real = [tok.cls_token_id, q_id, *body, tok.sep_token_id]
    assert ids == real + [tok.mask_token_id] * (10 - len(real))
    assert att == [1] * len(real) + [0] * (10 - len(real))
    _, seen = run_ids(stanford, stanford.encode_document, ["the file, twice!"])
    dids = seen[0]["input_ids"][0].tolist()
    assert dids[:2] == [tok.cls_token_id, d_id] and dids[-1] == tok.sep_token_id

    with safe_open(str(stanford_dir / "model.safetensors"), framework="pt") as f:
        linear = f.get_tensor("linear.weight")
    bert = AutoModel.from_pretrained(str(stanford_dir), local_files_only=True).eval()
    with torch.no_grad():
        hq = bert(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([att])).last_hidden_state[0]
        hd = bert(input_ids=torch.tensor([dids])).last_hidden_state[0]
    exp_q = torch.nn.functional.normalize(hq @ linear.T, dim=-1).numpy()
    keep = [i for i, t in enumerate(dids) if tok.convert_ids_to_tokens(t) not in string.punctuation]
    exp_d = torch.nn.functional.normalize(hd @ linear.T, dim=-1)[keep].numpy()
    np.testing.assert_allclose(stanford.encode_query(["open a file"])[0], exp_q, atol=1e-5)
    np.testing.assert_allclose(stanford.encode_document(["the file, twice!"])[0], exp_d, atol=1e-5)


def test_stanford_variants(tmp_path: Path, stanford_dir: Path) -> None:
    # no artifact.metadata: ColBERTConfig defaults (markers, query_maxlen 32, doc_maxlen 220 capped by positions)
    enc = LateInteractionEncoder(build_stanford(tmp_path / "nometa", meta=None))
    assert (enc.spec.query_marker, enc.query_maxlen, enc.doc_maxlen) == ("[unused0]", 32, 128)
    assert enc.encode_query(["a"])[0].shape == (32, PROJ)
    # attend_to_mask_tokens and mask_punctuation from the metadata
    meta = dict(STANFORD_META, attend_to_mask_tokens=True, mask_punctuation=False)
    enc = LateInteractionEncoder(build_stanford(tmp_path / "attend", meta))
    assert enc.tokenize(["open"], True)["attention_mask"].all()
    assert enc.encode_document(["a, b!"])[0].shape[0] == 7  # nothing skipped
    # pytorch_model.bin (older Stanford saves) reads the same
    ref = LateInteractionEncoder(stanford_dir).encode_document(DOCS[:2])
    from_bin = LateInteractionEncoder(build_stanford(tmp_path / "bin", bin_weights=True)).encode_document(DOCS[:2])
    for a, b in zip(from_bin, ref):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # float16/bfloat16 weights still give float32 outputs close to float32
    half = LateInteractionEncoder(stanford_dir, dtype="bfloat16").encode_document(DOCS[:2])
    for a, b in zip(half, ref):
        assert a.dtype == np.float32 and a.shape == b.shape
        assert float((a * b).sum(axis=1).min()) > 0.97


# ---------------------------------------------------------------------------
# an independent reader of both formats: sentence-transformers v6 MultiVectorEncoder
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["pylate", "stanford"])
def test_matches_sentence_transformers_multivector(layout: str, request: pytest.FixtureRequest,
                                                   tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    if not hasattr(st, "MultiVectorEncoder"):
        pytest.skip("sentence-transformers without MultiVectorEncoder (< 6)")
    folder: Path = request.getfixturevalue(f"{layout}_dir")
    ours: LateInteractionEncoder = request.getfixturevalue(layout)
    ref = st.MultiVectorEncoder(str(folder), device="cpu", local_files_only=True)
    queries, docs = QUERIES[:2] + [LONG_QUERY], DOCS[:2] + [PUNCT_DOC, LONG_DOC]

    def compare(enc: LateInteractionEncoder) -> None:
        for mine, theirs in ((enc.encode_query(queries), ref.encode_query(queries, convert_to_numpy=True,
                                                                          normalize_embeddings=True)),
                             (enc.encode_document(docs), ref.encode_document(docs, convert_to_numpy=True,
                                                                             normalize_embeddings=True))):
            for a, b in zip(mine, theirs):
                b = np.asarray(b)
                assert a.shape == b.shape
                np.testing.assert_allclose(a, b, atol=1e-5)

    compare(ours)
    # and its own (v6 native) save format: prompts as markers, lengths on the Transformer, MultiVectorMask
    ref.save(str(tmp_path / "native"))
    native = LateInteractionEncoder(tmp_path / "native")
    assert native.layout == "pylate" and native.spec.query_maxlen == ours.spec.query_maxlen
    compare(native)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def test_errors(tmp_path: Path, pylate_dir: Path, minilm: LateInteractionEncoder) -> None:
    with pytest.raises(FileNotFoundError, match="local directory"):
        LateInteractionEncoder(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown checkpoint layout"):
        LateInteractionEncoder(tmp_path / "junk")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_X", "type": "my_package.Reranker"}]))
    with pytest.raises(NotImplementedError, match="my_package.Reranker"):
        read_checkpoint(odd)
    (odd / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "1_X", "type": "x.Normalize"}]))
    with pytest.raises(ValueError, match="unknown checkpoint layout"):
        read_checkpoint(odd)
    with pytest.raises(ValueError, match="invalid device"):
        LateInteractionEncoder(pylate_dir, device="not-a-device")
    with pytest.raises(ValueError, match="only cpu, cuda"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            LateInteractionEncoder(pylate_dir, device="cuda")
    else:
        with pytest.raises(RuntimeError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(ValueError, match="not a token"):
        LateInteractionEncoder(pylate_dir, query_marker="query: ")
    with pytest.raises(ValueError, match="batch_size"):
        LateInteractionEncoder(pylate_dir, batch_size=0)
    with pytest.raises(ValueError, match="doc_pruning"):
        LateInteractionEncoder(pylate_dir, doc_pruning="random")
    with pytest.raises(ValueError, match="dtype"):
        LateInteractionEncoder(pylate_dir, dtype="int8")
    with pytest.raises(TypeError, match="single string"):
        minilm.encode_query("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        minilm.encode_document(["ok", 3])  # type: ignore[list-item]


def test_checkpoint_inconsistencies_are_errors(tmp_path: Path) -> None:
    bad = build_pylate(tmp_path / "bad_dense")
    cfg = json.loads((bad / "1_Dense" / "config.json").read_text())
    (bad / "1_Dense" / "config.json").write_text(json.dumps(dict(cfg, in_features=64)))
    with pytest.raises(ValueError, match="in_features=64"):
        LateInteractionEncoder(bad)
    (bad / "1_Dense" / "config.json").write_text(json.dumps(dict(cfg, activation_function="evil.module.Act")))
    with pytest.raises(NotImplementedError, match="evil.module.Act"):
        LateInteractionEncoder(bad)
    st = build_stanford(tmp_path / "bad_meta", dict(STANFORD_META, dim=128))
    with pytest.raises(ValueError, match="dim=128"):
        LateInteractionEncoder(st)
    sentence_dense = build_pylate(tmp_path / "sentence_dense")
    (sentence_dense / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "1_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(NotImplementedError, match="single-vector"):
        read_checkpoint(sentence_dense)


def test_fingerprint(pylate: LateInteractionEncoder, pylate_dir: Path) -> None:
    fp = pylate.fingerprint()
    assert len(fp) == 16 and fp == pylate.fingerprint()
    assert LateInteractionEncoder(pylate_dir, doc_token_limit=4).fingerprint() != fp
