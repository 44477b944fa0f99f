"""Sharding on an existing engine: a coordinator + N shard servers with ``postgres_fdw``, and its benchmark.

The recipe (README "Sharding with postgres_fdw") as code, used by ``tests/test_sharding.py`` and by this
benchmark:

* every shard is a plain PostgreSQL with pgvector + pgsieve holding a table ``docs`` and the real indexes
  (``binary_scan`` on the dense column, ``sparse_block`` on the sparse one, ``multivec_fde`` on the token sets);
* the coordinator has pgvector + pgsieve (for the types and operators) and ``postgres_fdw``; one foreign server
  per shard with ``extensions 'vector,pgsieve'`` (so ``<=>``, ``<#>``, ``@#`` and the types' literals are
  shippable); ``docs`` is ``PARTITION BY HASH (id)`` and each partition is a foreign table on one shard;
* ``SELECT ... ORDER BY <col> <op> q LIMIT k`` on the coordinator plans as Limit → Merge Append of one Foreign
  Scan per shard whose remote SQL is ``ORDER BY <col> OPERATOR(public.<op>) q``: every shard answers with its
  own index scan, in distance order, and the coordinator merges the streams and stops after k rows (each
  shard sends ``fetch_size`` rows per round trip; set it to the k you use).

Benchmark (``python bench/sharding.py --n 30000 --scale 10000,100000 --mv-scale 1000,10000 --update-md``; ``--n 0``
skips the shard comparison, ``--render`` re-renders a results file): the same queries on one server vs a
coordinator + 3 shards at equal total rows (recall@10 against the exact scan, p50 / p95 latency of one client,
throughput of ``--clients`` concurrent clients), and how load time, build time, index size, recall and query
latency grow with the row count per access method.  All servers run on this machine (loopback, unix sockets), so
3 shards share its cores.  ``multivec_fde`` rows are the corpus' token sets (bench/mvtokens) and, past the
corpus size (``--corpus``), noisy copies of them (``grown_tokens``, loaded by binary COPY; ``--mv-format int8``
stores them at a quarter of the bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pgsieve import server  # noqa: E402

TABLE = "docs"

#: access method -> (index column / opclass, ORDER BY expression with the query placeholder, query cast)
ACCESS_METHODS: dict[str, tuple[str, str]] = {
    "binary_scan": ("emb vector_cosine_ops", "emb <=> %s::vector"),
    "sparse_block": ("sp", "sp <#> %s::sparsevec"),
    "multivec_fde": ("toks", "toks @# %s::multivec"),
}
COLUMN_OF = {"binary_scan": "emb", "sparse_block": "sp", "multivec_fde": "toks"}

#: Settings under which every pgsieve index returns exactly the sequential scan's order (re-rank everything,
#: score every query term, never skip a block); with a sparse_block index built by EXACT_SPARSE_RELOPTIONS.
EXACT_SETTINGS: dict[str, str] = {
    "pgsieve.binary_rerank": "1000000",
    "pgsieve.binary_oversample": "1",
    "pgsieve.fde_rerank": "1000000",
    "pgsieve.fde_oversample": "1",
    "pgsieve.sparse_query_cut": "0",
    "pgsieve.sparse_heap_factor": "0",
}
EXACT_SPARSE_RELOPTIONS = "n_postings = 1000000, max_fraction = 1000"


# --- formatting values for COPY (text format keeps float32 values bit for bit) ----------------------------------


def vector_text(v: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.9g}" for x in np.asarray(v, np.float32)) + "]"


def sparse_text(indices: Sequence[int], values: Sequence[float], dim: int) -> str:
    """pgvector's sparsevec text; ``indices`` 0-based."""
    return "{" + ",".join(f"{int(i) + 1}:{float(np.float32(x)):.9g}" for i, x in zip(indices, values)) + f"}}/{dim}"


def multivec_text(tokens: np.ndarray) -> str:
    return "[" + ",".join(vector_text(t) for t in np.asarray(tokens, np.float32)) + "]"


