"""BM25 as a sparse dot product over a tokenizer's vocabulary, with corpus statistics kept in the database.

The score Σ_t idf(t)·qtf(t)·tf(t,d)(k1+1) / (tf(t,d) + k1(1 − b + b|d|/avgdl)) is split into

* a **document** vector: w_d(t) = tf·(k1+1) / (tf + k1·(1 − b + b·|d|/avgdl)) (saturated tf with length
  normalization), stored in a ``sparsevec`` column, and
* a **query** vector: w_q(t) = idf(t)·qtf(t) with idf(t) = ln(1 + (N − df + 0.5)/(df + 0.5)) (Lucene's form,
  never negative), computed at query time from statistics maintained on ingest,

so that ``query · document`` is exactly BM25 and ``ORDER BY emb <#> q`` ranks by it.  idf goes on the query side
(not the document) because the Seismic index ranks blocks by document weight: the weight that varies per term
belongs to the query (see reference/algorithms.md §5.3).

**avgdl drift.**  Document weights depend on avgdl *at encoding time*.  Documents encoded earlier keep their
weights after later ingests move avgdl — like Elasticsearch/Lucene segments, which keep the norms they were
written with.  The error is small while the corpus grows by similar documents; after heavy churn re-encode
(``BM25Encoder.reencode``) and rewrite the column (or rebuild the index).  idf, in contrast, is always current:
:func:`load_stats` reads the counts of committed ingests.

Tokens are vocabulary ids of a Hugging Face tokenizer loaded from a local folder (default: the packaged
all-MiniLM-L6-v2 WordPiece vocabulary), so BM25 and SPLADE vectors share one index space.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from psycopg import Connection, sql

from .base import check_texts
from .sparse import SparseVector, from_arrays

__all__ = [
    "BM25Encoder",
    "CorpusStats",
    "idf",
    "ensure_stats_tables",
    "drop_stats",
    "load_stats",
    "update_stats",
    "stats_table_names",
    "load_tokenizer",
    "punctuation_mask",
]

TokenIds = Sequence[int]


def idf(n_docs: int, df: int) -> float:
    """Lucene BM25 idf: ln(1 + (N − df + 0.5)/(df + 0.5)); positive even for terms in every document."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


@dataclass
class CorpusStats:
    """What BM25 needs from the corpus: document count N, total token count, and document frequency per term.

    Kept as plain counts (not avgdl / idf) so that statistics of separately ingested batches add up exactly
    (:meth:`merge`) and can be persisted with an additive upsert (:func:`update_stats`).
    """

    N: int = 0
    total_len: int = 0
    df: dict[int, int] = field(default_factory=dict)

    @property
    def avgdl(self) -> float:
        """Mean document length in tokens (0.0 for an empty corpus)."""
        return self.total_len / self.N if self.N else 0.0

    def update(self, doc_token_ids: Iterable[TokenIds]) -> "CorpusStats":
        """Count documents given as token-id lists (as from :meth:`BM25Encoder.tokenize`); returns self."""
        for ids in doc_token_ids:
            self.N += 1
            self.total_len += len(ids)
            for t in set(ids):
                self.df[int(t)] = self.df.get(int(t), 0) + 1
        return self

    def merge(self, other: "CorpusStats") -> "CorpusStats":
        """Add another batch's counts into this one; returns self."""
        self.N += other.N
        self.total_len += other.total_len
        for t, n in other.df.items():
            self.df[t] = self.df.get(t, 0) + n
        return self

    def idf(self, term: int) -> float:
        """idf of one term id under these statistics."""
        return idf(self.N, self.df.get(int(term), 0))

    @classmethod
    def from_token_ids(cls, doc_token_ids: Iterable[TokenIds]) -> "CorpusStats":
        """Statistics of one batch of tokenized documents."""
        return cls().update(doc_token_ids)


# ---------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------

