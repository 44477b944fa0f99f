"""Sparse encoders: SPLADE against a direct computation, BM25 against reference BM25, statistics and
``sparsevec`` round trips in a real database.

The masked LM is a tiny randomly initialised BERT built here (over the packaged MiniLM's vocabulary), so the
tests need no downloaded checkpoint; its MLM bias is shifted negative so that, like a trained SPLADE model,
only a few hundred vocabulary entries get a positive weight.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import psycopg
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pgvector.psycopg import register_vector  # noqa: E402

from pgsieve.encoders.bm25 import (  # noqa: E402
    BM25Encoder,
    CorpusStats,
    ensure_stats_tables,
    idf,
    load_stats,
    stats_table_names,
    update_stats,
)
from pgsieve.encoders.dense import default_model_path  # noqa: E402
from pgsieve.encoders.sparse import (  # noqa: E402
    MAX_NNZ,
    SparseEncoder,
    SparseQueryEncoder,
    SparseVector,
    check_sparse,
    from_arrays,
    from_dict,
    sparse_dot,
    to_arrays,
    to_dict,
    top_k,
)
from pgsieve.encoders.splade import InferenceFreeQueryEncoder, SpladeEncoder, splade_pool  # noqa: E402

SENTENCES = [
    "The open() system call opens the file specified by pathname.",
    "If the specified file does not exist, it may optionally be created by open().",
    "The return value of open() is a file descriptor, a small, nonnegative integer.",
    "close() closes a file descriptor, so that it no longer refers to any file and may be reused.",
    "read() attempts to read up to count bytes from file descriptor fd into the buffer starting at buf.",
    "write() writes up to count bytes from the buffer starting at buf to the file referred to by fd.",
    "The fork() system call creates a new process by duplicating the calling process.",
    "Signals are a limited form of inter-process communication; kill sends a signal to a process.",
]
QUERIES = ["open a file", "file descriptor read write", "create new process", "signal", "bytes bytes buffer"]
MLM_BIAS = -0.35


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    return default_model_path()


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A tiny random BERT masked LM over MiniLM's vocabulary, saved with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(str(minilm_dir), local_files_only=True)
    torch.manual_seed(1234)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    model = BertForMaskedLM(cfg)
    with torch.no_grad():
        model.cls.predictions.bias.fill_(MLM_BIAS)
    out = tmp_path_factory.mktemp("tiny_mlm")
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def splade(mlm_dir: Path) -> SpladeEncoder:
    return SpladeEncoder(mlm_dir, batch_size=3)


@pytest.fixture(scope="module")
def reference_mlm(mlm_dir: Path) -> tuple:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(mlm_dir), local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(str(mlm_dir), local_files_only=True).eval()
    return tok, model


@pytest.fixture(scope="module")
def bm25() -> BM25Encoder:
    return BM25Encoder()


def reference_splade(tok, model, text: str, max_length: int = 256) -> np.ndarray:
    """SPLADE of one unpadded text, step by step: logits → log1p(relu) → masked max over tokens."""
    batch = tok([text], return_tensors="pt", truncation=True, max_length=max_length)
    with torch.no_grad():
        logits = model(**batch).logits[0]  # (tokens, vocab)
    w = torch.log1p(torch.relu(logits)) * batch["attention_mask"][0].unsqueeze(-1)
    return w.max(dim=0).values.numpy()


def reference_bm25(docs: list[list[int]], query: list[int], k1: float, b: float) -> np.ndarray:
    """Textbook BM25 (Lucene idf), a loop per document and query token."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df = Counter(t for d in docs for t in set(d))
    scores = np.zeros(n)
    for j, d in enumerate(docs):
        tf = Counter(d)
        for t in query:
            if tf[t]:
                f = tf[t]
                scores[j] += math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * f * (k1 + 1) / (
                    f + k1 * (1 - b + b * len(d) / avgdl))
    return scores


def fitted(texts: list[str], **kw) -> tuple[BM25Encoder, list[SparseVector]]:
    enc = BM25Encoder(**kw)
    enc.fit(texts)
    return enc, enc.encode_documents(texts)


