"""DenseEncoder: same embeddings as sentence-transformers, order kept, inputs checked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pgsieve.encoders import DenseEncoder, Encoder, default_model_path  # noqa: E402
from pgsieve.encoders.dense import read_pooling_config  # noqa: E402

SENTENCES = [
    "The open() system call opens the file specified by pathname.",
    "how do I create a directory",
    "   leading and trailing whitespace   ",
    "kill - send signal to a process",
    "A much longer passage that goes on. " * 60,  # longer than 256 tokens: truncated
    "x",
]


@pytest.fixture(scope="module")
def encoder() -> DenseEncoder:
    return DenseEncoder(batch_size=4)


def test_matches_sentence_transformers(encoder: DenseEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    ref = model.encode(SENTENCES, convert_to_numpy=True)
    ours = encoder.encode_documents(SENTENCES)
    assert ours.dtype == np.float32 and ours.shape == (len(SENTENCES), encoder.dim) == ref.shape
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.9999, cos
    # and a query embedding too (no prompts on MiniLM, so the same function)
    q = encoder.encode_queries(SENTENCES[1:2])
    assert float((q[0] * ref[1]).sum() / np.linalg.norm(ref[1])) > 0.9999


def test_order_restored_and_batch_independent(encoder: DenseEncoder) -> None:
    full = encoder.encode_documents(SENTENCES)
    perm = [5, 2, 0, 4, 1, 3]
    permuted = encoder.encode_documents([SENTENCES[i] for i in perm])
    np.testing.assert_allclose(permuted, full[perm], atol=1e-5)
    single = np.stack([encoder.encode_documents([s])[0] for s in SENTENCES[:3]])
    np.testing.assert_allclose(single, full[:3], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    # different texts give different vectors (the test could otherwise pass on constants)
    assert float(full[0] @ full[1]) < 0.9


def test_protocol_and_properties(encoder: DenseEncoder) -> None:
    assert isinstance(encoder, Encoder)
    assert (encoder.dim, encoder.batch_size, encoder.device) == (384, 4, "cpu")
    assert encoder.pooling.mode == "mean" and encoder.pooling.normalize
    assert encoder.max_length == 256
    assert len(encoder.fingerprint()) == 16 and encoder.fingerprint() == encoder.fingerprint()


def test_input_validation(encoder: DenseEncoder) -> None:
    assert encoder.encode_documents([]).shape == (0, 384)
    with pytest.raises(TypeError, match="single string"):
        encoder.encode_queries("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encoder.encode_documents(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(FileNotFoundError, match="local directory"):
        DenseEncoder("/nonexistent/model")
    with pytest.raises(ValueError, match="batch_size"):
        DenseEncoder(batch_size=0)


def test_plain_transformers_folder_defaults_to_mean_and_l2(tmp_path: Path, encoder: DenseEncoder) -> None:
    src = default_model_path()
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            (plain / name).symlink_to(src / name)
    cfg = read_pooling_config(plain)
    assert (cfg.mode, cfg.normalize, cfg.max_seq_length) == ("mean", True, None)
    enc = DenseEncoder(plain, normalize=None, max_length=256)
    np.testing.assert_allclose(enc.encode_documents(SENTENCES[:3]),
                               encoder.encode_documents(SENTENCES[:3]), atol=1e-5)
    raw = DenseEncoder(plain, normalize=False).encode_documents(SENTENCES[:2])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)


def _st_folder(tmp_path: Path, modules: list[dict], pooling: dict | None) -> Path:
    folder = tmp_path / "st"
    folder.mkdir()
    (folder / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def test_pooling_config_variants(tmp_path: Path) -> None:
    tr = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
    pool = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    cfg = read_pooling_config(_st_folder(tmp_path, [tr, pool], {"pooling_mode_cls_token": True}))
    assert (cfg.mode, cfg.normalize) == ("cls", False)  # no Normalize module
    shutil.rmtree(tmp_path / "st")
    cfg = read_pooling_config(_st_folder(tmp_path, [tr, pool], {"pooling_mode": "max"}))
    assert cfg.mode == "max"
    shutil.rmtree(tmp_path / "st")
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    with pytest.raises(NotImplementedError, match="Dense"):
        read_pooling_config(_st_folder(tmp_path, [tr, pool, dense], {"pooling_mode_mean_tokens": True}))
    shutil.rmtree(tmp_path / "st")
    with pytest.raises(NotImplementedError, match="weightedmean"):
        read_pooling_config(_st_folder(tmp_path, [tr, pool], {"pooling_mode_weightedmean_tokens": True}))
