"""``pgsieve demo``: man pages -> BM25 + MiniLM -> one pgvector table -> sparse_block + binary_scan -> hybrid search.

Everything runs locally: the embedded PostgreSQL, the packaged MiniLM (dense
embeddings, and its WordPiece vocabulary for BM25) and the Debian man pages.
Each passage gets a 384-d dense embedding and a BM25 ``sparsevec`` (corpus
statistics kept in the database), both written with one binary COPY.  Two
``CREATE INDEX`` statements (``binary_scan`` on the embedding, ``sparse_block``
on the BM25 vector) serve unchanged pgvector queries; the demo runs each
example query as BM25 only, dense only, and hybrid: one SQL statement that
gathers the top rows of both indexes and fuses them with Reciprocal Rank
Fusion.  It ends with a small evaluation (success@10 on the corpus'
known-item queries) of the three.

Encoding is the slow step on a CPU, so embeddings are cached next to the
server's data directory, per passage text and model fingerprint; a second run
(or a larger ``--max-pages``) encodes only passages it has not seen.

If the extension or its index methods are missing the demo stops with an
error: it never quietly falls back to a plain sequential scan.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, TextIO

import numpy as np

__all__ = ["DEFAULT_QUERIES", "DemoError", "main"]

DEFAULT_QUERIES: tuple[str, ...] = (
    "how do I create a directory",
    "allocate memory",
    "compare two strings",
    "send a signal to a process",
    "read a line from a file",
    "wait for a child process to finish",
    "get the current time of day",
    "convert a string to an integer",
)
DEMO_DB = "pgsieve_demo"
STAGES: tuple[str, ...] = ("bm25", "dense", "hybrid")


class DemoError(RuntimeError):
    """A step failed; the message says which and what to do."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgsieve demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="embedded server data directory (default: pgsieve's per-user one)")
    p.add_argument("--url", help="use this running server instead of the embedded one")
    p.add_argument("--cache-dir", help="embedding cache (default: <data-dir>/../demo-cache)")
    p.add_argument("--max-pages", type=int, default=400,
                   help="man pages to load (default 400, ~4.5k passages; 0 = all ~1500 pages, ~11.5k passages, "
                        "about 9 minutes to encode on 2 CPU cores the first time)")
    p.add_argument("--table", default="manpages", help="table to (re)create (default manpages)")
    p.add_argument("--quantizer", choices=("mean", "sign"), default="mean")
    p.add_argument("--rerank", type=int, default=100, help="pgsieve.binary_rerank for the queries")
    p.add_argument("-k", type=int, default=5, help="results shown per query")
    p.add_argument("--k-gather", type=int, default=50, help="rows each stage gathers for fusion (default 50)")
    p.add_argument("--rrf-k", type=int, default=60, help="RRF constant: score = sum 1/(rrf_k + rank) (default 60)")
    p.add_argument("--eval-queries", type=int, default=200,
                   help="known-item queries for the success@10 evaluation (default 200; 0 = skip)")
    p.add_argument("--query", action="append", help="query text (repeatable; default: 8 examples)")
    p.add_argument("--model-path", help="local encoder folder (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64, help="encoder batch size")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--skip-install", action="store_true",
                   help="do not build/install the extension (it is already installed)")
    return p


def _say(out: TextIO, msg: str = "") -> None:
    print(msg, file=out, flush=True)


# -- server ------------------------------------------------------------------

def _server_url(args: argparse.Namespace, out: TextIO) -> tuple[str, Path]:
    """Start/reuse the server; return (URL of the demo database, directory for caches)."""
    import psycopg
    from psycopg import sql

    from . import server

    if args.url:
        base_url = args.url
        cache_root = Path(args.cache_dir) if args.cache_dir else _user_cache()
    else:
        if not args.skip_install:
            from . import extbuild

            t0 = time.perf_counter()
            try:
                info = extbuild.install_extension()
            except Exception as exc:
                raise DemoError(f"could not build/install the pgsieve extension: {exc}") from exc
            _say(out, f"extension: {'installed' if info.get('installed') else 'up to date'} "
                      f"for {info.get('pg_version')} ({time.perf_counter() - t0:.1f}s)")
        data_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else server.data_dir_default()
        t0 = time.perf_counter()
        base_url = server.start(data_dir)
        _say(out, f"server: {data_dir} ({time.perf_counter() - t0:.1f}s)")
        cache_root = Path(args.cache_dir) if args.cache_dir else data_dir.parent / "demo-cache"
    with psycopg.connect(base_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DB,)).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    return _with_dbname(base_url, DEMO_DB), cache_root


