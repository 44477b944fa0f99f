"""Suite ``multivector``: late-interaction (ColBERT-style MaxSim) retrieval over ``multivec``, exact and approximate.

One run, one set of token vectors (the real man-page passages and known-item queries, encoded once into one
vector per token and cached, see ``bench/mvtokens.py``), one exact ground truth: the exhaustive MaxSim top-10
computed in numpy (float32 products, maxima summed in float64, ties -> smaller id). Measured:

- ``storage``         bytes per document (average ``pg_column_size``) of the same tokens as ``vector(d)[]`` and as
                      ``multivec`` float32 / float16 / int8, and their ratios to ``vector[]``;
- ``seqscan``         exhaustive MaxSim in SQL: ``ORDER BY mv @# q LIMIT 10`` with index scans off (server
                      ``Execution Time`` from ``EXPLAIN ANALYZE`` and client round trip);
- ``numpy``/``torch`` exhaustive MaxSim in process, one thread, on the same tokens (one GEMM over every token,
                      then the max per document and the sum over query tokens);
- ``pgsieve_fde``     the ``multivec_fde`` index (MUVERA FDE codes, Hamming gather, exact MaxSim re-rank) at its
                      default build parameters and a smaller FDE, ``pgsieve.fde_rerank`` sweep;
- ``sparse_rerank``   BM25 on the same passages (``sparse_block`` index) gathers K candidates, exact MaxSim
                      re-ranks them: as a plain SQL subquery, and with ``maxsim_rerank()`` without and with
                      candidate pruning (CP, ``alpha``) and early exit (EE, ``beta``); BM25 alone for reference;
- ``throughput``      the SQL MaxSim kernel (``SELECT sum(maxsim(col, q))`` over every row, per format) against
                      numpy float32 matmul + max on the same tokens (``bench/maxsim_throughput.py``'s definitions);
- ``agreement``       the top-10 of int8 (and float16) documents against float32's, over every benchmark query.

Then issue 4's acceptance points, computed from the rows. Entry point:
``python bench/run.py --suite multivector [--queries 200] [--update-md]``; the table holds every real passage
(``--n`` caps it; there is no synthetic growth for token sets).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import common as C
from .. import maxsim_throughput as MT
from .. import mvtokens as MV
from . import sparse as SP

SUITE = "multivector"
SYSTEM_NAMES = ["storage", "seqscan", "numpy", "torch", "pgsieve_fde", "sparse_rerank", "throughput", "agreement"]
TABLE = "bench_mv"
STORE = "bench_mv_storage"
MV_DB = "pgsieve_bench_multivector"
K = 10
#: the document columns searched: the float32 tokens, and the same tokens stored as int8 (4x fewer bytes to detoast
#: per exact MaxSim; recall is still measured against the float32 exhaustive MaxSim)
COLUMNS = {"mv": (TABLE, "float32"), "i8": (STORE, "int8")}
FDE_CONFIGS: list[tuple[str, dict[str, int]]] = [
    ("default", {}),                                        # reps 20, ksim 5, dproj 16: 10,240 bits
    ("small", {"reps": 10, "ksim": 4, "dproj": 8}),         # 1,280 bits
]
#: (FDE config, column) pairs measured
FDE_RUNS = [("default", "mv"), ("small", "mv"), ("default", "i8")]
FDE_RERANK = [100, 200, 400, 800, 1000, 1600]
FDE_RERANK_I8 = [200, 400, 800, 1000, 1600]
CANDIDATES = [50, 100, 200, 400]
CP_ALPHA, EE_BETA = 0.03, 3            # the paper's settings (issue 4)
#: maxsim_rerank variants (label, alpha, beta): the issue's CP / EE / both, plus looser settings, since BM25 scores
#: spread much wider than a strong dense first stage's (for which alpha = 0.03 was tuned)
RERANK_VARIANTS = [("none", None, None), ("CP", CP_ALPHA, None), ("EE", None, EE_BETA), ("CP+EE", CP_ALPHA, EE_BETA),
                   ("CP 0.3", 0.3, None), ("EE 10", None, 10)]
RERANK_VARIANTS_I8 = [("none", None, None), ("EE 10", None, 10)]
CANDIDATES_I8 = [100, 200, 400]
SEQSCAN_QUERIES = 40
THROUGHPUT_QUERIES = 5
KNN = f"SELECT id FROM {TABLE} ORDER BY mv @# %(q)s LIMIT {K}"


def knn(column: str) -> str:
    return f"SELECT id FROM {COLUMNS[column][0]} ORDER BY {column} @# %(q)s LIMIT {K}"
NO_INDEX = ["SET enable_indexscan = off", "SET enable_bitmapscan = off"]


def register(suites: dict, systems: dict) -> None:
    """Called from bench/suites/__init__.py."""
    suites[SUITE] = run
    systems[SUITE] = list(SYSTEM_NAMES)


def _ints(s: Any, default: list[int]) -> list[int]:
    if s is None:
        return list(default)
    if isinstance(s, list):
        return s
    return [int(x) for x in str(s).split(",") if x.strip()]


def _register(conn) -> None:
    from pgsieve.adapters import register_pgsieve
    register_pgsieve(conn)


@contextlib.contextmanager
def one_thread():
    """BLAS/OpenMP and torch limited to one thread (in-process baselines are single-threaded, like SQL)."""
    from threadpoolctl import threadpool_limits
    torch_threads = None
    try:
        import torch
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if torch is not None and torch_threads:
            torch.set_num_threads(torch_threads)


# ------------------------------------------------------------------------------------------------------------------
# Exact MaxSim in numpy
# ------------------------------------------------------------------------------------------------------------------

def quantized(tokens: np.ndarray, fmt: str) -> np.ndarray:
    """The float32 values a ``multivec`` of format ``fmt`` stores for ``tokens`` (what the server scores)."""
    if fmt == "float32":
        return tokens
    if fmt == "float16":
        return tokens.astype(np.float16).astype(np.float32)
    from pgsieve.adapters import quantize_int8
    codes, scales = quantize_int8(tokens)
    return (codes.astype(np.float32) * scales[:, None]).astype(np.float32)


def exact_scores(docs: MV.TokenSet, qtoks: Sequence[np.ndarray], formats: Sequence[str] = ("float32",),
                 chunk_tokens: int = 1 << 16) -> dict[str, np.ndarray]:
    """Every query's MaxSim against every document, per document format: {fmt: (Q, n) float64}.

    float32 products (BLAS), the max over each document's tokens, the sum over query tokens in float64.
    """
    n = len(docs)
    qall = np.ascontiguousarray(np.concatenate(qtoks), dtype=np.float32)
    qstarts = np.zeros(len(qtoks), np.int64)
    np.cumsum([q.shape[0] for q in qtoks[:-1]], out=qstarts[1:])
    out = {f: np.zeros((len(qtoks), n), np.float64) for f in formats}
    offs = docs.offsets
    d0 = 0
    while d0 < n:
        d1 = int(np.searchsorted(offs, offs[d0] + chunk_tokens, side="right")) - 1
        d1 = min(n, max(d1, d0 + 1))
        t = np.asarray(docs.tokens[offs[d0]:offs[d1]], dtype=np.float32)
        starts = (offs[d0:d1] - offs[d0]).astype(np.int64)
        for f in formats:
            s = quantized(t, f) @ qall.T                                  # (chunk tokens, query tokens)
            m = np.maximum.reduceat(s, starts, axis=0).astype(np.float64)  # (docs, query tokens)
            out[f][:, d0:d1] = np.add.reduceat(m, qstarts, axis=1).T
        d0 = d1
    return out


def topk_of(full: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    return SP._topk_full(full, k)


def overlap(a: np.ndarray, b: np.ndarray, k: int = K) -> float:
    """Mean |a_i ∩ b_i| / k over queries (strict: ids only)."""
    return float(np.mean([len(set(map(int, x[:k])) & set(map(int, y[:k]))) / k for x, y in zip(a, b)]))


# ------------------------------------------------------------------------------------------------------------------
# Database and tables
# ------------------------------------------------------------------------------------------------------------------

def _ext_script_hash() -> str:
    """sha256 of the installed extension scripts: a catalog made from other scripts is rebuilt (same version)."""
    h = hashlib.sha256()
    share = C._pg_bin().parent / "share" / "extension"
    for f in sorted(share.glob("pgsieve--*.sql")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def database(url: str) -> tuple[str, str | None]:
    """(url, error) of this suite's own database on the server: ``pgsieve_bench_multivector``.

    Its pgsieve catalog is created from the installed scripts; when those scripts changed since (new functions such
    as ``maxsim_rerank`` at the same extension version), the database is dropped and made again, so the catalog is
    always the one the installed library expects. Other suites' databases are never touched.
    """
    import psycopg
    from psycopg.conninfo import make_conninfo
    want = _ext_script_hash()
    own = make_conninfo(url, dbname=MV_DB)
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                            (MV_DB,)).fetchone()
        if row is not None and row[0] != f"pgsieve scripts {want}":
            C.log(f"dropping database {MV_DB}: its pgsieve catalog predates the installed scripts")
            admin.execute(f"DROP DATABASE {MV_DB} WITH (FORCE)")
            row = None
        if row is None:
            admin.execute(f"CREATE DATABASE {MV_DB}")
            admin.execute(f"COMMENT ON DATABASE {MV_DB} IS 'pgsieve scripts {want}'")
    with psycopg.connect(own, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn = C.connect(own)
    try:
        err = C.ensure_pgsieve(conn)
    finally:
        conn.close()
    return own, err


def load_tables(conn, docs: MV.TokenSet, bm25: SP.CSR, bm25_dim: int, fp: dict[str, Any]) -> dict[str, Any]:
    """``bench_mv(id, mv multivec(d), bm25 sparsevec)`` by binary COPY through pgsieve's adapters, and
    ``bench_mv_storage(id, va vector(d)[], f16 multivec(d, float16), i8 multivec(d, int8), bm25)`` from it in SQL
    (the same tokens: casts and typmod conversion on the server; bm25 again so that the int8 column has its own
    gather). Reused when the comment carries the same fingerprint."""
    from pgsieve.adapters import MultiVector
    from pgvector import SparseVector
    d = docs.dim
    key = json.dumps(fp, sort_keys=True)
    info: dict[str, Any] = {}
    row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class'), "
                       "obj_description(to_regclass(%s), 'pg_class')", (TABLE, STORE)).fetchone()
    if row and row[0] == key and row[1] == key:
        C.log(f"tables {TABLE}, {STORE} already loaded ({len(docs):,} rows)")
        return {"reloaded": False}
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}, {STORE}")
    conn.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, mv multivec({d}), bm25 sparsevec({bm25_dim})) "
                 "WITH (autovacuum_enabled = off)")
    t0 = time.perf_counter()
    nbytes = 0
    with conn.cursor() as cur:
        with cur.copy(f"COPY {TABLE} (id, mv, bm25) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "multivec", "sparsevec"])
            for i in range(len(docs)):
                ii, vv = bm25.row(i)
                m = MultiVector(np.asarray(docs[i], dtype=np.float32))
                nbytes += 8 + 4 * m.ntok * m.dim
                cp.write_row((i, m, SparseVector(dict(zip(ii.tolist(), vv.tolist())), bm25_dim)))
    info["copy_s"] = round(time.perf_counter() - t0, 1)
    info["copy_mb"] = round(nbytes / 2**20, 1)
    C.log(f"binary COPY of {len(docs):,} multivec rows ({info['copy_mb']} MB of tokens) in {info['copy_s']} s")
    conn.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")
    t0 = time.perf_counter()
    conn.execute(f"CREATE TABLE {STORE} (id int PRIMARY KEY, va vector({d})[], f16 multivec({d}, float16), "
                 f"i8 multivec({d}, int8), bm25 sparsevec({bm25_dim})) WITH (autovacuum_enabled = off)")
    conn.execute(f"INSERT INTO {STORE} SELECT id, mv::vector[], mv, mv, bm25 FROM {TABLE} ORDER BY id")
    conn.execute(f"VACUUM (FREEZE, ANALYZE) {STORE}")
    info["storage_table_s"] = round(time.perf_counter() - t0, 1)
    conn.execute("CHECKPOINT")
    for t in (TABLE, STORE):
        conn.execute(f"COMMENT ON TABLE {t} IS '" + key.replace("'", "''") + "'")
    info["reloaded"] = True
    return info


def storage_facts(conn, dim: int) -> dict[str, Any]:
    r = conn.execute(f"SELECT count(*), avg(pg_column_size(mv)), avg(multivec_ntok(mv)) FROM {TABLE}").fetchone()
    n, f32, ntok = int(r[0]), float(r[1]), float(r[2])
    s = conn.execute(f"SELECT avg(pg_column_size(va)), avg(pg_column_size(f16)), avg(pg_column_size(i8)), "
                     f"count(*) FILTER (WHERE pg_column_compression(va) IS NOT NULL) FROM {STORE}").fetchone()
    va, f16, i8 = float(s[0]), float(s[1]), float(s[2])
    out = {"docs": n, "avg_tokens": round(ntok, 2), "dim": dim, "raw_float32_bytes": round(ntok * dim * 4, 1),
           "bytes": {"vector[]": round(va, 1), "multivec float32": round(f32, 1),
                     "multivec float16": round(f16, 1), "multivec int8": round(i8, 1)},
           "vector_array_rows_compressed": int(s[3]),
           "table_mb": {TABLE: round(C.relation_mb(conn, TABLE), 1), STORE: round(C.relation_mb(conn, STORE), 1)}}
    out["ratio_to_vector_array"] = {k: round(v / va, 4) for k, v in out["bytes"].items()}
    out["bytes_per_token"] = {k: round(v / ntok, 2) for k, v in out["bytes"].items()}
    return out


# ------------------------------------------------------------------------------------------------------------------
# The suite
# ------------------------------------------------------------------------------------------------------------------

def run(ctx: C.Context) -> list[dict[str, Any]]:
    from pgsieve.adapters import MultiVector
    a = ctx.args
    data_dir = Path(getattr(a, "data_dir", C.DATA_DIR))
    limit = getattr(a, "limit_passages", None)
    enc = MV.token_encodings(limit, data_dir, getattr(a, "mv_encoder", "minilm") or "minilm")
    n = min(int(ctx.n), len(enc.docs))
    docs = enc.docs.head(n).materialize()
    d = docs.dim
    base = SP.load_base(limit, data_dir)
    if base.fingerprint != enc.corpus.fingerprint:
        raise RuntimeError("BM25 vectors and token vectors come from different corpora")
    qidx = SP.select_queries(enc.corpus.relevant, n, int(getattr(a, "queries", 200)), int(a.seed))
    bm_q = base.queries["bm25"]
    dropped = [i for i in qidx if bm_q.nnz[i] == 0]
    qidx = [i for i in qidx if bm_q.nnz[i] > 0]
    qtoks = [np.array(enc.queries[i], dtype=np.float32, copy=True) for i in qidx]
    relevant = [[r for r in enc.corpus.relevant[i] if r < n] for i in qidx]
    bm_docs = SP.grow(base.docs["bm25"], n, int(a.seed))
    sq = [SP._sv(bm_q, i, base.dim) for i in qidx]
    mq = [MultiVector(q) for q in qtoks]
    counts = docs.counts
    mm: dict[str, Any] = {
        "encoder": enc.encoder, "token_cache": enc.cache_dir, "docs": n, "dim": d, "queries": len(qidx),
        "queries_dropped_no_bm25_terms": len(dropped),
        "doc_tokens": {"total": int(counts.sum()), "mean": round(float(counts.mean()), 1),
                       "p50": int(np.percentile(counts, 50)), "max": int(counts.max())},
        "query_tokens": {"mean": round(float(np.mean([q.shape[0] for q in qtoks])), 2),
                         "max": int(max(q.shape[0] for q in qtoks))},
        "bm25_cache": base.cache_file, "fde_configs": dict(FDE_CONFIGS), "fde_runs": FDE_RUNS, "cp_alpha": CP_ALPHA, "ee_beta": EE_BETA,
    }
    ctx.meta.update({"n": n, "n_real": n, "synthetic": False, "d": d, "queries": len(qidx), "multivector": mm})
    ctx.meta.pop("truth_distinct_sources", None)
    ctx.meta.pop("noise", None)
    C.log(f"multivector: {n:,} documents ({mm['doc_tokens']['total']:,} tokens of {d} dims, mean "
          f"{mm['doc_tokens']['mean']}), {len(qidx)} queries (mean {mm['query_tokens']['mean']} tokens)"
          + (f"; {len(dropped)} sampled queries without BM25 terms dropped" if dropped else ""))

    t0 = time.perf_counter()
    full = exact_scores(docs, qtoks, ("float32", "float16", "int8"))
    truth, truth_sc = topk_of(full["float32"])
    mm["exact_numpy_s"] = round(time.perf_counter() - t0, 1)
    C.log(f"exact MaxSim top-10 in numpy (3 formats) in {mm['exact_numpy_s']} s")

    def recall(ids: Sequence[Sequence[int]], sub: Sequence[int] | None = None) -> float:
        if sub is None:
            return SP.recall(ids, truth, truth_sc, full["float32"])
        sub = list(sub)
        return SP.recall(ids, truth[sub], truth_sc[sub], full["float32"][sub])

    def known_item(ids: Sequence[Sequence[int]], sub: Sequence[int] | None = None) -> float:
        rel = relevant if sub is None else [relevant[i] for i in sub]
        return C.known_item_success(ids, rel, n) or 0.0

    url, pgsieve_err = database(ctx.url)
    mm["database"] = MV_DB
    mm["pgsieve_build"] = SP._pgsieve_build()
    conn = C.connect(url)
    _register(conn)
    ctx.meta["server"] = C.server_facts(conn)
    fp = {"n": n, "dim": d, "corpus": enc.corpus.fingerprint, "encoder": enc.encoder.get("fingerprint")
          or enc.encoder.get("kind"), "tokens": int(counts.sum()), "bm25": base.cache_file.rsplit("/", 1)[-1],
          "checksum": float(np.round(docs.tokens[:: max(1, len(docs.tokens) // 1000)].astype(np.float64).sum(), 4)),
          "v": 2}
    rows: list[dict[str, Any]] = []
    common = {"synthetic": False}

    def add(system: str, config: dict[str, Any], t: C.Timed | None, build_s=None, index_mb=None,
            sub: Sequence[int] | None = None, **extra) -> dict[str, Any]:
        rec = None if t is None else recall(t.ids, sub)
        r = C.make_row(SUITE, system, config, n, t, rec, build_s, index_mb, **common,
                       queries=len(qidx) if sub is None else len(sub), **extra)
        if t is not None:
            tr = truth if sub is None else truth[list(sub)]
            r["recall_at_10_strict"] = round(SP.recall(t.ids, tr, None, None), 4)
            r["known_item_success_at_10"] = round(known_item(t.ids, sub), 4)
            if t.plan:
                r["plan"] = t.plan
        rows.append(r)
        C.log(f"  {system:14s} {C.fmt_config(config):60s} recall@10={r['recall_at_10']} p50={r['p50_ms']}ms "
              f"server_p50={r.get('server_p50_ms')}ms ki@10={r.get('known_item_success_at_10')}")
        return r

    def drop_all_indexes() -> None:
        for t in (TABLE, STORE):
            SP._drop_indexes(conn, t)

    def guarded(system: str, fn) -> None:
        ctx.guarded(system, fn, drop_all_indexes)

    try:
        if pgsieve_err is not None:
            raise RuntimeError(f"CREATE EXTENSION pgsieve failed ({pgsieve_err}); `pgsieve ext install`")
        mm["load"] = load_tables(conn, docs, bm_docs, base.dim, fp)
        drop_all_indexes()
    except Exception as e:  # noqa: BLE001
        ctx.errors.append(f"load: {type(e).__name__}: {e}")
        conn.close()
        raise

    nseq = int(getattr(a, "seqscan_queries", None) or SEQSCAN_QUERIES)
    seq_sub = list(range(len(qidx))) if nseq <= 0 else list(range(min(nseq, len(qidx))))
    mm["exhaustive_queries"] = len(seq_sub)

    # ------------------------------------------------------------ storage per document
    def storage():
        st = storage_facts(conn, d)
        mm["storage"] = st
        for k, v in st["bytes"].items():
            rows.append({**C.make_row(SUITE, "storage", {"representation": k}, n, None, None, None, None),
                         "kind": "storage", "bytes_per_doc": v, "bytes_per_token": st["bytes_per_token"][k],
                         "ratio_to_vector_array": st["ratio_to_vector_array"][k]})
        C.log(f"  bytes/doc {st['bytes']} ratios {st['ratio_to_vector_array']}")

    guarded("storage", storage)

    # ------------------------------------------------------------ exhaustive MaxSim in SQL
    def seqscan():
        t = C.time_sql(url, KNN, [mq[i] for i in seq_sub], setup=NO_INDEX, expect_node="Seq Scan", repeat=1,
                       register=_register)
        r = add("seqscan", {"exact": True, "column": "mv", "format": "float32"}, t, sub=seq_sub,
                timing="server+client")
        t8 = C.time_sql(url, knn("i8"), [mq[i] for i in seq_sub], setup=NO_INDEX, expect_node="Seq Scan", repeat=1,
                        register=_register)
        add("seqscan", {"exact": True, "column": "i8", "format": "int8"}, t8, sub=seq_sub, timing="server+client")
        mm["ground_truth_check"] = {"seqscan_recall_vs_numpy": r["recall_at_10"],
                                    "seqscan_recall_vs_numpy_strict": r["recall_at_10_strict"],
                                    "ok": r["recall_at_10"] >= 0.999}
        if not mm["ground_truth_check"]["ok"]:
            C.log("!! exact seq scan disagrees with the numpy ground truth")

    guarded("seqscan", seqscan)

    # ------------------------------------------------------------ exhaustive MaxSim in process (one thread)
    tok = docs.tokens
    starts = docs.offsets[:-1].astype(np.int64)

    def numpy_exhaustive():
        def one(i):
            s = MT.numpy_batched(tok, starts, qtoks[i])
            top = np.argpartition(-s, K - 1)[:K]
            return top[np.lexsort((top, -s[top]))]
        with one_thread():
            t = C.time_callable(one, seq_sub, repeat=1)
        add("numpy", {"exact": True, "threads": 1, "how": "one GEMM over all tokens + max per doc"}, t, sub=seq_sub,
            timing="in-process")

    guarded("numpy", numpy_exhaustive)

    def torch_exhaustive():
        import torch
        tt = torch.from_numpy(tok)
        lengths = torch.from_numpy(counts.astype(np.int64))
        tq = [torch.from_numpy(q) for q in qtoks]

        def one(i):
            with torch.inference_mode():
                s = torch.segment_reduce(tt @ tq[i].T, "max", lengths=lengths, axis=0).sum(dim=1)
                return torch.topk(s, K).indices.numpy()
        with one_thread():
            t = C.time_callable(one, seq_sub, repeat=1)
        add("torch", {"exact": True, "threads": 1, "version": torch.__version__,
                      "how": "one matmul + segment_reduce(max)"}, t, sub=seq_sub, timing="in-process")

    guarded("torch", torch_exhaustive)

    # ------------------------------------------------------------ pgsieve multivec_fde index
    def pgsieve_fde():
        if not conn.execute("SELECT 1 FROM pg_am WHERE amname = 'multivec_fde'").fetchone():
            raise RuntimeError("index access method multivec_fde does not exist in the installed pgsieve")
        default_rr = int(conn.execute("SELECT current_setting('pgsieve.fde_rerank')").fetchone()[0])
        default_os = int(conn.execute("SELECT current_setting('pgsieve.fde_oversample')").fetchone()[0])
        mm["fde_defaults"] = {"fde_rerank": default_rr, "fde_oversample": default_os}
        configs = dict(FDE_CONFIGS)
        for label, column in FDE_RUNS:
            params = configs[label]
            table, fmt = COLUMNS[column]
            name = f"{table}_fde_{label}"
            with_ = (" WITH (" + ", ".join(f"{k} = {v}" for k, v in params.items()) + ")") if params else ""
            C.log(f"  CREATE INDEX {name} ON {table} USING multivec_fde ({column}){with_}")
            with C.BuildProgress(url, name, every=30):
                build_s, mb = C.build_index(
                    conn, f"CREATE INDEX {name} ON {table} USING multivec_fde ({column}){with_}", name)
            C.log(f"  built in {build_s:.2f}s, {mb:.1f} MB")
            p = {"reps": 20, "ksim": 5, "dproj": 16, **params}
            cfg = {"fde": label, "column": f"{column} ({fmt})", **p,
                   "fde_bits": p["reps"] * 2 ** p["ksim"] * (p["dproj"] or d)}
            idx = ["SET enable_seqscan = off"]
            sweep = _ints(getattr(a, "fde_rerank", None), FDE_RERANK if column == "mv" else FDE_RERANK_I8)
            is_default = label == "default" and column == "mv"
            for rr in sweep:
                setup = idx + [f"SET pgsieve.fde_rerank = {rr}"]
                t = C.time_sql(url, knn(column), mq, setup=setup, expect_node=name, register=_register)
                add("pgsieve_fde", {**cfg, "fde_rerank": rr, "fde_oversample": default_os}, t, build_s, mb,
                    timing="server+client", default=(is_default and rr == default_rr))
            if is_default and default_rr not in sweep:
                t = C.time_sql(url, knn(column), mq, setup=idx, expect_node=name, register=_register)
                add("pgsieve_fde", {**cfg, "fde_rerank": default_rr, "fde_oversample": default_os}, t, build_s, mb,
                    timing="server+client", default=True)
            drop_all_indexes()

    guarded("pgsieve_fde", pgsieve_fde)

    # ------------------------------------------------------------ sparse gather + MaxSim re-rank
    def sparse_rerank():
        if not conn.execute("SELECT 1 FROM pg_am WHERE amname = 'sparse_block'").fetchone():
            raise RuntimeError("index access method sparse_block does not exist in the installed pgsieve")
        has_fn = conn.execute("SELECT to_regproc('maxsim_rerank') IS NOT NULL").fetchone()[0]
        mm["maxsim_rerank_available"] = bool(has_fn)
        params = [{"s": s, "q": q} for s, q in zip(sq, mq)]
        idx = ["SET enable_seqscan = off"]
        for column, variants in (("mv", RERANK_VARIANTS), ("i8", RERANK_VARIANTS_I8)):
            table, fmt = COLUMNS[column]
            name = f"{table}_bm25"
            C.log(f"  CREATE INDEX {name} ON {table} USING sparse_block (bm25)")
            build_s, mb = C.build_index(conn, f"CREATE INDEX {name} ON {table} USING sparse_block (bm25)", name)
            C.log(f"  built in {build_s:.2f}s, {mb:.1f} MB")
            base_cfg = {"gather": "bm25 sparse_block (defaults)", "column": f"{column} ({fmt})"}
            if column == "mv":
                t = C.time_sql(url, f"SELECT id FROM {table} ORDER BY bm25 <#> %(s)s LIMIT {K}", params,
                               setup=idx + [f"SET pgsieve.sparse_top_k = {K}"], expect_node=name, register=_register)
                add("bm25", {**base_cfg, "k_candidates": K, "rerank": "none (BM25 order)"}, t, build_s, mb,
                    timing="server+client")
            for kc in _ints(getattr(a, "candidates", None), CANDIDATES if column == "mv" else CANDIDATES_I8):
                setup = idx + [f"SET pgsieve.sparse_top_k = {kc}"]
                sql = (f"SELECT id FROM (SELECT id, {column} FROM {table} ORDER BY bm25 <#> %(s)s LIMIT {kc}) c "
                       f"ORDER BY {column} @# %(q)s LIMIT {K}")
                t = C.time_sql(url, sql, params, setup=setup, expect_node=name, register=_register)
                add("sparse_rerank", {**base_cfg, "k_candidates": kc,
                                      "rerank": f"SQL subquery ORDER BY {column} @# q"}, t,
                    build_s, mb, timing="server+client", variant="sql")
                if not has_fn:
                    continue
                for label, alpha, beta in variants:
                    sql = (f"WITH c AS (SELECT ctid, -(bm25 <#> %(s)s) AS s FROM {table} ORDER BY bm25 <#> %(s)s "
                           f"LIMIT {kc}) SELECT d.id FROM maxsim_rerank('{table}', '{column}', "
                           f"ARRAY(SELECT ctid FROM c ORDER BY s DESC), ARRAY(SELECT s FROM c ORDER BY s DESC), "
                           f"%(q)s, {K}, {'NULL' if alpha is None else alpha}, {'NULL' if beta is None else beta}) r "
                           f"JOIN {table} d ON d.ctid = r.tid ORDER BY r.score DESC")
                    t = C.time_sql(url, sql, params, setup=setup, expect_node=name, register=_register)
                    add("sparse_rerank", {**base_cfg, "k_candidates": kc, "rerank": f"maxsim_rerank ({label})",
                                          "alpha": alpha, "beta": beta}, t, build_s, mb, timing="server+client",
                        variant=label)
            drop_all_indexes()
        if not has_fn:
            raise RuntimeError("function maxsim_rerank() does not exist in the installed pgsieve: only the plain "
                               "SQL re-rank was measured")

    guarded("sparse_rerank", sparse_rerank)

    # ------------------------------------------------------------ SQL MaxSim kernel throughput vs numpy
    def throughput():
        sub = list(range(min(THROUGHPUT_QUERIES, len(qidx))))
        reps = max(1, min(3, C.REPEAT))
        docs_list = [tok[docs.offsets[i]:docs.offsets[i + 1]] for i in range(n)]
        res: dict[str, float] = {}
        with one_thread():
            res["numpy float32, per document (matmul + max)"] = sum(
                MT.best_of(lambda i=i: MT.numpy_loop(docs_list, qtoks[i]), reps) for i in sub)
            res["numpy float32, one GEMM over all documents"] = sum(
                MT.best_of(lambda i=i: MT.numpy_batched(tok, starts, qtoks[i]), reps) for i in sub)
        c2 = C.connect(url)
        try:
            _register(c2)
            for label, table, col in (("SQL maxsim() float32", TABLE, "mv"), ("SQL maxsim() float16", STORE, "f16"),
                                      ("SQL maxsim() int8", STORE, "i8")):
                MT.sql_sum(c2, table, col, mq[sub[0]])                      # warm the cache
                res[label] = sum(MT.best_of(lambda i=i: MT.sql_sum(c2, table, col, mq[i]), reps) for i in sub)
        finally:
            c2.close()
        ref = res["numpy float32, per document (matmul + max)"]
        batched = res["numpy float32, one GEMM over all documents"]
        ntot = int(counts.sum())
        mm["throughput"] = {"queries": len(sub), "best_of": reps, "query_tokens": [int(qtoks[i].shape[0]) for i in sub]}
        for label, s in res.items():
            per_q = s / len(sub)
            rows.append({**C.make_row(SUITE, "throughput", {"scorer": label}, n, None, None, None, None),
                         "kind": "throughput", "s_per_query": round(per_q, 4), "docs_per_s": round(n / per_q),
                         "doc_tokens_per_s": round(ntot / per_q), "vs_numpy_per_doc": round(ref / s, 3),
                         "vs_numpy_one_gemm": round(batched / s, 3)})
            C.log(f"  {label:45s} {n / per_q:12,.0f} docs/s  x{ref / s:.2f} numpy per-doc  x{batched / s:.2f} "
                  f"numpy one-GEMM")

    guarded("throughput", throughput)

    # ------------------------------------------------------------ int8 / float16 vs float32 top-10s
    def agreement():
        out = {}
        for f in ("int8", "float16"):
            ids, sc = topk_of(full[f])
            out[f] = {"top10_overlap": round(overlap(ids, truth), 4),
                      "recall_at_10_vs_float32": round(SP.recall(ids, truth, truth_sc, full["float32"]), 4),
                      "top1_same": round(float(np.mean(ids[:, 0] == truth[:, 0])), 4)}
        # the server's int8 / float16 scans give the numpy int8 / float16 top-10s (a few queries)
        sub = list(range(min(5, len(qidx))))
        c2 = C.connect(url)
        try:
            _register(c2)
            for s in NO_INDEX:
                c2.execute(s)
            for f, col in (("int8", "i8"), ("float16", "f16")):
                ids, sc = topk_of(full[f][sub])
                got = [[r[0] for r in c2.execute(f"SELECT id FROM {STORE} ORDER BY {col} @# %s LIMIT {K}",
                                                 (mq[i],)).fetchall()] for i in sub]
                out[f]["sql_matches_numpy"] = round(SP.recall(got, ids, sc, full[f][sub]), 4)
        finally:
            c2.close()
        mm["agreement"] = out
        for f, v in out.items():
            rows.append({**C.make_row(SUITE, "agreement", {"format": f, "vs": "float32"}, n, None, None, None, None),
                         "kind": "agreement", **v})
            C.log(f"  {f}: {v}")

    guarded("agreement", agreement)
    conn.close()

    end_build = SP._pgsieve_build()
    if end_build.get("so_sha256") != mm["pgsieve_build"].get("so_sha256"):
        mm["pgsieve_build_end"] = end_build
        ctx.errors.append("the installed pgsieve.so changed during the run (rebuilt by someone else); rerun")
    ctx.meta["acceptance"] = acceptance(rows, mm)
    # BENCHMARKS.md section and plot: bench/run.py writes them (write_outputs) once the
    # run's meta is complete (wall time, load average)
    return rows


def _n_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


# ------------------------------------------------------------------------------------------------------------------
# Acceptance, plot, markdown
# ------------------------------------------------------------------------------------------------------------------

def _search_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("kind") is None and r.get("p50_ms") is not None]


def acceptance(rows: list[dict[str, Any]], mm: dict[str, Any]) -> dict[str, Any]:
    """Issue 4's criteria from one run's rows (a point is missing when its rows are)."""
    out: dict[str, Any] = {}
    seq = [r for r in rows if r["system"] == "seqscan" and r.get("p50_ms") is not None
           and r["config"].get("column", "mv") == "mv"]
    seq8 = [r for r in rows if r["system"] == "seqscan" and r["config"].get("column") == "i8"]
    if seq8:
        out["seqscan_int8"] = {"p50_ms": seq8[0]["p50_ms"], "server_p50_ms": seq8[0].get("server_p50_ms")}
    if seq:
        s = seq[0]
        out["seqscan"] = {"p50_ms": s["p50_ms"], "server_p50_ms": s.get("server_p50_ms"),
                          "recall_at_10": s["recall_at_10"], "queries": s.get("queries")}
        budget = s["p50_ms"] / 20.0
        out["latency_budget_ms"] = round(budget, 3)

        def best(cands):
            ok = sorted([r for r in cands if r["recall_at_10"] >= 0.95], key=lambda r: r["p50_ms"])
            if ok:
                r = ok[0]
            elif cands:
                r = max(cands, key=lambda r: (r["recall_at_10"], -r["p50_ms"]))
            else:
                return None
            v = {"system": r["system"], "config": r["config"], "recall_at_10": r["recall_at_10"],
                 "p50_ms": r["p50_ms"], "server_p50_ms": r.get("server_p50_ms"),
                 "known_item_success_at_10": r.get("known_item_success_at_10"),
                 "reaches_recall": bool(ok), "ratio_to_seqscan": round(r["p50_ms"] / s["p50_ms"], 4),
                 "ok": bool(ok) and r["p50_ms"] <= budget}
            if r.get("server_p50_ms") is not None and s.get("server_p50_ms"):
                v["server_ratio_to_seqscan"] = round(r["server_p50_ms"] / s["server_p50_ms"], 4)
                v["ok_server"] = bool(ok) and v["server_ratio_to_seqscan"] <= 0.05
            if seq8 and str(r["config"].get("column", "")).startswith("i8"):
                v["ratio_to_int8_seqscan"] = round(r["p50_ms"] / seq8[0]["p50_ms"], 4)
            return v
        fam = {}
        for system in ("pgsieve_fde", "sparse_rerank"):
            for col in COLUMNS:
                rs = [r for r in rows if r["system"] == system
                      and str(r["config"].get("column", "mv")).split(" ")[0] == col]
                if rs:
                    fam[f"{system} {col}"] = rs
        out["families"] = {k: best(v) for k, v in fam.items() if v}
        oks = [v for v in out["families"].values() if v and v["ok"]]
        out["recall_latency_ok"] = bool(oks)
        out["recall_latency_ok_server"] = any(v.get("ok_server") for v in out["families"].values() if v)
        if oks:
            out["cheapest"] = min(oks, key=lambda v: v["p50_ms"])
    tp = {r["config"]["scorer"]: r for r in rows if r.get("kind") == "throughput"}
    f32 = tp.get("SQL maxsim() float32")
    if f32:
        out["throughput"] = {"sql_docs_per_s": f32["docs_per_s"],
                             "numpy_per_doc_docs_per_s": tp.get("numpy float32, per document (matmul + max)",
                                                                {}).get("docs_per_s"),
                             "numpy_one_gemm_docs_per_s": tp.get("numpy float32, one GEMM over all documents",
                                                                 {}).get("docs_per_s"),
                             "ratio": f32["vs_numpy_per_doc"], "ratio_one_gemm": f32["vs_numpy_one_gemm"]}
        out["throughput_ok"] = f32["vs_numpy_per_doc"] >= 0.5
        out["throughput_ok_one_gemm"] = f32["vs_numpy_one_gemm"] >= 0.5
        npx = [r for r in rows if r["system"] == "numpy" and r.get("p50_ms")]
        if seq and npx:   # the same comparison on the exhaustive top-10 rows (40 queries, p50)
            out["throughput"]["seqscan_vs_numpy_top10"] = round(npx[0]["p50_ms"] / seq[0]["p50_ms"], 3)
    st = mm.get("storage")
    if st:
        r = st["ratio_to_vector_array"]
        out["storage"] = {"float16": r["multivec float16"], "int8": r["multivec int8"],
                          "float32": r["multivec float32"]}
        out["storage_ok"] = r["multivec float16"] <= 0.55 and r["multivec int8"] <= 0.3
    ag = mm.get("agreement", {}).get("int8")
    if ag:
        out["int8_agreement"] = ag["top10_overlap"]
        out["int8_ok"] = ag["top10_overlap"] >= 0.98
    return out


def _pareto(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return SP._pareto(pts)


def plot(rows: list[dict[str, Any]], path: Path, meta: dict[str, Any]) -> Path | None:
    from pgsieve import plots

    try:
        plt = plots.pyplot()
    except ImportError as exc:
        C.log(f"no plot: {exc}")
        return None
    sr = _search_rows(rows)
    if not sr:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), dpi=110, sharey=True)
    fde_series, sp_series = [], []
    for label, column in FDE_RUNS:
        fde_series.append((f"multivec_fde, {label} FDE, {column} ({COLUMNS[column][1]})",
                           [r for r in sr if r["system"] == "pgsieve_fde" and r["config"].get("fde") == label
                            and str(r["config"].get("column", "")).split(" ")[0] == column], "o"))
    markers = {"sql": "s", "none": "D", "CP": "^", "EE": "v", "CP+EE": "P", "CP 0.3": "<", "EE 10": ">"}
    for column, variants in (("mv", RERANK_VARIANTS), ("i8", RERANK_VARIANTS_I8)):
        for variant in ["sql"] + [v[0] for v in variants]:
            what = f"SQL ORDER BY {column} @# q" if variant == "sql" else f"maxsim_rerank ({variant})"
            sp_series.append((f"{column}: {what}", [r for r in sr if r["system"] == "sparse_rerank"
                                                    and r.get("variant") == variant
                                                    and str(r["config"].get("column", "")).split(" ")[0] == column],
                              markers.get(variant, "o")))
    for ax, series, key, title in ((axes[0], fde_series, "fde_rerank", "multivec_fde index: fde_rerank sweep"),
                                   (axes[1], sp_series, "k_candidates",
                                    "BM25 gather (sparse_block) + exact MaxSim re-rank: K sweep")):
        lines = []
        for label, rs, marker in series:
            rs = sorted(rs, key=lambda r: r["config"][key])
            lines.append(plots.Series(label, [r["recall_at_10"] for r in rs], [r["p50_ms"] for r in rs],
                                      marker=marker, linestyle=":" if label.startswith("i8") or "i8 (" in label
                                      else "-", point_labels=[str(r["config"][key]) for r in rs]))
        plots.draw_recall_latency(ax, lines, xlabel="recall@10 vs exhaustive float32 MaxSim",
                                  ylabel="p50 latency, client round trip, ms (log)" if ax is axes[0] else "",
                                  log_y=ax is axes[0])
        for r in [x for x in sr if x["system"] in ("seqscan", "numpy", "torch")]:
            col = r["config"].get("column")
            lab = {"seqscan": f"exhaustive seq scan ({r['config'].get('format')})", "numpy": "exhaustive numpy",
                   "torch": "exhaustive torch"}[r["system"]]
            ax.axhline(r["p50_ms"], color="gray", lw=1, ls={"seqscan": "-" if col != "i8" else "--", "numpy": ":",
                                                            "torch": "-."}[r["system"]],
                       label=f"{lab}: {r['p50_ms']:.0f} ms")
        seq = [x for x in sr if x["system"] == "seqscan" and x["config"].get("column", "mv") == "mv"]
        if seq:
            ax.axhline(seq[0]["p50_ms"] / 20, color="C3", ls="--", lw=0.8, label="1/20 of the float32 seq scan")
        ax.axvline(0.95, color="C3", ls="--", lw=0.8)
        bm = [x for x in sr if x["system"] == "bm25"]
        if bm and ax is axes[1]:
            ax.scatter([bm[0]["recall_at_10"]], [bm[0]["p50_ms"]], marker="x", color="k", label="BM25 alone")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.9)
    mm = meta.get("multivector", {})
    fig.suptitle(f"multivector: {meta['n']:,} passages, {mm.get('doc_tokens', {}).get('total', 0):,} tokens "
                 f"({mm.get('dim')}-d, {mm.get('encoder', {}).get('kind')}), {mm.get('queries')} queries, "
                 f"{meta.get('machine', {}).get('cores')} cores", fontsize=9)
    return plots.save(fig, path)


def _f(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _yn(b: Any) -> str:
    return "**yes**" if b else "**no**"


def _cfg(r: dict[str, Any], drop: Sequence[str] = ()) -> str:
    return ", ".join(f"{k}={v}" for k, v in r["config"].items() if k not in drop and v is not None)


def _search_table(rs: list[dict[str, Any]], drop: Sequence[str] = ()) -> list[str]:
    out = ["| system | config | recall@10 | known-item success@10 | p50 ms client | p50 ms server | p95 ms client | "
           "build s | index MB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rs:
        name = r["system"] + (" **(default)**" if r.get("default") else "")
        srv = r.get("server_p50_ms") if r.get("timing") != "in-process" else None
        out.append(f"| {name} | {_cfg(r, drop)} | {_f(r['recall_at_10'], 4)} | "
                   f"{_f(r.get('known_item_success_at_10'), 3)} | {_f(r['p50_ms'])} | {_f(srv)} | "
                   f"{_f(r['p95_ms'])} | {_f(r['build_s'], 2)} | {_f(r['index_mb'], 1)} |")
    return out


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    m, mm = meta, meta.get("multivector", {})
    mach, srv = m.get("machine", {}), m.get("server", {})
    enc = mm.get("encoder", {})
    dt, qt = mm.get("doc_tokens", {}), mm.get("query_tokens", {})
    L = ["## Multivector retrieval (suite `multivector`)", "",
         f"Run {m.get('date')}: `{m.get('command')}`", ""]
    total = m.get("corpus_info", {}).get("passages_total")
    L.append(
        f"- Corpus: {m['n']:,} real man-page passages"
        + (" (every passage of the corpus; no synthetic rows)" if total == m["n"] else
           f" (the first {m['n']:,} of {total or '?'})") + ", "
        f"{mm.get('queries')} known-item queries (NAME lines; {mm.get('queries_dropped_no_bm25_terms', 0)} sampled "
        f"queries without any BM25 term dropped for every system).")
    if enc.get("kind") == "minilm":
        L.append(
            f"- Token vectors: `pgsieve.encoders.colbert.LateInteractionEncoder` on the packaged all-MiniLM-L6-v2 "
            f"(plain transformers layout: last hidden states, {enc.get('dim')}-d, L2-normalized, no projection, no "
            f"markers), documents truncated to {enc.get('doc_maxlen')} tokens with punctuation dropped, "
            f"`query_expansion=False`. MiniLM is a sentence-embedding model, not a ColBERT model: its [MASK] outputs "
            f"mean nothing, so ColBERT's [MASK] query padding would add the same meaningless max-similarities to "
            f"every document; queries are their own tokens only. Absolute retrieval quality is therefore MiniLM's "
            f"token-level quality, not ColBERT's; every figure below compares systems on the same tokens.")
    else:
        L.append(f"- Token vectors: **{enc.get('kind')}** ({enc.get('what', '')}) — a test double, not a model.")
    L.append(f"- Documents: `mv multivec({m.get('d')})` (float32) in `{TABLE}`, and the same tokens as "
             f"`i8 multivec({m.get('d')}, int8)` in `{STORE}` (with the same BM25 vectors): searching the int8 column "
             "re-ranks from 4× fewer bytes. Recall is always against the exhaustive **float32** MaxSim.")
    L.append(f"- {dt.get('total', 0):,} document tokens (mean {dt.get('mean')} per passage, median {dt.get('p50')}, "
             f"max {dt.get('max')}); queries {qt.get('mean')} tokens on average (max {qt.get('max')}). Cached under "
             f"the bench data dir (`{Path(mm.get('token_cache', '')).name}`).")
    gc = mm.get("ground_truth_check")
    L.append("- Ground truth: exhaustive MaxSim over every passage in numpy (float32 products, per-document maxima "
             "summed in float64, ties to the smaller id); recall@10 counts a returned passage scoring within 1e-5 "
             "(relative) of the 10th exact score as a hit."
             + (f" The SQL sequential scan agrees: recall {gc['seqscan_recall_vs_numpy']} (strict "
                f"{gc['seqscan_recall_vs_numpy_strict']})." if gc else ""))
    L.append("- Latency: one client, warm, prepared statements, query tokens sent as a binary `multivec` parameter "
             "(pgsieve's psycopg adapters); *client* = round trip, *server* = `Execution Time` of `EXPLAIN (ANALYZE, "
             f"TIMING OFF)`. Index rows: best of {m.get('repeat')} passes over all queries (lowest median). "
             f"Exhaustive rows (SQL scan, numpy, torch): one pass over the first {mm.get('exhaustive_queries')} "
             "queries of the sample (after a warm-up pass), their recall on those queries.")
    L.append(f"- Machine: {mach.get('cpu', '?')}, {mach.get('cores')} cores, {mach.get('mem_gib')} GiB (shared with "
             f"other jobs; load average {m.get('loadavg_start')} at start, {m.get('loadavg_end')} at the end); "
             f"PostgreSQL {srv.get('server_version')}, pgsieve kernel level `{srv.get('pgsieve_kernel_level')}`, "
             f"shared_buffers={srv.get('shared_buffers')}, max_parallel_workers_per_gather="
             f"{srv.get('max_parallel_workers_per_gather')}, jit={srv.get('jit')}. pgsieve build: commit "
             f"{mm.get('pgsieve_build', {}).get('commit')}, pgsieve.so sha256 "
             f"{mm.get('pgsieve_build', {}).get('so_sha256')}. Run took {m.get('wall_s')} s.")
    loads = [x for k in ("loadavg_start", "loadavg_end") for x in (m.get(k) or [])[:1]]
    if loads and max(loads) > 1.0:
        L.append(f"- **Shared machine**: other jobs were running (1-min load up to {max(loads)} on "
                 f"{mach.get('cores')} cores), so latencies are noisier and higher than on a quiet machine, and the "
                 "exhaustive scan's p50 — the acceptance budget's base — moves with that load between runs; compare "
                 "systems within this run (client and server times are both given).")
    L.append("")

    st = mm.get("storage")
    if st:
        L += ["### Storage per document", "",
              f"The same tokens ({st['avg_tokens']} per passage on average, {st['dim']}-d; raw float32 would be "
              f"{st['raw_float32_bytes']:,.0f} bytes) stored as `vector({st['dim']})[]` and as `multivec` in each "
              f"format; average `pg_column_size` over all {st['docs']:,} rows (TOAST-compressed rows of vector[]: "
              f"{st['vector_array_rows_compressed']}).", "",
              "| representation | bytes per document | bytes per token | × vector[] |", "|---|---:|---:|---:|"]
        for k, v in st["bytes"].items():
            L.append(f"| `{k}` | {v:,.0f} | {st['bytes_per_token'][k]:,.1f} | {st['ratio_to_vector_array'][k]:.3f} |")
        L.append("")

    sr = _search_rows(rows)
    ex = [r for r in sr if r["system"] in ("seqscan", "numpy", "torch")]
    if ex:
        L += ["### Exhaustive MaxSim", ""]
        L += ["| system | how | queries | recall@10 | p50 ms client | p50 ms server | p95 ms | docs/s (p50) |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in ex:
            how = {"seqscan": f"`ORDER BY {r['config'].get('column', 'mv')} @# q LIMIT 10`, index scans off, "
                              f"{r['config'].get('format')} documents"}.get(r["system"],
                                                                          r["config"].get("how", "") + ", 1 thread")
            srvp = r.get("server_p50_ms") if r.get("timing") != "in-process" else None
            L.append(f"| {r['system']} | {how} | {r['queries']} | {_f(r['recall_at_10'], 4)} | {_f(r['p50_ms'])} | "
                     f"{_f(srvp)} | {_f(r['p95_ms'])} | {m['n'] / (r['p50_ms'] / 1000):,.0f} |")
        L.append("")

    fde = [r for r in sr if r["system"] == "pgsieve_fde"]
    if fde:
        L += ["### pgsieve `multivec_fde` index", "",
              "`CREATE INDEX ... USING multivec_fde (mv) [WITH (...)]`, then the unchanged `ORDER BY mv @# q LIMIT 10`; "
              "`pgsieve.fde_rerank` = rows re-ranked by exact MaxSim per batch (`fde_oversample` "
              f"{mm.get('fde_defaults', {}).get('fde_oversample')} × as many Hamming candidates first).", ""]
        cfgs = "; ".join(f"*{lab}*: reps {p.get('reps', 20)}, ksim {p.get('ksim', 5)}, dproj {p.get('dproj', 16)}"
                         for lab, p in (mm.get("fde_configs") or dict(FDE_CONFIGS)).items())
        L += [f"FDE build parameters ({cfgs}; seed 42, quantizer mean, final_dim 0); `fde_bits` = reps · 2^ksim · "
              "dproj bits per document code.", ""]
        L += _search_table(fde, drop=("reps", "ksim", "dproj", "fde_oversample"))
        L.append("")
    sp = [r for r in sr if r["system"] in ("bm25", "sparse_rerank")]
    if sp:
        L += ["### Sparse gather + MaxSim re-rank", "",
              "BM25 (`pgsieve.encoders.bm25`, k1 1.2, b 0.75, MiniLM WordPiece vocabulary) on the same passages in a "
              "`sparsevec` column with a `sparse_block` index gathers K candidates (`pgsieve.sparse_top_k` = K); "
              "exact MaxSim re-ranks them either in plain SQL "
              f"(`SELECT id FROM (SELECT id, mv FROM {TABLE} ORDER BY bm25 <#> s LIMIT K) c ORDER BY mv @# q LIMIT "
              "10`) or with `maxsim_rerank(tbl, col, tids, scores, q, 10, alpha, beta)` over the candidates in BM25 "
              f"order: without pruning, with candidate pruning (CP, alpha = {CP_ALPHA}: a candidate whose BM25 score "
              f"is below (1 − alpha) × the k-th's is dropped), with early exit (EE, beta = {EE_BETA}: stop after "
              "beta consecutive candidates that do not enter the top-10), and both — the settings of issue 4 — plus "
              "looser ones (alpha 0.3, beta 10): BM25 scores spread far wider than the strong dense first stage "
              "those settings were tuned for. On the int8 column (K ∈ "
              f"{CANDIDATES_I8}): the plain SQL re-rank, `maxsim_rerank` without pruning and with beta 10. One SQL "
              "statement each.", ""]
        if mm.get("maxsim_rerank_available") is False:
            L += ["`maxsim_rerank()` was not in the installed pgsieve for this run: only the plain SQL re-rank was "
                  "measured.", ""]
        L += _search_table(sp, drop=("gather",))
        L.append("")

    tp = [r for r in rows if r.get("kind") == "throughput"]
    if tp:
        t = mm.get("throughput", {})
        L += ["### SQL MaxSim kernel throughput", "",
              f"Every document's MaxSim against one query, {t.get('queries')} queries ({t.get('query_tokens')} "
              f"tokens), best of {t.get('best_of')}, one core each; definitions from `bench/maxsim_throughput.py`: "
              "SQL = `SELECT sum(maxsim(col, q)) FROM tbl` (detoast + call + kernel for every row), numpy per "
              "document = `(q @ D.T).max(1).sum()` row after row, numpy one GEMM = all tokens in one product then "
              "`np.maximum.reduceat` (numpy's best case).", "",
              "| scorer | docs/s | doc tokens/s | × numpy per document | × numpy one GEMM |",
              "|---|---:|---:|---:|---:|"]
        for r in tp:
            L.append(f"| {r['config']['scorer']} | {r['docs_per_s']:,} | {r['doc_tokens_per_s']:,} | "
                     f"{r['vs_numpy_per_doc']:.2f} | {r['vs_numpy_one_gemm']:.2f} |")
        L.append("")
    ag = mm.get("agreement")
    if ag:
        L += ["### int8 and float16 vs float32 rankings", "",
              f"Exhaustive MaxSim top-10 of every benchmark query with the documents stored as int8 (per-token scale) "
              "or float16, against float32's (numpy on the values each format stores; the SQL scans of the int8 / "
              "float16 columns give the same top-10s on the queries checked).", "",
              "| format | top-10 overlap | recall@10 (ties credited) | same top-1 | SQL scan = numpy |",
              "|---|---:|---:|---:|---:|"]
        for f, v in ag.items():
            L.append(f"| {f} | {v['top10_overlap']:.4f} | {v['recall_at_10_vs_float32']:.4f} | {v['top1_same']:.3f} | "
                     f"{_f(v.get('sql_matches_numpy'), 3)} |")
        L.append("")
    L += _acceptance_lines(m.get("acceptance", {}))
    if m.get("plot"):
        L += [f"![recall vs latency]({m['plot']})", ""]
    if m.get("errors"):
        L += ["Errors in this run: " + "; ".join(m["errors"]), ""]
    return "\n".join(L)


def _acceptance_lines(acc: dict[str, Any]) -> list[str]:
    if not acc:
        return []
    L = ["### Acceptance (issue 4), from this run", ""]
    s = acc.get("seqscan")
    if s:
        L.append(f"- recall@10 ≥ 0.95 against exhaustive float32 MaxSim at p50 ≤ 1/20 of the exhaustive "
                 f"sequential scan (float32 seq scan p50 {s['p50_ms']:.1f} ms client / "
                 f"{_f(s.get('server_p50_ms'), 1)} ms server → budget {acc['latency_budget_ms']:.2f} ms, client "
                 f"times compared): {_yn(acc.get('recall_latency_ok'))} (on server execution times: "
                 f"{_yn(acc.get('recall_latency_ok_server'))})"
                 + (f" — {_cfg({'config': acc['cheapest']['config']}, ('gather',))}" if acc.get("cheapest") else ""))
        names = {"pgsieve_fde mv": "`multivec_fde` index, float32 documents",
                 "pgsieve_fde i8": "`multivec_fde` index, int8 documents",
                 "sparse_rerank mv": "BM25 gather + MaxSim re-rank, float32 documents",
                 "sparse_rerank i8": "BM25 gather + MaxSim re-rank, int8 documents"}
        for fam, v in (acc.get("families") or {}).items():
            if not v:
                continue
            extra = (f"; {v['ratio_to_int8_seqscan']:.3f} × the int8 seq scan" if "ratio_to_int8_seqscan" in v
                     else "")
            how = "cheapest configuration with recall ≥ 0.95" if v["reaches_recall"] else \
                "no configuration reached recall 0.95; the best"
            L.append(f"  - {names.get(fam, fam)} ({how}: {_cfg({'config': v['config']}, ('gather',))}): recall "
                     f"{v['recall_at_10']}, p50 {v['p50_ms']:.2f} ms client / {_f(v.get('server_p50_ms'), 2)} ms "
                     f"server = {v['ratio_to_seqscan']:.4f} × the seq scan{extra}, known-item success@10 "
                     f"{v.get('known_item_success_at_10')} → {_yn(v['ok'])}"
                     + (f" (on server execution times: {v['server_ratio_to_seqscan']:.4f} × → {_yn(v['ok_server'])})"
                        if "ok_server" in v else ""))
    t = acc.get("throughput")
    if t:
        L.append(f"- SQL MaxSim kernel throughput ≥ 0.5× numpy float32 (matmul + max, per document): "
                 f"{t['sql_docs_per_s']:,} vs {t['numpy_per_doc_docs_per_s']:,} docs/s = {t['ratio']:.3f}× → "
                 f"{_yn(acc.get('throughput_ok'))}; against numpy's one-GEMM best case "
                 f"({t['numpy_one_gemm_docs_per_s']:,} docs/s): {t['ratio_one_gemm']:.3f}× → "
                 f"{_yn(acc.get('throughput_ok_one_gemm'))}"
                 + (f". The exhaustive top-10 rows above give {t['seqscan_vs_numpy_top10']:.3f}× (SQL seq scan p50 "
                    "vs numpy one-thread p50)" if t.get("seqscan_vs_numpy_top10") else ""))
    st = acc.get("storage")
    if st:
        L.append(f"- storage float16 ≤ 0.55× and int8 ≤ 0.3× of vector[]: float16 {st['float16']:.3f}×, int8 "
                 f"{st['int8']:.3f}× (float32 {st['float32']:.3f}×) → {_yn(acc.get('storage_ok'))}")
    if "int8_agreement" in acc:
        L.append(f"- int8 MaxSim top-10 agrees with float32 on ≥ 0.98: {acc['int8_agreement']:.4f} → "
                 f"{_yn(acc.get('int8_ok'))}")
    L.append("")
    return L


def render_from_results(path: Path, md: Path = C.BENCHMARKS_MD) -> None:
    """Rewrite the ``multivector`` section from a results file (acceptance recomputed)."""
    doc = json.loads(Path(path).read_text())
    m, rows = doc["meta"], doc["rows"]
    m["acceptance"] = acceptance(rows, m.get("multivector", {}))
    C.replace_md_section(SUITE, markdown(m, rows), md)