def load_tokenizer(path: Union[str, os.PathLike[str], None] = None) -> Any:
    """A Hugging Face tokenizer from a local folder (default: the packaged MiniLM); never downloads."""
    from transformers import AutoTokenizer

    from .dense import default_model_path

    folder = Path(path) if path is not None else default_model_path()
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer_path {str(folder)!r} is not a local directory "
                                "(pgsieve loads tokenizers from local folders only)")
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    # BM25 has no sequence limit and never truncates; this only silences the "longer than 512" warning
    tok.model_max_length = int(1e30)
    return tok


_SUBWORD_MARKERS = re.compile(r"^(##|\u0120|\u2581)+")  # WordPiece "##", byte-level BPE "Ġ", SentencePiece "▁"


def punctuation_mask(tokenizer: Any, dim: int) -> np.ndarray:
    """Boolean mask over ids: True for tokens with no letter or digit ("," "##." "--" "|") and special tokens.

    Why drop them: like Lucene's standard analyzer, which never indexes punctuation, a bag of WordPiece
    punctuation would make document length (and so BM25 normalization) depend on formatting.
    """
    mask = np.zeros(dim, dtype=bool)
    for token, i in tokenizer.get_vocab().items():
        if 0 <= i < dim:
            bare = _SUBWORD_MARKERS.sub("", token)
            mask[i] = not any(ch.isalnum() for ch in bare)
    for i in tokenizer.all_special_ids:
        if 0 <= i < dim:
            mask[i] = True
    return mask


# ---------------------------------------------------------------------------
# encoder
# ---------------------------------------------------------------------------