@dataclass
class Rows:
    """Columns of a ``docs`` table as text: ids and, per column present, one literal per row."""

    ids: list[int]
    columns: dict[str, list[str]]  # emb / sp / toks -> literals
    types: dict[str, str]  # column -> SQL type, e.g. vector(384)

    def ddl(self) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in self.types.items())
        return f"id bigint NOT NULL, {cols}"

    def take(self, positions: Iterable[int]) -> Rows:
        pos = list(positions)
        return Rows([self.ids[p] for p in pos], {c: [v[p] for p in pos] for c, v in self.columns.items()}, self.types)


def copy_rows(conn: psycopg.Connection, rows: Rows, table: str = TABLE) -> None:
    names = ["id", *rows.columns]
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(n) for n in names)
    )
    with conn.cursor().copy(stmt) as copy:
        cols = [rows.columns[c] for c in rows.columns]
        for i, ident in enumerate(rows.ids):
            copy.write_row([ident, *(c[i] for c in cols)])


# --- servers ---------------------------------------------------------------------------------------------------


@dataclass
class Node:
    """One embedded PostgreSQL server (unix socket only) and the database the recipe uses on it."""

    data_dir: Path
    socket_dir: str
    port: int
    dbname: str

    @property
    def url(self) -> str:
        return server.url(self.data_dir, dbname=self.dbname)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)


def start_node(data_dir: Path, dbname: str) -> Node:
    """Start (initdb on first use) a server in ``data_dir`` and create ``dbname`` with vector + pgsieve."""
    admin = server.start(data_dir)
    st = server.status(data_dir)
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    node = Node(data_dir, st["socket_dir"], int(st["port"]), dbname)
    with node.connect() as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgsieve")
    return node


@dataclass
class Cluster:
    """A coordinator and its shards, each an embedded server in a directory under ``base``."""

    base: Path
    coordinator: Node
    shards: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, base: Path, n_shards: int, dbname: str = "pgsieve_shard") -> Cluster:
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)  # as root, the servers run as embedded_postgres and must reach their data dirs
        coordinator = start_node(base / "coordinator", dbname)
        shards = [start_node(base / f"shard{i}", dbname) for i in range(n_shards)]
        return cls(base, coordinator, shards)

    def nodes(self) -> list[Node]:
        return [self.coordinator, *self.shards]

    def stop(self) -> None:
        for node in self.nodes():
            server.stop(node.data_dir)


def create_shard_table(conn: psycopg.Connection, rows: Rows, table: str = TABLE) -> None:
    conn.execute(sql.SQL("CREATE TABLE {} (" + rows.ddl() + ")").format(sql.Identifier(table)))