def _with_dbname(url: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pgsieve" / "demo-cache"


def _prepare_db(conn: Any) -> str:
    """CREATE EXTENSION vector, pgsieve; check the pieces the demo needs; return the kernel level."""
    from .adapters import register_pgsieve
    from .extbuild import ensure_extension

    try:
        ensure_extension(conn)
    except Exception as exc:
        raise DemoError(f"CREATE EXTENSION pgsieve failed: {exc}\n"
                        "build and install it with `pgsieve ext install`") from exc
    register_pgsieve(conn)
    for am in ("binary_scan", "sparse_block"):
        if not conn.execute("SELECT 1 FROM pg_am WHERE amname = %s", (am,)).fetchone():
            raise DemoError(f"the installed pgsieve has no {am} access method; "
                            "reinstall the extension (`pgsieve ext install`)")
    try:
        return str(conn.execute("SELECT pgsieve_kernel_level()").fetchone()[0])
    except Exception as exc:
        raise DemoError(f"pgsieve_kernel_level() failed: {exc}") from exc


# -- encoding with a cache ---------------------------------------------------

def _text_key(text: str) -> str:
    # hex, not the raw digest: numpy "S" arrays drop trailing NUL bytes
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _cached_embeddings(passages: Sequence[Any], encoder: Any, cache_dir: Path, out: TextIO,
                       progress: bool) -> np.ndarray:
    """Embeddings for passages; those of texts already in ``cache_dir`` (same model) are not re-encoded.

    One cache file per model fingerprint maps the SHA-1 of each encoded text to its embedding, so
    runs with different ``--max-pages`` share it and only encode the passages they add.
    """
    from .ingest import document_text

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"manpages-emb-{encoder.fingerprint()}.npz"
    texts = [document_text(p) for p in passages]
    keys = [_text_key(t) for t in texts]
    old_keys = np.empty(0, dtype="U40")
    old_emb = np.empty((0, encoder.dim), np.float32)
    if path.is_file():
        try:
            with np.load(path) as z:
                if (z["emb"].shape[1:] == (encoder.dim,) and len(z["keys"]) == len(z["emb"])
                        and z["keys"].dtype.kind == "U"):
                    old_keys, old_emb = z["keys"], z["emb"].astype(np.float32, copy=False)
        except Exception as exc:  # a damaged cache is re-encoded, never trusted
            _say(out, f"embeddings: ignoring unreadable cache {path} ({exc})")
    row_of = {str(k): i for i, k in enumerate(old_keys)}
    todo_of: dict[str, int] = {}  # text key -> first passage with it, for texts not in the cache
    for i, k in enumerate(keys):
        if k not in row_of:
            todo_of.setdefault(k, i)
    if not todo_of:
        _say(out, f"embeddings: {len(passages)} from cache {path}")
        return np.stack([old_emb[row_of[k]] for k in keys]) if keys else old_emb[:0]
    todo = list(todo_of.values())
    t0 = time.perf_counter()
    new = _encode_with_progress(encoder, [texts[i] for i in todo], progress)
    el = time.perf_counter() - t0
    all_keys = np.concatenate([old_keys, np.array([keys[i] for i in todo], dtype="U40")])
    all_emb = np.concatenate([old_emb, new.astype(np.float32, copy=False)])
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, keys=all_keys, emb=all_emb)
    os.replace(tmp, path)
    hit = sum(1 for k in keys if k not in todo_of)
    _say(out, f"embeddings: {hit} from cache, encoded {len(todo)} passages in {el:.1f}s "
              f"({len(todo) / max(el, 1e-9):.0f}/s), cached in {path}")
    row_of = {str(k): i for i, k in enumerate(all_keys)}
    return np.stack([all_emb[row_of[k]] for k in keys])