class BM25Encoder:
    """BM25 document and query vectors over a local tokenizer's vocabulary.

    Parameters
    ----------
    tokenizer_path: local tokenizer folder; default the packaged all-MiniLM-L6-v2 (uncased WordPiece).
    k1, b: BM25 parameters (classic 1.2 / 0.75; Anserini's MS MARCO setting is 0.9 / 0.4).
    lowercase: None = leave case to the tokenizer (MiniLM's normalizer lowercases already); True = also
        ``str.lower()`` the text first (for cased tokenizers); False = no extra lowercasing.
    drop_punctuation: drop tokens with no letter or digit (and special tokens) before counting.
    stats: corpus statistics (N, total_len, df): avgdl for documents, idf for queries.  Refresh with
        :func:`load_stats` to see other writers' ingests.
    """

    def __init__(self, tokenizer_path: Union[str, os.PathLike[str], None] = None, k1: float = 1.2,
                 b: float = 0.75, lowercase: Optional[bool] = None, drop_punctuation: bool = True,
                 stats: Optional[CorpusStats] = None) -> None:
        if not (math.isfinite(k1) and k1 >= 0):
            raise ValueError(f"k1 must be finite and >= 0, got {k1}")
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"b must be in [0, 1], got {b}")
        self.k1 = float(k1)
        self.b = float(b)
        self.lowercase = lowercase
        self.drop_punctuation = bool(drop_punctuation)
        self.stats = stats if stats is not None else CorpusStats()
        self._tokenizer = load_tokenizer(tokenizer_path)
        self._dim = len(self._tokenizer)
        self._drop = punctuation_mask(self._tokenizer, self._dim) if drop_punctuation else None

    @property
    def dim(self) -> int:
        """Vocabulary size: the ``sparsevec(dim)`` column size."""
        return self._dim

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    # -- tokens -----------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, without special tokens (and punctuation, if dropped); never truncated."""
        items = check_texts(texts)
        if self.lowercase:
            items = [t.lower() for t in items]
        if not items:
            return []
        ids: list[list[int]] = self._tokenizer(items, add_special_tokens=False, truncation=False)["input_ids"]
        if self._drop is None:
            return [list(x) for x in ids]
        drop = self._drop
        return [[t for t in x if not drop[t]] for x in ids]

    def fit(self, texts: Sequence[str]) -> CorpusStats:
        """Add ``texts`` to ``self.stats`` (in memory only; see :func:`update_stats` for the database)."""
        return self.stats.update(self.tokenize(texts))

    # -- documents --------------------------------------------------------
    def encode_documents(self, texts: Sequence[str], avgdl: Optional[float] = None) -> list[SparseVector]:
        """Saturated, length-normalized tf per document (idf is on the query side).

        ``avgdl`` defaults to ``self.stats.avgdl``; ingest should update the statistics with the batch
        first (so that the very first batch has an avgdl), then encode.
        """
        return self.encode_token_ids(self.tokenize(texts), avgdl)

    def encode_token_ids(self, docs: Sequence[TokenIds], avgdl: Optional[float] = None) -> list[SparseVector]:
        """:meth:`encode_documents` from already tokenized documents (tokenize once, count and encode)."""
        avg = self._avgdl(avgdl)
        return [self._doc_vector(ids, avg, i) for i, ids in enumerate(docs)]

    def reencode(self, texts: Sequence[str]) -> list[SparseVector]:
        """Re-encode documents under the *current* avgdl, after it drifted from the one they were encoded with.

        Refresh the statistics first (``enc.stats = load_stats(conn, name)``), then write the result back
        to the column, e.g. ``UPDATE t SET emb = %s WHERE id = %s`` in batches, and rebuild a sparse index.
        """
        return self.encode_documents(texts, self.stats.avgdl)

    def _avgdl(self, avgdl: Optional[float]) -> float:
        avg = self.stats.avgdl if avgdl is None else float(avgdl)
        if not (math.isfinite(avg) and avg > 0):
            raise ValueError("avgdl is undefined: the corpus statistics are empty; update them with the batch "
                             "first (stats.update / update_stats) or pass avgdl=")
        return avg

    def _doc_vector(self, ids: TokenIds, avgdl: float, i: int) -> SparseVector:
        terms, tf = _term_counts(ids)
        norm = self.k1 * (1.0 - self.b + self.b * len(ids) / avgdl)
        weights = tf * (self.k1 + 1.0) / (tf + norm)
        return from_arrays(terms, weights, self._dim, nonnegative=True, what=f"BM25 document {i}")

    # -- queries ----------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """idf(t) × query tf per query term, from ``self.stats`` (N, df)."""
        return [self._query_vector(ids, i) for i, ids in enumerate(self.tokenize(texts))]

    def _query_vector(self, ids: TokenIds, i: int) -> SparseVector:
        terms, qtf = _term_counts(ids)
        n = self.stats.N
        df = np.fromiter((self.stats.df.get(int(t), 0) for t in terms), dtype=np.float64, count=terms.size)
        weights = np.log1p((n - df + 0.5) / (df + 0.5)) * qtf
        return from_arrays(terms, weights, self._dim, nonnegative=True, what=f"BM25 query {i}")

    # sentence-transformers spelling, so either name works
    def encode_query(self, texts: Sequence[str]) -> list[SparseVector]:
        return self.encode_queries(texts)

    def encode_document(self, texts: Sequence[str]) -> list[SparseVector]:
        return self.encode_documents(texts)

    def __repr__(self) -> str:
        return (f"BM25Encoder(dim={self._dim}, k1={self.k1}, b={self.b}, N={self.stats.N}, "
                f"avgdl={self.stats.avgdl:.2f})")


def _term_counts(ids: TokenIds) -> tuple[np.ndarray, np.ndarray]:
    """Distinct term ids and their counts (float64)."""
    counts = Counter(int(t) for t in ids)
    terms = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    return terms, tf


# ---------------------------------------------------------------------------
# statistics in the database
# ---------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")
_DF_TABLE = "bm25_df"
_CORPUS_TABLE = "bm25_corpus"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"statistics name {name!r} must be an identifier of at most 50 characters "
                         "([A-Za-z_][A-Za-z0-9_]*)")
    return name


def _tables() -> tuple[sql.Composable, sql.Composable]:
    from ..catalog import SCHEMA

    return sql.Identifier(SCHEMA, _DF_TABLE), sql.Identifier(SCHEMA, _CORPUS_TABLE)


def stats_table_names(name: str) -> tuple[str, str]:
    """The catalog tables holding the statistics called ``name``, schema-qualified: ``(per-term df, corpus)``.

    Every statistics name lives in the same two tables of pgsieve's catalog, keyed by their ``stats`` column:
    ``pgsieve_catalog.bm25_df (stats, term, df)`` and ``pgsieve_catalog.bm25_corpus (stats, n_docs,
    total_len)``.  ``name`` must be an identifier of at most 50 characters (checked here).
    """
    from ..catalog import SCHEMA

    _check_name(name)
    return f"{SCHEMA}.{_DF_TABLE}", f"{SCHEMA}.{_CORPUS_TABLE}"


