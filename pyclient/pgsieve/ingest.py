"""Load passages and their embeddings into a pgvector table with binary COPY.

Binary COPY is the fastest way to get vectors into PostgreSQL from Python:
pgvector-python's binary dumper writes ``vector`` in its wire format, and
``copy.set_types`` makes psycopg pick the right dumper per column (binary
COPY does no casts, so an untyped int would arrive as int2 and be rejected).

The pipeline is two small steps:

    for rows, embeddings in _encoded_batches(...):   # CPU/GPU bound
        _copy_batch(cur, table, rows, embeddings)      # I/O bound

With an encoder that can queue work (``pgsieve.workers.EncoderPool`` or ``RemoteEncoder``: anything with
``submit_documents(texts) -> Future``) they overlap: the next ``encode_ahead`` batches are being encoded in the
worker processes while batch *i* is being copied.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Optional, Protocol

import numpy as np
import psycopg
from psycopg import sql

from .adapters import register_pgsieve
from .encoders.base import Encoder

__all__ = [
    "PassageLike",
    "OPCLASSES",
    "QUANTIZERS",
    "table_identifier",
    "document_text",
    "create_corpus_table",
    "ingest_passages",
    "create_binary_index",
    "create_sparse_index",
    "bm25_encode_with_stats",
    "SPARSE_OPTIONS",
]

#: operator classes binary_scan accepts, by column type
OPCLASSES: tuple[str, ...] = (
    "vector_cosine_ops", "vector_ip_ops", "vector_l2_ops",
    "halfvec_cosine_ops", "halfvec_ip_ops", "halfvec_l2_ops",
    "bit_hamming_ops",
)
QUANTIZERS: tuple[str, ...] = ("mean", "sign")
COLUMNS: tuple[str, ...] = ("id", "doc_id", "title", "body", "emb")
COPY_TYPES: tuple[str, ...] = ("int8", "text", "text", "text", "vector")
#: sparse_block build parameters (reloptions) and their types
SPARSE_OPTIONS: dict[str, type] = {
    "n_postings": int, "max_fraction": float, "centroid_fraction": float, "summary_energy": float,
    "min_cluster_size": int, "doc_cut": int,
}


class PassageLike(Protocol):
    """What ingest needs from a passage (``pgsieve.corpus.Passage`` fits)."""

    @property
    def pid(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def text(self) -> str: ...


def table_identifier(table: str) -> sql.Composable:
    """``"schema"."table"`` from ``schema.table`` or ``table``, safely quoted."""
    if not isinstance(table, str) or not table.strip():
        raise ValueError(f"table must be a non-empty name, got {table!r}")
    parts = table.split(".")
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"table must be 'name' or 'schema.name', got {table!r}")
    return sql.Identifier(*parts)


def document_text(p: PassageLike) -> str:
    """Text the encoder sees for a passage: its title, then its body.

    The title (e.g. ``open(2)``) gives short passages such as RETURN VALUE
    the context they lack on their own.
    """
    return f"{p.title}: {p.text}" if p.title else p.text


def create_corpus_table(conn: psycopg.Connection[Any], table: str, dim: int, *,
                        drop: bool = False, sparse_dim: Optional[int] = None,
                        sparse_column: str = "sparse") -> None:
    """Create ``table(id bigint primary key, doc_id text, title text, body text, emb vector(dim))``.

    With ``sparse_dim`` the table also gets ``<sparse_column> sparsevec(sparse_dim)`` (BM25 or SPLADE
    weights over a vocabulary) for hybrid search.

    ``emb`` gets ``STORAGE MAIN``: pgvector's default (EXTERNAL) moves a
    384-d vector out of line as soon as the row passes ~2 kB, which a row
    with a passage body usually does, and every exact distance (sequential
    scans, rerank heap fetches) then pays a TOAST lookup; inline vectors
    halve exact-scan time on the man-page corpus.  The sparse column gets
    ``STORAGE MAIN`` too (a passage's BM25 vector is ~1 kB); MAIN values
    leave the row only when it would not fit in a page.
    """
    if not isinstance(dim, int) or not 1 <= dim <= 16000:
        raise ValueError(f"dim must be an int in 1..16000 (pgvector's limit), got {dim!r}")
    sparse_col = sql.SQL("")
    if sparse_dim is not None:
        if isinstance(sparse_dim, bool) or not isinstance(sparse_dim, int) or not 1 <= sparse_dim <= 1_000_000_000:
            raise ValueError(f"sparse_dim must be an int in 1..1000000000 (sparsevec's limit), got {sparse_dim!r}")
        if sparse_column in ("id", "doc_id", "title", "body", "emb"):
            raise ValueError(f"sparse_column {sparse_column!r} clashes with a corpus column")
        sparse_col = sql.SQL(", {} sparsevec({})").format(sql.Identifier(sparse_column), sql.Literal(sparse_dim))
    ident = table_identifier(table)
    with conn.transaction():
        if drop:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, doc_id text, title text, "
            "body text, emb vector({}){})").format(ident, sql.Literal(dim), sparse_col))
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN emb SET STORAGE MAIN").format(ident))
        if sparse_dim is not None:
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STORAGE MAIN").format(
                ident, sql.Identifier(sparse_column)))


def _ensure_vector_adapters(conn: psycopg.Connection[Any]) -> None:
    """COPY's set_types('vector') needs the type registered on this connection."""
    if conn.adapters.types.get("vector") is None:
        register_pgsieve(conn, require_extension=False)


def _next_id(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) + 1 FROM {}").format(
        table_identifier(table))).fetchone()
    return int(row[0])