# ---------------------------------------------------------------------------
# SparseVector helpers
# ---------------------------------------------------------------------------

def test_from_arrays_sorts_drops_zeros_and_rounds_to_float32() -> None:
    v = from_arrays([7, 2, 5, 9], [0.5, 1.25, 0.0, 1e-50], 10)
    assert v.indices() == [2, 7] and v.values() == [1.25, 0.5] and v.dimensions() == 10
    third = from_arrays([0], [1 / 3], 3)
    assert third.values()[0] == float(np.float32(1 / 3))
    idx, val = to_arrays(v)
    assert idx.dtype == np.int64 and val.dtype == np.float32
    assert to_dict(v) == {2: 1.25, 7: 0.5}
    assert from_dict({"7": 0.5, 2: 1.25}, 10) == v  # BGE-M3 style string keys
    assert from_arrays([], [], 5).indices() == []
    assert sparse_dot(v, from_dict({7: 2.0, 3: 1.0}, 10)) == pytest.approx(1.0)


@pytest.mark.parametrize("indices, values, dim, kw, message", [
    (range(MAX_NNZ + 1), np.ones(MAX_NNZ + 1), 10**6, {}, "16000"),
    ([1, 2], [1.0, float("nan")], 10, {}, "non-finite"),
    ([1], [float("inf")], 10, {}, "non-finite"),
    ([1], [1e39], 10, {}, "float32"),
    ([1], [-0.5], 10, {"nonnegative": True}, "negative"),
    ([10], [1.0], 10, {}, "outside"),
    ([3, 3], [1.0, 2.0], 10, {}, "duplicate"),
    ([1], [1.0], 10**9 + 1, {}, "dim"),
    ([1, 2], [1.0], 10, {}, "equal length"),
])
def test_from_arrays_rejects(indices, values, dim, kw, message) -> None:
    with pytest.raises(ValueError, match=message):
        from_arrays(np.asarray(list(indices)), values, dim, **kw)


def test_nnz_limit_is_inclusive_and_never_truncates() -> None:
    v = from_arrays(np.arange(MAX_NNZ), np.ones(MAX_NNZ), 10**6)
    assert len(v.indices()) == MAX_NNZ
    assert check_sparse(v) is v
    with pytest.raises(ValueError, match="NaN|non-finite"):
        check_sparse(SparseVector({1: float("nan")}, 5))
    with pytest.raises(ValueError, match="negative"):
        check_sparse(SparseVector({1: -1.0}, 5), nonnegative=True)


def test_top_k_is_deterministic() -> None:
    idx, val = top_k(np.array([5, 1, 3, 8]), np.array([0.5, 0.9, 0.5, 0.1]), 2)
    assert idx.tolist() == [1, 3] and val.tolist() == [0.9, 0.5]


# ---------------------------------------------------------------------------
# SPLADE
# ---------------------------------------------------------------------------

def test_splade_matches_reference(splade: SpladeEncoder, reference_mlm: tuple) -> None:
    tok, model = reference_mlm
    assert isinstance(splade, SparseEncoder)
    assert splade.dim == len(tok) == 30522
    vecs = splade.encode_documents(SENTENCES)
    assert len(vecs) == len(SENTENCES)
    for text, vec in zip(SENTENCES, vecs):
        ref = reference_splade(tok, model, text)
        idx, val = to_arrays(vec)
        assert vec.dimensions() == 30522
        assert (np.diff(idx) > 0).all() and (val > 0).all()
        assert 20 < idx.size < 5000  # sparse thanks to the negative MLM bias
        np.testing.assert_allclose(vec.to_numpy(), ref, rtol=0, atol=1e-6)
        assert set(idx.tolist()) == set(np.flatnonzero(ref).tolist())