def create_coordinator_table(
    conn: psycopg.Connection, shards: Sequence[Node], rows: Rows, *, table: str = TABLE, fetch_size: int = 10
) -> None:
    """postgres_fdw servers for ``shards`` and the hash-partitioned ``table`` whose partitions are on them."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    conn.execute(sql.SQL("CREATE TABLE {} (" + rows.ddl() + ") PARTITION BY HASH (id)").format(sql.Identifier(table)))
    for i, shard in enumerate(shards):
        srv = sql.Identifier(f"shard{i}")
        options = {
            "host": shard.socket_dir,  # a unix socket directory; a host name or address for remote shards
            "port": str(shard.port),
            "dbname": shard.dbname,
            "extensions": "vector,pgsieve",  # pgvector's and pgsieve's operators and types are shippable
            "fetch_size": str(fetch_size),
            "async_capable": "true",
        }
        conn.execute(
            sql.SQL("CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ({})").format(
                srv, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in options.items())
            )
        )
        conn.execute(
            sql.SQL("CREATE USER MAPPING FOR CURRENT_USER SERVER {} OPTIONS (user {})").format(
                srv, sql.Literal("postgres")
            )
        )
        conn.execute(
            sql.SQL(
                "CREATE FOREIGN TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER {}) "
                "SERVER {} OPTIONS (schema_name 'public', table_name {})"
            ).format(
                sql.Identifier(f"{table}_shard{i}"), sql.Identifier(table), sql.Literal(len(shards)), sql.Literal(i),
                srv, sql.Literal(table),
            )
        )


def shard_of(conn: psycopg.Connection, ids: Sequence[int], n_shards: int, table: str = TABLE) -> list[int]:
    """The hash partition (= shard) of each id, as the coordinator routes it (``satisfies_hash_partition``)."""
    rows = conn.execute(
        "SELECT r FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(id, o), "
        "LATERAL (SELECT r FROM generate_series(0, %s - 1) AS r "
        "         WHERE satisfies_hash_partition(%s::regclass, %s, r, u.id)) AS p ORDER BY o",
        (list(ids), n_shards, table, n_shards),
    ).fetchall()
    assert len(rows) == len(ids)
    return [int(r[0]) for r in rows]


def load_cluster(cluster: Cluster, rows: Rows, *, fetch_size: int = 10) -> None:
    """Create the tables and load ``rows``: each shard directly (bulk load), routed as the coordinator would."""
    with cluster.coordinator.connect() as coord:
        create_coordinator_table(coord, cluster.shards, rows, fetch_size=fetch_size)
        where = shard_of(coord, rows.ids, len(cluster.shards))
    for i, shard in enumerate(cluster.shards):
        with shard.connect() as conn:
            create_shard_table(conn, rows)
            copy_rows(conn, rows.take(p for p, s in enumerate(where) if s == i))
            conn.execute(f"ANALYZE {TABLE}")


def build_indexes(conn: psycopg.Connection, ams: Iterable[str], *, exact_sparse: bool = False,
                  maintenance_work_mem: str | None = None) -> dict[str, float]:
    """CREATE INDEX of each access method on ``docs``; seconds per index."""
    took: dict[str, float] = {}
    if maintenance_work_mem:
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(maintenance_work_mem)))
    for am in ams:
        column, _ = ACCESS_METHODS[am]
        with_ = f" WITH ({EXACT_SPARSE_RELOPTIONS})" if am == "sparse_block" and exact_sparse else ""
        t0 = time.perf_counter()
        conn.execute(f"CREATE INDEX {TABLE}_{am}_idx ON {TABLE} USING {am} ({column}){with_}")
        took[am] = time.perf_counter() - t0
    conn.execute(f"ANALYZE {TABLE}")
    return took


def set_database_defaults(node: Node, settings: dict[str, str]) -> None:
    """``ALTER DATABASE ... SET``: the defaults of every new session, including postgres_fdw's."""
    with node.connect() as conn:
        for name, value in settings.items():
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(node.dbname), sql.SQL(name), sql.Literal(value)
                )
            )


def topk_statement(am: str, k: int) -> str:
    _, order = ACCESS_METHODS[am]
    dist = order.replace("%s", "%(q)s")
    return f"SELECT id, {dist} AS dist FROM {TABLE} ORDER BY {dist} LIMIT {int(k)}"


def topk(conn: psycopg.Connection, am: str, query: str, k: int = 10) -> list[tuple[int, float]]:
    return [(int(r[0]), float(r[1])) for r in conn.execute(topk_statement(am, k), {"q": query}).fetchall()]


def explain(conn: psycopg.Connection, am: str, query: str, k: int = 10) -> str:
    rows = conn.execute("EXPLAIN (VERBOSE, COSTS OFF) " + topk_statement(am, k), {"q": query}).fetchall()
    return "\n".join(r[0] for r in rows)


# --- data from the bench corpus ----------------------------------------------------------------------------------


@dataclass
class Data:
    rows: Rows
    queries: dict[str, list[str]]  # access method -> query literals
    info: dict[str, Any]
    dense: np.ndarray | None = None  # the raw vectors behind rows (to grow the corpus)
    sparse: list[tuple[np.ndarray, np.ndarray]] | None = None
    sparse_dim: int = 0
    query_values: dict[str, list[Any]] = field(default_factory=dict)  # numpy / SparseVector queries per AM
    tokens: Any = None  # bench.mvtokens' token sets behind rows' toks (to grow multivec_fde rows)