def _check_embeddings(emb: np.ndarray, n: int, dim: Optional[int]) -> np.ndarray:
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"embeddings must have shape ({n}, dim), got {emb.shape}")
    if dim is not None and emb.shape[1] != dim:
        raise ValueError(f"embeddings have {emb.shape[1]} dimensions, encoder says {dim}")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or Inf")
    return emb.astype(np.float32, copy=False)


def _encoded_batches(passages: Sequence[PassageLike], encoder: Optional[Encoder],
                     embeddings: Optional[np.ndarray], batch_size: int,
                     text_fn: Callable[[PassageLike], str], encode_ahead: int = 2
                     ) -> Iterator[tuple[Sequence[PassageLike], np.ndarray]]:
    """Yield (passages, float32 embeddings) batches, encoding on the fly if needed.

    An encoder with ``submit_documents`` (an encoder pool) gets up to ``encode_ahead`` batches queued ahead of
    the one being yielded, so encoding overlaps whatever the caller does with each batch (the COPY).
    """
    submit = getattr(encoder, "submit_documents", None) if embeddings is None else None
    if callable(submit) and encode_ahead > 0:
        yield from _pipelined_batches(passages, encoder, submit, batch_size, text_fn, encode_ahead)
        return
    for start in range(0, len(passages), batch_size):
        chunk = passages[start:start + batch_size]
        if embeddings is not None:
            yield chunk, embeddings[start:start + batch_size]
        else:
            assert encoder is not None
            emb = encoder.encode_documents([text_fn(p) for p in chunk])
            yield chunk, _check_embeddings(emb, len(chunk), encoder.dim)


def _pipelined_batches(passages: Sequence[PassageLike], encoder: Any, submit: Callable[[list[str]], Any],
                       batch_size: int, text_fn: Callable[[PassageLike], str], ahead: int
                       ) -> Iterator[tuple[Sequence[PassageLike], np.ndarray]]:
    pending: deque[tuple[Sequence[PassageLike], Any]] = deque()
    starts = iter(range(0, len(passages), batch_size))
    try:
        while True:
            while len(pending) <= ahead:
                start = next(starts, None)
                if start is None:
                    break
                chunk = passages[start:start + batch_size]
                pending.append((chunk, submit([text_fn(p) for p in chunk])))
            if not pending:
                return
            chunk, fut = pending.popleft()
            yield chunk, _check_embeddings(fut.result(), len(chunk), encoder.dim)
    finally:
        for _, fut in pending:  # an error downstream (or the consumer stopped): drop the queued work
            fut.cancel()