def test_splade_matches_sentence_transformers(splade: SpladeEncoder, mlm_dir: Path) -> None:
    """An independent implementation: sentence-transformers' SparseEncoder (MLMTransformer + SpladePooling max)."""
    st = pytest.importorskip("sentence_transformers")
    model = st.SparseEncoder(str(mlm_dir), device="cpu")
    expected = model.encode_document(SENTENCES[:4], convert_to_tensor=True)
    for i, vec in enumerate(splade.encode_documents(SENTENCES[:4])):
        np.testing.assert_allclose(vec.to_numpy(), expected[i].to_dense().numpy(), rtol=0, atol=1e-6)


def test_splade_batch_order_restored(splade: SpladeEncoder) -> None:
    texts = [SENTENCES[3], "short", SENTENCES[0] * 2, "a b", SENTENCES[6]]
    batched = splade.encode_documents(texts)
    for text, vec in zip(texts, batched):
        alone = splade.encode_documents([text])[0]
        assert alone.indices() == vec.indices()
        np.testing.assert_allclose(alone.values(), vec.values(), atol=1e-6)
    assert splade.encode_documents([]) == []


def test_splade_pool_masks_padding() -> None:
    logits = torch.tensor([[[1.0, -1.0], [5.0, 3.0]]])
    pooled = splade_pool(logits, torch.tensor([[1, 0]]))
    assert pooled.tolist() == [[pytest.approx(math.log(2.0)), 0.0]]


def test_splade_queries_use_query_max_length(mlm_dir: Path, reference_mlm: tuple) -> None:
    tok, model = reference_mlm
    enc = SpladeEncoder(mlm_dir, query_max_length=6, max_length=64)
    q = SENTENCES[4]
    np.testing.assert_allclose(enc.encode_queries([q])[0].to_numpy(), reference_splade(tok, model, q, 6), atol=1e-6)
    np.testing.assert_allclose(enc.encode_documents([q])[0].to_numpy(), reference_splade(tok, model, q, 64),
                               atol=1e-6)


def test_splade_dense_output_raises_unless_pruned(mlm_dir: Path, reference_mlm: tuple) -> None:
    tok, model = reference_mlm
    dense = SpladeEncoder(mlm_dir)
    with torch.no_grad():
        dense._model.cls.predictions.bias.fill_(1.0)  # every vocabulary entry positive: 30522 non-zeros
    with pytest.raises(ValueError, match="16000"):
        dense.encode_documents(["too dense"])
    dense.top_k = 100
    vec = dense.encode_documents(["too dense"])[0]
    assert len(vec.indices()) == 100
    full = dense._forward(["too dense"], 32)[0].numpy()
    assert min(vec.values()) >= np.sort(full)[-100] - 1e-7


def test_splade_requires_local_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="local"):
        SpladeEncoder(tmp_path / "missing")


# ---------------------------------------------------------------------------
# inference-free queries
# ---------------------------------------------------------------------------

def test_inference_free_default_weights(minilm_dir: Path) -> None:
    enc = InferenceFreeQueryEncoder(minilm_dir)
    assert isinstance(enc, SparseQueryEncoder) and enc.dim == 30522
    text = "open the file, open it"
    ids = enc._tokenizer(text, add_special_tokens=False)["input_ids"]
    vec = enc.encode_queries([text])[0]
    assert vec.indices() == sorted(set(ids)) and set(vec.values()) == {1.0}
    counted = InferenceFreeQueryEncoder(minilm_dir, count_duplicates=True).encode_queries([text])[0]
    open_id = enc._tokenizer.convert_tokens_to_ids("open")
    assert to_dict(counted)[open_id] == 2.0
    assert enc.encode_queries(["[CLS] [SEP]"])[0].indices() == []  # special tokens never weigh