def ensure_stats_tables(conn: Connection[Any], name: str) -> None:
    """Make sure the catalog exists (:func:`pgsieve.catalog.ensure_catalog`) and holds a corpus row for ``name``
    (N = total_len = 0 when new); idempotent."""
    from ..catalog import ensure_catalog

    _check_name(name)
    ensure_catalog(conn)
    _, corpus_t = _tables()
    with conn.transaction():
        conn.execute(sql.SQL("INSERT INTO {} (stats, n_docs, total_len) VALUES (%s, 0, 0) "
                             "ON CONFLICT (stats) DO NOTHING").format(corpus_t), (name,))


def drop_stats(conn: Connection[Any], name: str) -> bool:
    """Delete the statistics called ``name`` (corpus row and every df row); True if there were any."""
    _check_name(name)
    _, corpus_t = _tables()
    with conn.transaction():  # bm25_df rows go with the corpus row (ON DELETE CASCADE)
        cur = conn.execute(sql.SQL("DELETE FROM {} WHERE stats = %s").format(corpus_t), (name,))
    return cur.rowcount > 0


def load_stats(conn: Connection[Any], name: str) -> CorpusStats:
    """Read the committed statistics in one statement, so N, total_len and df come from one snapshot."""
    _check_name(name)
    df_t, corpus_t = _tables()
    query = sql.SQL("SELECT c.n_docs, c.total_len, d.terms, d.dfs FROM {c} AS c, LATERAL "
                    "(SELECT array_agg(term) AS terms, array_agg(df) AS dfs FROM {d} "
                    "WHERE stats = c.stats AND df <> 0) AS d WHERE c.stats = %s")
    row = conn.execute(query.format(c=corpus_t, d=df_t), (name,)).fetchone()
    if row is None:
        return CorpusStats()
    n, total, terms, dfs = row
    return CorpusStats(N=int(n), total_len=int(total),
                       df={int(t): int(d) for t, d in zip(terms or [], dfs or [])})


def update_stats(conn: Connection[Any], name: str,
                 docs: Union[Iterable[TokenIds], CorpusStats]) -> CorpusStats:
    """Add a batch (token-id lists, or its :class:`CorpusStats`) to the stored statistics; returns the delta.

    Needs the catalog (:func:`ensure_stats_tables` once).  Runs in ``conn.transaction()``: a savepoint inside the
    caller's open transaction — so ingest can update the statistics in the same transaction as the rows, and
    both commit or roll back together — or, when no transaction is open (autocommit, or an idle connection), its
    own transaction, committed on return.  Concurrent-safe: additive ``INSERT ... ON CONFLICT DO UPDATE``
    upserts.  The corpus row is updated first, so concurrent ingests into one statistics name queue on that one
    row lock and cannot deadlock on term rows (which are also written in ascending term order).
    """
    _check_name(name)
    delta = docs if isinstance(docs, CorpusStats) else CorpusStats.from_token_ids(docs)
    df_t, corpus_t = _tables()
    terms = sorted(delta.df)
    with conn.transaction():
        conn.execute(sql.SQL("INSERT INTO {t} AS s (stats, n_docs, total_len) VALUES (%s, %s, %s) "
                             "ON CONFLICT (stats) DO UPDATE SET n_docs = s.n_docs + excluded.n_docs, "
                             "total_len = s.total_len + excluded.total_len").format(t=corpus_t),
                     (name, delta.N, delta.total_len))
        if terms:
            conn.execute(sql.SQL("INSERT INTO {t} AS s (stats, term, df) "
                                 "SELECT %s, term, df FROM unnest(%s::integer[], %s::bigint[]) AS u(term, df) "
                                 "ORDER BY term "
                                 "ON CONFLICT (stats, term) DO UPDATE SET df = s.df + excluded.df").format(t=df_t),
                         (name, terms, [delta.df[t] for t in terms]))
    return delta