def _copy_batch(cur: psycopg.Cursor[Any], table: str, first_id: int,
                chunk: Sequence[PassageLike], emb: np.ndarray,
                sparse: Optional[Sequence[Any]] = None, sparse_column: str = "sparse") -> None:
    columns, types = list(COLUMNS), list(COPY_TYPES)
    if sparse is not None:
        columns.append(sparse_column)
        types.append("sparsevec")
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table_identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with cur.copy(stmt) as copy:
        copy.set_types(types)
        if sparse is None:
            for k, (p, vec) in enumerate(zip(chunk, emb)):
                copy.write_row((first_id + k, p.pid, p.title, p.text, vec))
        else:
            for k, (p, vec, sv) in enumerate(zip(chunk, emb, sparse)):
                copy.write_row((first_id + k, p.pid, p.title, p.text, vec, sv))


def ingest_passages(conn: psycopg.Connection[Any], table: str, passages: Sequence[PassageLike],
                    encoder: Optional[Encoder] = None, batch_size: int = 256, progress: bool = True,
                    *, embeddings: Optional[np.ndarray] = None, create: bool = True,
                    text_fn: Callable[[PassageLike], str] = document_text,
                    sparse: Optional[Sequence[Any]] = None, sparse_column: str = "sparse",
                    encode_ahead: int = 2) -> int:
    """Encode ``passages`` (or take precomputed ``embeddings``) and COPY them into ``table``.

    ``encoder`` may be an :class:`pgsieve.workers.EncoderPool` (or ``RemoteEncoder``): then the next
    ``encode_ahead`` batches are encoded in the worker processes while the current one is copied.

    ``sparse``: one ``pgvector.SparseVector`` per passage (e.g. from :func:`bm25_encode_with_stats`),
    written to ``sparse_column`` in the same COPY; the table must have that column
    (``create_corpus_table(..., sparse_dim=...)``; ``create=True`` does not add it).

    Ids continue after the table's current ``max(id)``.  All batches go in one
    transaction: a failure leaves the table as it was.  Returns rows written.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if (encoder is None) == (embeddings is None):
        raise ValueError("pass exactly one of encoder= or embeddings=")
    passages = list(passages)
    if sparse is not None:
        sparse = list(sparse)
        if len(sparse) != len(passages):
            raise ValueError(f"sparse has {len(sparse)} vectors for {len(passages)} passages")
    if embeddings is not None:
        embeddings = _check_embeddings(embeddings, len(passages), None)
        dim = int(embeddings.shape[1])
    else:
        dim = int(encoder.dim)  # type: ignore[union-attr]
    _ensure_vector_adapters(conn)
    if create:
        create_corpus_table(conn, table, dim)
    bar = _progress(len(passages), progress, table)
    written = 0
    try:
        with conn.transaction(), conn.cursor() as cur:
            next_id = _next_id(conn, table)
            for chunk, emb in _encoded_batches(passages, encoder, embeddings, batch_size, text_fn, encode_ahead):
                sv = None if sparse is None else sparse[written:written + len(chunk)]
                _copy_batch(cur, table, next_id + written, chunk, emb, sv, sparse_column)
                written += len(chunk)
                bar.update(len(chunk))
    finally:
        bar.close()
    return written


def _progress(total: int, enabled: bool, table: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=f"ingest {table}", unit="psg")


def _index_head(conn: psycopg.Connection[Any], am: str, name: Optional[str]) -> list[sql.Composable]:
    """``CREATE INDEX [name]`` — after checking the access method exists, with a clear error instead of
    PostgreSQL's "access method does not exist" when the pgsieve extension is missing."""
    if not conn.execute("SELECT 1 FROM pg_catalog.pg_am WHERE amname = %s", (am,)).fetchone():
        raise psycopg.ProgrammingError(
            f"access method {am} not found: CREATE EXTENSION pgsieve first "
            "(and `pgsieve ext install` if the extension is not built or is older)")
    parts: list[sql.Composable] = [sql.SQL("CREATE INDEX")]
    if name:
        parts.append(sql.Identifier(name))
    return parts