def test_inference_free_weight_tables(minilm_dir: Path, tmp_path: Path) -> None:
    tok = InferenceFreeQueryEncoder(minilm_dir)._tokenizer
    open_id, file_id = tok.convert_tokens_to_ids(["open", "file"])
    by_name = InferenceFreeQueryEncoder(minilm_dir, {"open": 3.5, str(file_id): 0.0}, default_weight=0.5)
    assert to_dict(by_name.encode_queries(["open file now"])[0]) == {
        open_id: 3.5, tok.convert_tokens_to_ids("now"): 0.5}  # zero weight drops "file"
    (tmp_path / "idf.json").write_text(json.dumps({"open": 2.0, "file": 4.0}))
    from_json = InferenceFreeQueryEncoder(minilm_dir, tmp_path / "idf.json", default_weight=0.0)
    assert to_dict(from_json.encode_queries(["open file now"])[0]) == {open_id: 2.0, file_id: 4.0}
    arr = np.zeros(len(tok), dtype=np.float32)
    arr[[open_id, file_id]] = [1.5, 0.25]
    np.save(tmp_path / "w.npy", arr)
    from_npy = InferenceFreeQueryEncoder(minilm_dir, tmp_path / "w.npy")
    assert from_npy.dim == len(tok)
    assert to_dict(from_npy.encode_queries(["open file now"])[0]) == {open_id: 1.5, file_id: 0.25}
    with pytest.raises(ValueError, match="vocabulary"):
        InferenceFreeQueryEncoder(minilm_dir, {"no-such-token-xyz": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        InferenceFreeQueryEncoder(minilm_dir, {"open": -1.0})


def test_inference_free_scores_splade_documents(splade: SpladeEncoder, minilm_dir: Path) -> None:
    """Query·doc against SPLADE documents = sum of the document's weights on the query's tokens."""
    enc = InferenceFreeQueryEncoder(minilm_dir, dim=splade.dim)
    doc = splade.encode_documents([SENTENCES[0]])[0]
    q = enc.encode_queries(["open file pathname"])[0]
    dense = doc.to_numpy()
    assert sparse_dot(q, doc) == pytest.approx(float(dense[q.indices()].astype(np.float64).sum()), abs=1e-6)


# ---------------------------------------------------------------------------
# BM25
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("k1, b", [(1.2, 0.75), (0.9, 0.4), (1.5, 1.0), (2.0, 0.0)])
def test_bm25_dot_equals_reference(k1: float, b: float) -> None:
    enc, docs = fitted(SENTENCES, k1=k1, b=b)
    tokens = enc.tokenize(SENTENCES)
    qvecs = enc.encode_queries(QUERIES)
    for query, qvec in zip(QUERIES, qvecs):
        ref = reference_bm25(tokens, enc.tokenize([query])[0], k1, b)
        got = np.array([sparse_dot(qvec, d) for d in docs])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        assert ref.max() > 0


def test_bm25_matches_rank_bm25() -> None:
    rank_bm25 = pytest.importorskip("rank_bm25")

    class LuceneOkapi(rank_bm25.BM25Okapi):  # rank_bm25's scoring loop with Lucene's (never negative) idf
        def _calc_idf(self, nd):
            for word, freq in nd.items():
                self.idf[word] = math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))

    enc, docs = fitted(SENTENCES, k1=1.2, b=0.75)
    ref = LuceneOkapi(enc.tokenize(SENTENCES), k1=1.2, b=0.75)
    for query, qvec in zip(QUERIES, enc.encode_queries(QUERIES)):
        expected = ref.get_scores(enc.tokenize([query])[0])
        np.testing.assert_allclose([sparse_dot(qvec, d) for d in docs], expected, rtol=1e-5, atol=1e-6)


