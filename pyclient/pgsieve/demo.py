"""``pgsieve demo``: man pages -> MiniLM -> pgvector table -> binary_scan index -> queries.

Everything runs locally: the embedded PostgreSQL, the packaged MiniLM and the
Debian man pages.  It shows the one thing pgsieve asks of a pgvector user:
``CREATE INDEX ... USING binary_scan``; the queries are unchanged pgvector SQL.

Encoding is the slow step on a CPU, so embeddings are cached next to the
server's data directory, keyed by the corpus and model fingerprints; a second
run only re-ingests and rebuilds the index.

If the extension or its index method is missing the demo stops with an
error: it never quietly falls back to a plain sequential scan.
"""

from __future__ import annotations

import argparse
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


class DemoError(RuntimeError):
    """A step failed; the message says which and what to do."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgsieve demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="embedded server data directory (default: pgsieve's per-user one)")
    p.add_argument("--url", help="use this running server instead of the embedded one")
    p.add_argument("--cache-dir", help="embedding cache (default: <data-dir>/../demo-cache)")
    p.add_argument("--max-pages", type=int, default=1500, help="man pages to load (default 1500: all)")
    p.add_argument("--table", default="manpages", help="table to (re)create (default manpages)")
    p.add_argument("--quantizer", choices=("mean", "sign"), default="mean")
    p.add_argument("--rerank", type=int, default=100, help="pgsieve.binary_rerank for the queries")
    p.add_argument("-k", type=int, default=5, help="results per query")
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
    has_am = conn.execute("SELECT 1 FROM pg_am WHERE amname = 'binary_scan'").fetchone()
    if not has_am:
        raise DemoError("the installed pgsieve has no binary_scan access method; "
                        "reinstall the extension (`pgsieve ext install`)")
    try:
        return str(conn.execute("SELECT pgsieve_kernel_level()").fetchone()[0])
    except Exception as exc:
        raise DemoError(f"pgsieve_kernel_level() failed: {exc}") from exc


# -- encoding with a cache ---------------------------------------------------

def _cached_embeddings(passages: Sequence[Any], encoder: Any, cache_dir: Path, out: TextIO,
                       progress: bool) -> np.ndarray:
    """Embeddings for passages, from ``cache_dir`` when the corpus and model match."""
    from .corpus import corpus_fingerprint
    from .ingest import document_text

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"manpages-{corpus_fingerprint(passages)}-{encoder.fingerprint()}.npy"
    if path.is_file():
        emb = np.load(path)
        if emb.shape == (len(passages), encoder.dim):
            _say(out, f"embeddings: {len(passages)} from cache {path}")
            return emb
    texts = [document_text(p) for p in passages]
    t0 = time.perf_counter()
    emb = _encode_with_progress(encoder, texts, progress)
    el = time.perf_counter() - t0
    _say(out, f"embeddings: encoded {len(texts)} passages in {el:.1f}s "
              f"({len(texts) / max(el, 1e-9):.0f}/s), cached in {path}")
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, emb)
    os.replace(tmp, path)
    return emb


def _encode_with_progress(encoder: Any, texts: list[str], progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    step = max(encoder.batch_size * 8, 256)
    parts = []
    with tqdm(total=len(texts), disable=not progress, desc="encode", unit="psg") as bar:
        for i in range(0, len(texts), step):
            parts.append(encoder.encode_documents(texts[i:i + step]))
            bar.update(len(texts[i:i + step]))
    return np.concatenate(parts) if parts else np.empty((0, encoder.dim), np.float32)


# -- queries -------------------------------------------------------------------

def _plan_uses_index(conn: Any, table: str, q: np.ndarray, k: int, force: bool = False) -> str:
    """EXPLAIN the demo query; the plan line naming the index, or '' if it is not used."""
    from psycopg import sql

    from .ingest import table_identifier

    with conn.transaction():
        if force:
            conn.execute("SET LOCAL enable_seqscan = off")
        rows = conn.execute(sql.SQL("EXPLAIN SELECT id FROM {} ORDER BY emb <=> %s LIMIT %s").format(
            table_identifier(table)), (q, k)).fetchall()
    lines = [r[0] for r in rows]
    hit = [ln.strip().removeprefix("->").strip() for ln in lines if "Index Scan" in ln]
    return hit[0] if hit else ""


def _labels(conn: Any, table: str, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    from psycopg import sql

    from .ingest import table_identifier

    rows = conn.execute(sql.SQL("SELECT id, title, doc_id FROM {} WHERE id = ANY(%s)").format(
        table_identifier(table)), (list(ids),)).fetchall()
    return {int(r[0]): (r[1], r[2]) for r in rows}


def _run_queries(conn: Any, table: str, encoder: Any, queries: Sequence[str], k: int, rerank: int,
                 out: TextIO) -> None:
    from .search import binary_search, exact_search

    qv = encoder.encode_queries(list(queries))
    plan = _plan_uses_index(conn, table, qv[0], k)
    force = not plan
    if force:  # never pretend: say why the index is forced on a small table
        _say(out, "note: on a table this small the planner prefers a sequential scan; "
                  "forcing the index with SET LOCAL enable_seqscan = off")
        plan = _plan_uses_index(conn, table, qv[0], k, force=True)
        if not plan:
            raise DemoError("the binary_scan index is not used even with enable_seqscan = off; "
                            "check the index and its operator class")
    _say(out, f"plan: {plan}")
    shown_sql = False
    for text, q in zip(queries, qv):
        binary_search(conn, table, q, k=k, rerank=rerank, force_index=force)  # warm up; time the 2nd
        res = binary_search(conn, table, q, k=k, rerank=rerank, force_index=force)
        exact = exact_search(conn, table, q, k=k)
        if not shown_sql:
            _say(out, "sql:\n  " + res.sql.replace("\n", "\n  ") + "   -- %s = query vector, k")
            shown_sql = True
        overlap = len(set(res.ids) & set(exact.ids)) / max(len(exact.ids), 1)
        _say(out, f"\nquery: {text!r}  ({res.elapsed_ms:.1f} ms with binary_scan; exact scan "
                  f"{exact.elapsed_ms:.1f} ms; recall@{k} vs exact {overlap:.2f})")
        labels = _labels(conn, table, res.ids)
        for rank, (pid, score) in enumerate(zip(res.ids, res.scores), 1):
            title, doc_id = labels.get(pid, ("?", "?"))
            _say(out, f"  {rank}. {title:<24} {score:.4f}  {doc_id}")


# -- main ----------------------------------------------------------------------

def _run(args: argparse.Namespace, out: TextIO) -> None:
    import psycopg

    from .corpus import load_manpages
    from .encoders import DenseEncoder
    from .ingest import create_binary_index, create_corpus_table, ingest_passages

    url, cache_root = _server_url(args, out)
    with psycopg.connect(url, autocommit=True) as conn:
        level = _prepare_db(conn)
        _say(out, f"database: {DEMO_DB} (server kernels: {level})")

        t0 = time.perf_counter()
        passages = load_manpages(max_pages=args.max_pages)
        _say(out, f"corpus: {len({p.page for p in passages})} man pages, {len(passages)} passages "
                  f"({time.perf_counter() - t0:.1f}s)")

        encoder = DenseEncoder(args.model_path, device=args.device, batch_size=args.batch_size)
        emb = _cached_embeddings(passages, encoder, cache_root, out, not args.no_progress)

        create_corpus_table(conn, args.table, encoder.dim, drop=True)
        t0 = time.perf_counter()
        n = ingest_passages(conn, args.table, passages, embeddings=emb, progress=not args.no_progress)
        _say(out, f"ingest: {n} rows into {args.table} with binary COPY ({time.perf_counter() - t0:.1f}s)")

        build_s = create_binary_index(conn, args.table, "vector_cosine_ops", args.quantizer)
        size = conn.execute("SELECT pg_size_pretty(sum(pg_relation_size(indexrelid))) FROM pg_index "
                            "WHERE indrelid = %s::regclass", (args.table,)).fetchone()[0]
        _say(out, f"index: CREATE INDEX ON {args.table} USING binary_scan (emb vector_cosine_ops) "
                  f"WITH (quantizer = '{args.quantizer}') built in {build_s:.2f}s, {size}")
        conn.execute(f"ANALYZE {args.table}")

        _run_queries(conn, args.table, encoder, args.query or DEFAULT_QUERIES, args.k, args.rerank, out)


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None) -> int:
    """Run the demo; returns 0, or 1 with a message on stderr when a step fails."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    if args.max_pages < 1 or args.k < 1 or args.rerank < 1:
        print("pgsieve demo: --max-pages, -k and --rerank must be positive", file=sys.stderr)
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