def corpus_data(limit: int, *, n_queries: int = 10, tokens: str = "fake", with_tokens: bool = True) -> Data:
    """The first ``limit`` man-page passages of the bench corpus: MiniLM dense vectors (``binary_scan``), BM25
    sparse vectors (``sparse_block``) and token sets (``multivec_fde``; ``tokens='fake'`` is bench/mvtokens'
    deterministic stand-in, ``'minilm'`` the real late-interaction encoder), with known-item queries."""
    from bench import common as C
    from pgsieve.encoders.bm25 import BM25Encoder

    enc = C.encoded_corpus(limit)
    corpus = enc.corpus
    n = len(corpus.passages)
    qidx = list(range(min(n_queries, len(corpus.queries))))
    bm25 = BM25Encoder()
    tok = bm25.tokenize(corpus.passages)
    bm25.stats.update(tok)
    sp_docs = bm25.encode_token_ids(tok)
    sp_queries = bm25.encode_queries([corpus.queries[i] for i in qidx])
    dim = enc.docs.shape[1]
    columns = {
        "emb": [vector_text(v) for v in enc.docs],
        "sp": [sparse_text(s.indices(), s.values(), bm25.dim) for s in sp_docs],
    }
    types = {"emb": f"vector({dim})", "sp": f"sparsevec({bm25.dim})"}
    queries = {
        "binary_scan": [vector_text(enc.queries[i]) for i in qidx],
        "sparse_block": [sparse_text(s.indices(), s.values(), bm25.dim) for s in sp_queries],
    }
    info: dict[str, Any] = {"passages": n, "queries": len(qidx), "dense": enc.encoder, "sparse": "BM25 (MiniLM WordPiece)"}
    if with_tokens:
        from bench import mvtokens

        mv = mvtokens.token_encodings(limit, encoder=tokens)
        columns["toks"] = [multivec_text(mv.docs[i]) for i in range(n)]
        types["toks"] = f"multivec({mv.docs.dim})"
        queries["multivec_fde"] = [multivec_text(mv.queries[i]) for i in qidx]
        info["tokens"] = mv.encoder
    sparse = [(np.asarray(s.indices(), np.int32), np.asarray(s.values(), np.float32)) for s in sp_docs]
    values = {"binary_scan": [enc.queries[i] for i in qidx], "sparse_block": list(sp_queries)}
    return Data(Rows(list(range(1, n + 1)), columns, types), queries, info, enc.docs, sparse, bm25.dim, values,
                mv.docs if with_tokens else None)