def test_bm25_on_manpages_ranks_like_reference() -> None:
    from pgsieve.corpus import known_item_queries, load_manpages

    try:
        passages = load_manpages(max_pages=30)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    texts = [p.text for p in passages]
    enc, docs = fitted(texts)
    tokens = enc.tokenize(texts)
    for q in known_item_queries(passages)[:10]:
        qvec = enc.encode_queries([q.text])[0]
        ref = reference_bm25(tokens, enc.tokenize([q.text])[0], enc.k1, enc.b)
        got = np.array([sparse_dot(qvec, d) for d in docs])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_bm25_weights_edge_cases(bm25: BM25Encoder) -> None:
    assert idf(10, 10) == pytest.approx(math.log(1 + 0.5 / 10.5)) and idf(10, 10) > 0  # in every doc
    assert idf(10, 0) == pytest.approx(math.log(1 + 10.5 / 0.5))
    assert idf(0, 0) == pytest.approx(math.log(2))
    stats = CorpusStats(N=4, total_len=40, df={})
    enc = BM25Encoder(stats=stats)
    ids = enc.tokenize(["alpha beta beta gamma"])[0]
    assert len(ids) == 4
    # a document of exactly avgdl length: w = tf (k1+1) / (tf + k1)
    w = to_dict(enc.encode_token_ids([ids * 2 + ids[:2]], avgdl=10.0)[0])
    alpha, beta = ids[0], ids[1]
    assert w[alpha] == pytest.approx(3 * 2.2 / (3 + 1.2), rel=1e-6)
    assert w[beta] == pytest.approx(5 * 2.2 / (5 + 1.2), rel=1e-6)
    # saturation: weight -> k1 + 1, never above
    assert to_dict(enc.encode_token_ids([[alpha] * 1000], avgdl=1000.0)[0])[alpha] < 2.2
    # b = 0: no length normalization; k1 = 0: binary weights
    assert to_dict(BM25Encoder(b=0.0, stats=stats).encode_token_ids([[alpha] * 50], avgdl=1.0)[0])[alpha] == \
        pytest.approx(50 * 2.2 / 51.2, rel=1e-6)
    assert set(to_dict(BM25Encoder(k1=0.0, stats=stats).encode_token_ids([ids])[0]).values()) == {1.0}
    # duplicate query terms multiply idf
    q = to_dict(enc.encode_queries(["beta beta alpha"])[0])
    assert q[beta] == pytest.approx(2 * q[alpha], rel=1e-6)
    # empty and punctuation-only texts: no terms, still valid vectors
    assert [v.indices() for v in enc.encode_documents(["", "... , -- |"])] == [[], []]
    assert bm25.tokenize(["a, b."]) == [bm25.tokenize(["a b"])[0]]
    assert len(BM25Encoder(drop_punctuation=False).tokenize(["a, b."])[0]) == 4


def test_bm25_errors(bm25: BM25Encoder) -> None:
    with pytest.raises(ValueError, match="avgdl"):
        BM25Encoder().encode_documents(["no statistics yet"])
    with pytest.raises(TypeError, match="single string"):
        bm25.encode_queries("a string")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BM25Encoder(b=1.5)
    with pytest.raises(ValueError):
        BM25Encoder(k1=-1)
    with pytest.raises(FileNotFoundError):
        BM25Encoder(tokenizer_path="/nonexistent/tokenizer")
    enc = BM25Encoder(drop_punctuation=False, stats=CorpusStats(N=1, total_len=100))
    with pytest.raises(ValueError, match="16000"):
        enc.encode_token_ids([list(range(2000, 2000 + MAX_NNZ + 10))])


def test_corpus_stats_update_and_merge(bm25: BM25Encoder) -> None:
    tokens = bm25.tokenize(SENTENCES)
    whole = CorpusStats.from_token_ids(tokens)
    halves = CorpusStats.from_token_ids(tokens[:3]).merge(CorpusStats.from_token_ids(tokens[3:]))
    assert whole == halves
    assert whole.N == len(SENTENCES) and whole.total_len == sum(map(len, tokens))
    assert whole.avgdl == pytest.approx(whole.total_len / whole.N)
    file_id = bm25.tokenizer.convert_tokens_to_ids("file")
    assert whole.df[file_id] == sum(file_id in t for t in tokens)


# ---------------------------------------------------------------------------
# database
# ---------------------------------------------------------------------------

def test_stats_persisted_and_updated(db: psycopg.Connection, bm25: BM25Encoder) -> None:
    tokens = bm25.tokenize(SENTENCES)
    ensure_stats_tables(db, "docs")
    ensure_stats_tables(db, "docs")  # idempotent
    assert load_stats(db, "docs") == CorpusStats()
    update_stats(db, "docs", tokens[:5])
    update_stats(db, "docs", CorpusStats.from_token_ids(tokens[5:]))
    assert load_stats(db, "docs") == CorpusStats.from_token_ids(tokens)
    with pytest.raises(ValueError, match="identifier"):
        stats_table_names("bad name; drop table x")