def _encode_with_progress(encoder: Any, texts: list[str], progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    step = max(encoder.batch_size * 8, 256)
    parts = []
    with tqdm(total=len(texts), disable=not progress, desc="encode", unit="psg") as bar:
        for i in range(0, len(texts), step):
            parts.append(encoder.encode_documents(texts[i:i + step]))
            bar.update(len(texts[i:i + step]))
    return np.concatenate(parts) if parts else np.empty((0, encoder.dim), np.float32)


# -- table and indexes ---------------------------------------------------------

def _index_names(table: str) -> tuple[str, str]:
    base = table.split(".")[-1][:40]
    return f"{base}_emb_binary_scan", f"{base}_sparse_block"


def _stats_name(table: str) -> str:
    return table.split(".")[-1][:50]


def _load_table(conn: Any, table: str, passages: Sequence[Any], emb: np.ndarray, bm25: Any,
                progress: bool, out: TextIO) -> None:
    """(Re)create the table and BM25 statistics; tokenize, count, encode and COPY in one transaction."""
    from .catalog import ensure_catalog
    from .encoders.bm25 import drop_stats, stats_table_names
    from .ingest import bm25_encode_with_stats, create_corpus_table, document_text, ingest_passages

    stats = _stats_name(table)
    create_corpus_table(conn, table, int(emb.shape[1]), drop=True, sparse_dim=bm25.dim)
    ensure_catalog(conn)
    drop_stats(conn, stats)
    t0 = time.perf_counter()
    with conn.transaction():
        sparse = bm25_encode_with_stats(conn, stats, bm25, [document_text(p) for p in passages])
        t_bm25 = time.perf_counter() - t0
        n = ingest_passages(conn, table, passages, embeddings=emb, sparse=sparse, create=False,
                            progress=progress)
    el = time.perf_counter() - t0
    nnz = np.array([len(v.indices()) for v in sparse]) if sparse else np.zeros(1)
    df_t, corpus_t = stats_table_names(stats)
    _say(out, f"bm25: {n} passages tokenized and encoded in {t_bm25:.1f}s (k1={bm25.k1}, b={bm25.b}, "
              f"avgdl {bm25.stats.avgdl:.1f} tokens, {len(bm25.stats.df)} distinct terms, "
              f"{nnz.mean():.0f} non-zeros per passage); statistics {stats!r} in {df_t}, {corpus_t}")
    _say(out, f"ingest: {n} rows into {table} (id, doc_id, title, body, emb vector({emb.shape[1]}), "
              f"sparse sparsevec({bm25.dim})) with binary COPY ({el:.1f}s)")


def _build_indexes(conn: Any, table: str, quantizer: str, out: TextIO) -> None:
    from .ingest import create_binary_index, create_sparse_index

    dense_name, sparse_name = _index_names(table)
    secs = create_binary_index(conn, table, "vector_cosine_ops", quantizer, name=dense_name)
    _say(out, f"index: CREATE INDEX {dense_name} ON {table} USING binary_scan (emb vector_cosine_ops) "
              f"WITH (quantizer = '{quantizer}') built in {secs:.2f}s, {_index_size(conn, table, dense_name)}")
    secs = create_sparse_index(conn, table, "sparse", name=sparse_name)
    _say(out, f"index: CREATE INDEX {sparse_name} ON {table} USING sparse_block (sparse) "
              f"built in {secs:.2f}s, {_index_size(conn, table, sparse_name)}")
    conn.execute(f"ANALYZE {_quoted(conn, table)}")


def _quoted(conn: Any, table: str) -> str:
    from .ingest import table_identifier

    return table_identifier(table).as_string(conn)


def _index_size(conn: Any, table: str, index: str) -> str:
    row = conn.execute("SELECT pg_size_pretty(pg_relation_size(c.oid)) FROM pg_index i "
                       "JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE i.indrelid = %s::regclass AND c.relname = %s", (table, index)).fetchone()
    return row[0] if row else "?"


# -- queries -------------------------------------------------------------------

def _hybrid_plan(conn: Any, table: str, dense_q: np.ndarray, sparse_q: Any, k_gather: int,
                 force: bool) -> list[str]:
    """EXPLAIN the hybrid statement; the plan lines that scan an index of ``table``."""
    from .search import _hybrid_statement

    stmt = _hybrid_statement(table, "emb", "sparse", "cosine")
    params = {"sparse_q": sparse_q, "dense_q": dense_q, "k_gather": k_gather, "rrf_k": 60, "k": 10}
    with conn.transaction():
        if force:
            conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute(f"SET LOCAL pgsieve.sparse_top_k = {int(k_gather)}")
        rows = conn.execute(b"EXPLAIN " + stmt.as_bytes(conn), params, prepare=False).fetchall()
    return [r[0].strip().removeprefix("->").strip() for r in rows if "Index Scan" in r[0]]


def _check_plan(conn: Any, table: str, dense_q: np.ndarray, sparse_q: Any, k_gather: int,
                out: TextIO) -> bool:
    """Make sure the hybrid statement scans both indexes; returns whether enable_seqscan must be off."""
    names = _index_names(table)

    def uses_both(lines: list[str]) -> bool:
        return all(any(f"using {n} " in ln for ln in lines) for n in names)

    lines = _hybrid_plan(conn, table, dense_q, sparse_q, k_gather, force=False)
    force = not uses_both(lines)
    if force:  # never pretend: say why the indexes are forced on a small table
        _say(out, "note: on a table this small the planner prefers sequential scans; "
                  "forcing the indexes with SET LOCAL enable_seqscan = off")
        lines = _hybrid_plan(conn, table, dense_q, sparse_q, k_gather, force=True)
        if not uses_both(lines):
            raise DemoError("the hybrid query does not use both the binary_scan and the sparse_block index "
                            f"even with enable_seqscan = off (plan: {lines}); check the indexes")
    for ln in lines:
        _say(out, f"plan: {ln}")
    return force


def _labels(conn: Any, table: str, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    from psycopg import sql

    from .ingest import table_identifier

    rows = conn.execute(sql.SQL("SELECT id, title, doc_id FROM {} WHERE id = ANY(%s)").format(
        table_identifier(table)), (list(ids),)).fetchall()
    return {int(r[0]): (r[1], r[2]) for r in rows}


class _Stages:
    """Runs one query as BM25 only, dense only and hybrid, with the demo's settings."""

    def __init__(self, conn: Any, table: str, args: argparse.Namespace, force: bool) -> None:
        self.conn, self.table, self.args, self.force = conn, table, args, force

    def run(self, dense_q: np.ndarray, sparse_q: Any, k: int) -> dict[str, Any]:
        from .search import binary_search, hybrid_search, sparse_search

        a = self.args
        return {
            "bm25": sparse_search(self.conn, self.table, sparse_q, k=k, force_index=self.force),
            "dense": binary_search(self.conn, self.table, dense_q, k=k, rerank=a.rerank,
                                   force_index=self.force),
            "hybrid": hybrid_search(self.conn, self.table, dense_q, sparse_q, k=k, k_gather=a.k_gather,
                                    rrf_k=a.rrf_k, rerank=a.rerank, force_index=self.force),
        }


def _run_queries(conn: Any, stages: _Stages, encoder: Any, bm25: Any, queries: Sequence[str], k: int,
                 out: TextIO) -> None:
    qv = encoder.encode_queries(list(queries))
    qs = bm25.encode_queries(list(queries))
    shown_sql = False
    for text, dq, sq in zip(queries, qv, qs):
        stages.run(dq, sq, k)  # warm up; time the 2nd run
        res = stages.run(dq, sq, k)
        if not shown_sql:
            _say(out, "hybrid sql (one statement; %(sparse_q)s = BM25 query sparsevec, %(dense_q)s = query "
                      "embedding):\n  " + res["hybrid"].sql.replace("\n", "\n  "))
            shown_sql = True
        labels = _labels(conn, stages.table, {i for r in res.values() for i in r.ids})
        _say(out, f"\nquery: {text!r}")
        for name in ("bm25", "dense"):
            r = res[name]
            pages = ", ".join(labels.get(i, ("?", "?"))[0] for i in r.ids)
            _say(out, f"  {name:<6} {r.elapsed_ms:7.1f} ms  {pages}")
        h = res["hybrid"]
        _say(out, f"  hybrid {h.elapsed_ms:7.1f} ms  (RRF of the top {stages.args.k_gather} of each)")
        for rank, (pid, score, rs, rd) in enumerate(zip(h.ids, h.scores, h.ranks["sparse"], h.ranks["dense"]), 1):
            title, doc_id = labels.get(pid, ("?", "?"))
            bm = f"#{rs}" if rs is not None else "-"
            de = f"#{rd}" if rd is not None else "-"
            _say(out, f"    {rank}. {title:<24} rrf {score:.4f}  bm25 {bm:<4} dense {de:<4} {doc_id}")


def _evaluate(conn: Any, stages: _Stages, encoder: Any, bm25: Any, passages: Sequence[Any], n: int,
              out: TextIO) -> dict[str, float]:
    """success@10 of the three stages on ``n`` known-item queries (evenly spread over the corpus' pages)."""
    from psycopg import sql

    from .corpus import known_item_queries
    from .ingest import table_identifier

    kiq = known_item_queries(passages)
    if not kiq:
        _say(out, "\nevaluation: no known-item queries in this corpus")
        return {}
    n = min(n, len(kiq))
    chosen = [kiq[i * len(kiq) // n] for i in range(n)]
    id_of = {doc_id: int(i) for i, doc_id in conn.execute(
        sql.SQL("SELECT id, doc_id FROM {}").format(table_identifier(stages.table))).fetchall()}
    t0 = time.perf_counter()
    qv = encoder.encode_queries([q.text for q in chosen])
    qs = bm25.encode_queries([q.text for q in chosen])
    enc_s = time.perf_counter() - t0
    hits = {s: 0 for s in STAGES}
    ms = {s: 0.0 for s in STAGES}
    for q, dq, sq in zip(chosen, qv, qs):
        relevant = {id_of[pid] for pid in q.relevant if pid in id_of}
        res = stages.run(dq, sq, 10)
        for s in STAGES:
            hits[s] += bool(relevant & set(res[s].ids[:10]))
            ms[s] += res[s].elapsed_ms
    succ = {s: hits[s] / n for s in STAGES}
    _say(out, f"\nevaluation: {n} known-item queries (a page's NAME description; relevant = its other "
              f"passages), queries encoded in {enc_s:.1f}s")
    for s in STAGES:
        _say(out, f"  success@10 {s:<6} {succ[s]:.3f}  ({hits[s]}/{n}; mean {ms[s] / n:.1f} ms per query)")
    best = max(succ["bm25"], succ["dense"])
    verdict = "≥" if succ["hybrid"] >= best else "<"
    _say(out, f"  hybrid {succ['hybrid']:.3f} {verdict} best single stage {best:.3f}")
    return succ


# -- main ----------------------------------------------------------------------

def _run(args: argparse.Namespace, out: TextIO) -> None:
    import psycopg

    from .corpus import load_manpages
    from .encoders import BM25Encoder, DenseEncoder

    url, cache_root = _server_url(args, out)
    with psycopg.connect(url, autocommit=True) as conn:
        level = _prepare_db(conn)
        _say(out, f"database: {DEMO_DB} (server kernels: {level})")

        t0 = time.perf_counter()
        passages = load_manpages(max_pages=args.max_pages or None)
        _say(out, f"corpus: {len({p.page for p in passages})} man pages, {len(passages)} passages "
                  f"({time.perf_counter() - t0:.1f}s)")

        encoder = DenseEncoder(args.model_path, device=args.device, batch_size=args.batch_size)
        emb = _cached_embeddings(passages, encoder, cache_root, out, not args.no_progress)
        bm25 = BM25Encoder(args.model_path)  # the MiniLM WordPiece vocabulary

        _load_table(conn, args.table, passages, emb, bm25, not args.no_progress, out)
        _build_indexes(conn, args.table, args.quantizer, out)

        queries = list(args.query or DEFAULT_QUERIES)
        probe_d = encoder.encode_queries(queries[:1])[0]
        probe_s = bm25.encode_queries(queries[:1])[0]
        force = _check_plan(conn, args.table, probe_d, probe_s, args.k_gather, out)
        stages = _Stages(conn, args.table, args, force)
        _run_queries(conn, stages, encoder, bm25, queries, args.k, out)
        if args.eval_queries:
            _evaluate(conn, stages, encoder, bm25, passages, args.eval_queries, out)


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None) -> int:
    """Run the demo; returns 0, or 1 with a message on stderr when a step fails."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    if args.max_pages < 0 or args.eval_queries < 0:
        print("pgsieve demo: --max-pages and --eval-queries must be >= 0", file=sys.stderr)
        return 2
    if args.k < 1 or args.rerank < 1 or args.k_gather < 1 or args.rrf_k < 0:
        print("pgsieve demo: -k, --rerank and --k-gather must be positive, --rrf-k >= 0", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stream = out or sys.stdout
    try:
        _run(args, stream)
    except DemoError as exc:
        print(f"pgsieve demo: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a database error mid-way: say which, without a bare traceback
        import psycopg

        if isinstance(exc, psycopg.Error):
            print(f"pgsieve demo: database error: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