def _create_timed(conn: psycopg.Connection[Any], parts: list[sql.Composable]) -> float:
    """Run the assembled CREATE INDEX in a transaction; its wall time in seconds."""
    t0 = time.perf_counter()
    with conn.transaction():
        conn.execute(sql.SQL(" ").join(parts))
    return time.perf_counter() - t0


def create_binary_index(conn: psycopg.Connection[Any], table: str, opclass: str = "vector_cosine_ops",
                        quantizer: str = "mean", *, column: str = "emb",
                        name: Optional[str] = None) -> float:
    """``CREATE INDEX ... USING binary_scan (emb <opclass>) WITH (quantizer=...)``; returns build seconds.

    Raises a clear error if the pgsieve extension (and so the access method)
    is missing, instead of PostgreSQL's "access method does not exist".
    """
    if opclass not in OPCLASSES:
        raise ValueError(f"opclass must be one of {OPCLASSES}, got {opclass!r}")
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {QUANTIZERS}, got {quantizer!r}")
    parts = _index_head(conn, "binary_scan", name)
    parts.append(sql.SQL("ON {} USING binary_scan ({} {})").format(
        table_identifier(table), sql.Identifier(column), sql.Identifier(opclass)))
    if opclass != "bit_hamming_ops":
        parts.append(sql.SQL("WITH (quantizer = {})").format(sql.Literal(quantizer)))
    return _create_timed(conn, parts)


def create_sparse_index(conn: psycopg.Connection[Any], table: str, column: str = "sparse", *,
                        name: Optional[str] = None, **options: Any) -> float:
    """``CREATE INDEX ... USING sparse_block (<column>) [WITH (...)]``; returns build seconds.

    ``options`` are sparse_block's reloptions (:data:`SPARSE_OPTIONS`, e.g. ``n_postings=3500``).
    """
    for key, value in options.items():
        want = SPARSE_OPTIONS.get(key)
        if want is None:
            raise ValueError(f"unknown sparse_block option {key!r} (known: {sorted(SPARSE_OPTIONS)})")
        wrong_type = want is int and not isinstance(value, int)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or wrong_type:
            raise ValueError(f"sparse_block option {key} must be {want.__name__}, got {value!r}")
    parts = _index_head(conn, "sparse_block", name)
    parts.append(sql.SQL("ON {} USING sparse_block ({})").format(table_identifier(table), sql.Identifier(column)))
    if options:
        parts.append(sql.SQL("WITH ({})").format(sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(v)) for k, v in options.items())))
    return _create_timed(conn, parts)


def bm25_encode_with_stats(conn: psycopg.Connection[Any], stats_name: str, encoder: Any,
                           texts: Sequence[str]) -> list[Any]:
    """BM25 document vectors for ``texts``, with the corpus statistics kept in the database.

    Adds the batch to the statistics tables (``<stats_name>_bm25_df`` / ``_bm25_corpus``, created if
    missing) with :func:`pgsieve.encoders.bm25.update_stats`, reloads them into ``encoder.stats`` (so
    avgdl includes this batch and earlier ingests, and query idf sees them too), then encodes.
    Call it inside the transaction that COPYs the rows, so rows and statistics commit together::

        with conn.transaction():
            sparse = bm25_encode_with_stats(conn, "docs", bm25, texts)
            ingest_passages(conn, "docs", passages, embeddings=emb, sparse=sparse, create=False)
    """
    from .encoders.bm25 import ensure_stats_tables, load_stats, update_stats

    tokens = encoder.tokenize(list(texts))
    with conn.transaction():
        ensure_stats_tables(conn, stats_name)
        update_stats(conn, stats_name, tokens)
        encoder.stats = load_stats(conn, stats_name)
    return encoder.encode_token_ids(tokens)