def test_stats_update_is_transactional(db: psycopg.Connection, bm25: BM25Encoder) -> None:
    ensure_stats_tables(db, "tx")
    before = load_stats(db, "tx")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with db.transaction():  # ingest: rows + statistics in one transaction, rolled back together
            update_stats(db, "tx", bm25.tokenize(SENTENCES))
            raise Boom
    assert load_stats(db, "tx") == before


def test_stats_concurrent_upserts_add_up(db_url: str, bm25: BM25Encoder) -> None:
    tokens = bm25.tokenize(SENTENCES)
    with psycopg.connect(db_url, autocommit=True) as setup:
        ensure_stats_tables(setup, "conc")
    first = psycopg.connect(db_url)
    second = psycopg.connect(db_url)
    try:
        first.execute("SELECT 1")  # open a transaction, so update_stats runs (and locks) inside it
        update_stats(first, "conc", tokens)  # uncommitted: holds the corpus and term row locks
        errors: list[BaseException] = []

        def other() -> None:
            try:
                update_stats(second, "conc", tokens[::-1])  # waits on the corpus row, then adds
                second.commit()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join(0.5)
        assert t.is_alive()  # blocked behind the first transaction, not failed
        first.commit()
        t.join(10)
        assert not t.is_alive() and not errors
    finally:
        first.close()
        second.close()
    with psycopg.connect(db_url, autocommit=True) as check:
        expected = CorpusStats.from_token_ids(tokens).merge(CorpusStats.from_token_ids(tokens))
        assert load_stats(check, "conc") == expected


def test_sparsevec_round_trip_and_bm25_order(db: psycopg.Connection) -> None:
    register_vector(db)
    ensure_stats_tables(db, "rank")
    enc = BM25Encoder()
    tokens = enc.tokenize(SENTENCES)
    update_stats(db, "rank", tokens)  # ingest: statistics first, then avgdl for the batch
    enc.stats = load_stats(db, "rank")
    docs = enc.encode_token_ids(tokens)
    db.execute(f"CREATE TABLE rank_docs (id int PRIMARY KEY, emb sparsevec({enc.dim}))")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO rank_docs VALUES (%s, %s)", list(enumerate(docs[:4])))
        with cur.copy("COPY rank_docs (id, emb) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "sparsevec"])
            for i, d in enumerate(docs[4:], start=4):
                copy.write_row((i, d))
    with db.cursor(binary=True) as cur:  # binary: float32 values come back bit for bit
        back = dict(cur.execute("SELECT id, emb FROM rank_docs").fetchall())
    assert [back[i] for i in range(len(docs))] == docs
    text_back = dict(db.execute("SELECT id, emb FROM rank_docs").fetchall())  # text: shortest float32 repr
    for i, d in enumerate(docs):
        assert text_back[i].indices() == d.indices()
        assert np.array_equal(np.float32(text_back[i].values()), np.float32(d.values()))
    empty = from_arrays([], [], enc.dim)
    assert db.execute("SELECT %s::sparsevec", (empty,)).fetchone()[0] == empty

    for query in QUERIES:
        q = enc.encode_queries([query])[0]
        ref = reference_bm25(tokens, enc.tokenize([query])[0], enc.k1, enc.b)
        rows = db.execute("SELECT id, -(emb <#> %s) FROM rank_docs ORDER BY emb <#> %s, id", (q, q)).fetchall()
        ids = [r[0] for r in rows]
        scores = np.array([r[1] for r in rows])
        np.testing.assert_allclose(scores, ref[ids], rtol=1e-5, atol=1e-5)
        assert (np.diff(scores) <= 1e-6).all()
        np.testing.assert_allclose(scores, np.sort(ref)[::-1], rtol=1e-5, atol=1e-5)