def grown_tokens(tokens: Any, i: int, noise: float = 0.02, seed: int = 2) -> np.ndarray:
    """Token set of row i (0-based) of a grown multivec_fde table: the corpus' own up to its size, then a noisy
    copy of passage i % R (every token perturbed per dimension, re-normalized), deterministic in (seed, i)."""
    r = len(tokens.offsets) - 1
    src = np.asarray(tokens[i % r], np.float32)
    if i < r:
        return src
    rng = np.random.default_rng([seed, i])
    x = src + rng.normal(0.0, noise, size=src.shape).astype(np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def copy_grown_tokens(conn: psycopg.Connection, tokens: Any, n: int, table: str = TABLE) -> None:
    """Rows 1..n of a multivec_fde growth table by binary COPY (text literals of 10^5 token sets would take
    gigabytes in the client)."""
    from pgsieve.adapters import register_pgsieve

    register_pgsieve(conn)
    stmt = sql.SQL("COPY {} (id, toks) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table))
    with conn.cursor().copy(stmt) as copy:
        copy.set_types(["bigint", "multivec"])
        for i in range(n):
            copy.write_row([i + 1, grown_tokens(tokens, i)])


# --- benchmark ---------------------------------------------------------------------------------------------------


def _latencies(url: str, am: str, queries: Sequence[str], reps: int, settings: dict[str, str]) -> list[float]:
    out: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("SET {} = {}").format(sql.SQL(name), sql.Literal(value)))
        stmt = topk_statement(am, 10)
        conn.execute(stmt, {"q": queries[0]}).fetchall()  # warm-up: connections, caches
        for _ in range(reps):
            for q in queries:
                t0 = time.perf_counter()
                conn.execute(stmt, {"q": q}).fetchall()
                out.append((time.perf_counter() - t0) * 1000.0)
    return out


def _throughput(url: str, am: str, queries: Sequence[str], clients: int, seconds: float) -> float:
    """Queries per second of ``clients`` concurrent connections looping over ``queries`` for ``seconds``."""
    done = [0] * clients
    stop = threading.Event()
    stmt = topk_statement(am, 10)

    def worker(slot: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            i = slot
            while not stop.is_set():
                conn.execute(stmt, {"q": queries[i % len(queries)]}).fetchall()
                done[slot] += 1
                i += 1

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # connections up
    start = sum(done)
    t0 = time.perf_counter()
    time.sleep(seconds)
    count = sum(done) - start
    elapsed = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(timeout=60)
    return count / elapsed


def _exact_ids(url: str, am: str, queries: Sequence[str], k: int = 10) -> list[list[int]]:
    """Exact top-k ids (sequential scan + sort) of each query: the truth recall is measured against."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET enable_indexscan = off")
        conn.execute("SET enable_bitmapscan = off")
        return [[i for i, _ in topk(conn, am, q, k)] for q in queries]


def _recall(url: str, am: str, queries: Sequence[str], truth: list[list[int]], settings: dict[str, str],
            k: int = 10) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("SET {} = {}").format(sql.SQL(name), sql.Literal(value)))
        got = [[i for i, _ in topk(conn, am, q, k)] for q in queries]
    return float(np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth)]))


def _pct(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _index_mb(conn: psycopg.Connection, am: str) -> float:
    row = conn.execute("SELECT pg_relation_size(%s::regclass)", (f"{TABLE}_{am}_idx",)).fetchone()
    return row[0] / 2**20


def _scaled(data: Data, n: int, seed: int) -> Data:
    """``n`` rows grown from the corpus (bench.common.scaled_embeddings for dense; sparse.grow for BM25)."""
    from bench import common as C
    from bench.suites import sparse as S

    assert data.dense is not None and data.sparse is not None
    emb, _ = C.scaled_embeddings(data.dense, n, noise=0.02, seed=seed)
    grown = S.grow(S.CSR.from_rows(data.sparse), n, seed)
    cols = {"emb": [vector_text(v) for v in emb], "sp": [sparse_text(*grown.row(i), data.sparse_dim) for i in range(n)]}
    types = {"emb": data.rows.types["emb"], "sp": data.rows.types["sp"]}
    return Data(Rows(list(range(1, n + 1)), cols, types), data.queries, dict(data.info, rows=n))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30000, help="total rows for the 1 vs 3 shards comparison")
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--scale", default="10000,100000", help="row counts for the growth table (comma separated)")
    ap.add_argument("--mv-scale", default="1000,3000", help="row counts for multivec_fde (token sets are large)")
    ap.add_argument("--scale-ams", default="binary_scan,sparse_block",
                    help="access methods of the growth table at --scale rows (multivec_fde: --mv-scale)")
    ap.add_argument("--build-mwm", default="2GB",
                    help="maintenance_work_mem of the growth table's builds (sparse_block holds its documents in "
                         "memory: BM25 rows need about 1.1 kB each)")
    ap.add_argument("--corpus", type=int, default=2000, help="real passages the rows are grown from")
    ap.add_argument("--tokens", default="minilm", choices=["minilm", "fake"],
                    help="token encoder of the multivec_fde rows (bench/mvtokens; 'fake' is for smoke runs only)")
    ap.add_argument("--mv-format", default="float32", choices=["float32", "float16", "int8"],
                    help="storage format of the multivec_fde rows (int8: a quarter of the bytes, for large growth runs)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--base", type=Path, default=None, help="directory for the servers (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "sharding.json")
    ap.add_argument("--update-md", action="store_true", help="replace the Sharding section of BENCHMARKS.md")
    ap.add_argument("--render", action="store_true", help="only render --json (with the arguments it ran with)")
    args = ap.parse_args(argv)
    if args.render:
        results = json.loads(args.json.read_text())
        md = markdown(results, argparse.Namespace(**results["meta"]["args"]))
        print(md)
        if args.update_md:
            update_benchmarks_md(md)
        return 0
    base = args.base or Path(tempfile.mkdtemp(prefix="pgsieve-sharding-"))
    results = run(args, base)
    results["meta"]["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    md = markdown(results, args)
    print(md)
    if args.update_md:
        update_benchmarks_md(md)
    if args.base is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def _compare_shards(args: argparse.Namespace, base: Path, data: Data, ams: list[str]) -> list[dict[str, Any]]:
    """1 server vs coordinator + shards, equal total rows, default (approximate) index settings."""
    rows_out: list[dict[str, Any]] = []
    grown = _scaled(data, args.n, seed=1)
    single = Cluster.start(base / "single", 0)
    sharded = Cluster.start(base / "sharded", args.shards)
    try:
        with single.coordinator.connect() as conn:
            create_shard_table(conn, grown.rows)
            copy_rows(conn, grown.rows)
            build_indexes(conn, ams)
        load_cluster(sharded, grown.rows, fetch_size=10)
        for shard in sharded.shards:
            with shard.connect() as conn:
                build_indexes(conn, ams)
        for am in ams:
            qs = grown.queries[am]
            truth = _exact_ids(single.coordinator.url, am, qs)
            for system, node in (("1 server", single.coordinator), (f"coordinator + {args.shards} shards", sharded.coordinator)):
                lat = _latencies(node.url, am, qs, args.reps, {})
                qps = _throughput(node.url, am, qs, args.clients, args.seconds)
                rec = _recall(node.url, am, qs, truth, {})
                rows_out.append({"suite": "sharding", "system": system, "config": am, "n": args.n,
                                 "recall_at_10": rec, "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "qps": qps,
                                 "clients": args.clients})
                print(json.dumps(rows_out[-1]), flush=True)
    finally:
        single.stop()
        sharded.stop()
    shutil.rmtree(base / "single", ignore_errors=True)
    shutil.rmtree(base / "sharded", ignore_errors=True)
    return rows_out


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    t_start = time.time()
    data = corpus_data(args.corpus, n_queries=20, tokens=args.tokens, with_tokens=True)
    meta: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t_start)),
        "load_before": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "corpus": data.info,
    }
    ams = ["binary_scan", "sparse_block"]
    if args.n > 0:
        rows_out = _compare_shards(args, base, data, ams)
    else:
        rows_out = []

    # growth per access method on one server
    scale_rows: list[dict[str, Any]] = []
    sizes = {am: [int(x) for x in args.scale.split(",") if x] for am in args.scale_ams.split(",") if am}
    sizes["multivec_fde"] = [int(x) for x in args.mv_scale.split(",") if x]
    for am, ns in sizes.items():
        for n in ns:
            grown = am == "multivec_fde" and n > len(data.rows.ids)
            if am == "multivec_fde":
                # beyond the corpus: noisy copies of its token sets, like the other columns' growth
                rows = data.rows.take(range(min(n, len(data.rows.ids))))
                mv_type = rows.types["toks"]
                if args.mv_format != "float32":
                    mv_type = f"multivec({data.tokens.dim}, {args.mv_format})"
                rows = Rows(rows.ids, {"toks": rows.columns["toks"]}, {"toks": mv_type})
            else:
                g = _scaled(data, n, seed=2)
                col = COLUMN_OF[am]
                rows = Rows(g.rows.ids, {col: g.rows.columns[col]}, {col: g.rows.types[col]})
            node_dir = base / f"scale-{am}-{n}"
            c = Cluster.start(node_dir, 0)
            try:
                with c.coordinator.connect() as conn:
                    create_shard_table(conn, rows)
                    t0 = time.perf_counter()
                    if grown:
                        copy_grown_tokens(conn, data.tokens, n)
                    else:
                        copy_rows(conn, rows)
                    load_s = time.perf_counter() - t0
                    build_s = build_indexes(conn, [am], maintenance_work_mem=args.build_mwm)[am]
                    mb = _index_mb(conn, am)
                forced = {"enable_seqscan": "off"}
                lat = _latencies(c.coordinator.url, am, data.queries[am], args.reps, forced)
                truth = _exact_ids(c.coordinator.url, am, data.queries[am])
                rec = _recall(c.coordinator.url, am, data.queries[am], truth, forced)
                scale_rows.append({"suite": "sharding-scale", "system": "pgsieve", "config": am, "n": n,
                                   "recall_at_10": rec, "build_s": build_s, "load_s": load_s, "index_mb": mb,
                                   "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95)})
                print(json.dumps(scale_rows[-1]), flush=True)
            finally:
                c.stop()
                shutil.rmtree(node_dir, ignore_errors=True)
    meta["load_after"] = list(os.getloadavg())
    meta["seconds"] = time.time() - t_start
    return {"meta": meta, "shards": rows_out, "scale": scale_rows}


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    m = results["meta"]
    lines = [
        "## Sharding (postgres_fdw) and growth with rows",
        "",
        f"`python bench/sharding.py --n {args.n} --shards {args.shards} --scale {args.scale} --mv-scale {args.mv_scale} "
        f"--corpus {args.corpus} --clients {args.clients} --seconds {args.seconds:g} --update-md` "
        f"({m['started']}, {m['seconds'] / 60:.0f} min).",
        "",
        f"- Machine: {m['cpus']} cores shared with other jobs (load average {m['load_before'][0]:.2f} at start, "
        f"{m['load_after'][0]:.2f} at the end); every server is an embedded PostgreSQL 18 on this machine, "
        "talking over unix sockets, so the shards share the same cores: this measures the recipe's overhead, "
        "not a speed-up from more machines.",
        f"- Rows: {m['corpus']['passages']} real man-page passages (MiniLM dense, BM25 sparse) grown to the row "
        "count with `bench.common.scaled_embeddings` (noisy copies) and `bench.suites.sparse.grow`; 20 known-item "
        "queries; top-10; default index settings.",
        "",
        f"### 1 server vs coordinator + {args.shards} shards ({args.n:,} rows in total)",
        "",
        "The same query text on both: `SELECT id, <col> <op> q FROM docs ORDER BY <col> <op> q LIMIT 10`; on the "
        "coordinator it runs as Limit → Merge Append of one Foreign Scan per shard (`fetch_size` 10), each shard "
        "answering with its own index. Recall@10 is against the exact top-10 of the same rows (sequential scan).",
        "",
        f"| access method | system | recall@10 | p50 ms | p95 ms | throughput q/s ({args.clients} clients) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results["shards"]:
        lines.append(
            f"| {r['config']} | {r['system']} | {r['recall_at_10']:.3f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['qps']:.1f} |"
        )
    lines += [
        "",
        "### Growth per access method (one server)",
        "",
        "Load = COPY of the rows; build = `CREATE INDEX` at the defaults; p50/p95 of the top-10 query through "
        "the index (`enable_seqscan = off`), recall@10 against the exact scan of the same rows. `multivec_fde` "
        f"rows are the corpus' own token sets ({args.tokens} encoder, stored as "
        f"{getattr(args, 'mv_format', 'float32')}) up to the "
        "corpus size, then noisy re-normalized copies of them (`grown_tokens`, binary COPY); the other columns "
        "grow the same way (bench.common.scaled_embeddings, sparse.grow).",
        "",
        "| access method | rows | load s | build s | index MB | recall@10 | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["scale"]:
        lines.append(
            f"| {r['config']} | {r['n']:,} | {r['load_s']:.1f} | {r['build_s']:.2f} | {r['index_mb']:.1f} | "
            f"{r['recall_at_10']:.3f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def update_benchmarks_md(section: str, path: Path = REPO / "BENCHMARKS.md") -> None:
    text = path.read_text()
    head = section.splitlines()[0]
    start = text.find(head)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + section + (text[nxt + 1 :] if nxt >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
