"""Suite ``pipeline``: collection pipelines end to end, pgsieve mode against the same pipeline on pgvector alone.

The real man-page passages (first ``--n``) go into one :class:`pgsieve.collections.Collection` per mode, through
``Collection.add`` (binary COPY; BM25 statistics in the catalog): a dense field (MiniLM), a BM25 field over MiniLM's
vocabulary and a multivector field (MiniLM token vectors, the multivector suite's cache ``bench/data/mvtok-*``).
Dense and token encodings are precomputed and cached, so ``add`` times COPY and index builds, not the model.

Queries: known-item queries of the corpus (``pgsieve.corpus``; relevant = the page's other passages) as qrels;
nDCG@10 with ir-measures.  Rows (pgsieve mode unless named ``*_managed``):

- ``bm25``               BM25 gather only (``sparse_block``), top 10;
- ``dense``              dense gather only (pgvector HNSW), top 10;
- ``maxsim_exhaustive``  exact MaxSim over every row (``ORDER BY colbert @# q``, index scans off; a query subset);
- ``hybrid_rrf``         BM25 100 + dense 100 → RRF(60), no re-rank;
- ``hybrid``             the default pipeline: BM25 100 + dense 100 → RRF(60) → MaxSim re-rank of 100 (int8 tokens,
                         ``maxsim_rerank``);
- ``hybrid_unscreened``  the default pipeline with ``pgsieve.maxsim_screen = off``: every candidate scored with the
                         float MaxSim kernel (``hybrid`` screens them first where the CPU has AMX or AVX512-VNNI;
                         the results must be the same rows);
- ``hybrid_pruned``      the same with ``maxsim_rerank``'s candidate pruning and early exit (alpha 0.03, beta 3);
- ``hybrid_managed``     the same pipeline compiled for managed mode: pgvector HNSW on ``sparsevec`` (≤ 1000
                         non-zeros) and ``vector``, tokens as ``halfvec[]``, MaxSim in SQL (unnest + max): the
                         pipeline hand-written over pgvector alone.

Latency: the client round trip of the one statement (query already encoded), lowest-median pass of ``--repeat``,
and the server's ``Execution Time`` from ``EXPLAIN (ANALYZE)`` of the same statement (one pass).  Acceptance
(issue 5): the default hybrid's nDCG@10 above the best single stage, and ≥ 5× faster than the managed equivalent
at equal nDCG@10 (within 0.01).
"""
from __future__ import annotations

import json
import time
from typing import Any, Sequence

import numpy as np

from .. import common as C
from .. import mvtokens as MV

SUITE = "pipeline"
SYSTEM_NAMES = ["bm25", "dense", "maxsim_exhaustive", "hybrid_rrf", "hybrid", "hybrid_unscreened", "hybrid_pruned",
                "hybrid_managed"]
DBS = {"pgsieve": "pgsieve_bench_pipeline", "managed": "pgsieve_bench_pipeline_managed"}
COLL = "bench_pipe"
GATHER_K = 100
EXHAUSTIVE_QUERIES = 40


def register(suites: dict, systems: dict) -> None:
    suites[SUITE] = run
    systems[SUITE] = list(SYSTEM_NAMES)


class Lookup:
    """An encoder that answers from precomputed encodings, keyed by text (documents and queries apart)."""

    def __init__(self, dim: int, docs: dict[str, Any], queries: dict[str, Any]) -> None:
        self.dim, self._docs, self._queries = dim, docs, queries

    def encode_documents(self, texts: Sequence[str]) -> list[Any]:
        return [self._docs[t] for t in texts]

    def encode_queries(self, texts: Sequence[str]) -> list[Any]:
        return [self._queries[t] for t in texts]


def _database(url: str, mode: str) -> str:
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = DBS[mode]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    own = make_conninfo(url, dbname=name)
    with psycopg.connect(own, autocommit=True) as c:
        c.execute("CREATE EXTENSION vector")
        if mode == "pgsieve":
            c.execute("CREATE EXTENSION pgsieve")
    return own


def ndcg10(runs: list[list[str]], qids: list[str], qrels: dict[str, dict[str, int]]) -> float:
    import ir_measures
    from ir_measures import nDCG

    run = {q: {d: float(len(ids) - r) for r, d in enumerate(ids)} for q, ids in zip(qids, runs)}
    for q in qids:
        run.setdefault(q, {})
    sub = {q: qrels[q] for q in qids}
    return float(ir_measures.calc_aggregate([nDCG @ 10], sub, run)[nDCG @ 10])


def _timed(coll: Any, compiled: list[Any], repeat: int) -> tuple[list[list[str]], np.ndarray]:
    """Run each compiled statement ``repeat`` times; (ids of the last pass, latencies of the lowest-median pass)."""
    passes: list[np.ndarray] = []
    ids: list[list[str]] = []
    for _ in range(max(1, repeat)):
        lat, ids = [], []
        for c in compiled:
            rows = coll.execute(c)
            lat.append(coll.last_ms)
            ids.append([str(r[0]) for r in rows])
        passes.append(np.asarray(lat))
    best = min(passes, key=lambda a: float(np.median(a)))
    return ids, best


def _server_ms(coll: Any, compiled: list[Any]) -> np.ndarray:
    from psycopg import sql

    out = []
    for c in compiled:
        with coll.conn.transaction(), coll.conn.cursor() as cur:
            for name, value in c.settings.items():
                cur.execute(sql.SQL("SET LOCAL {} = {}").format(sql.SQL(name), sql.Literal(value)))
            plan = cur.execute(sql.SQL("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) ") + c.statement, c.params,
                               prepare=False).fetchone()[0]
        plan = plan if isinstance(plan, list) else json.loads(plan)
        out.append(float(plan[0]["Execution Time"]))
    return np.asarray(out)


def run(ctx: C.Context) -> list[dict[str, Any]]:
    import psycopg

    from pgsieve.collections import Collection, Field
    from pgsieve.encoders import BM25Encoder
    from pgsieve.pipeline import Pipeline, gather, rerank_maxsim, rrf

    a = ctx.args
    enc = C.encoded_corpus(a.limit_passages, a.data_dir)
    n = min(a.n, enc.docs.shape[0])
    corpus = C.load_corpus(n)
    mv = MV.token_encodings(n, a.data_dir, encoder=getattr(a, "mv_encoder", "minilm"))
    texts = corpus.passages
    # dense query vectors: the encoded corpus' queries include this (possibly shorter) corpus' queries
    qpos: dict[str, int] = {}
    for i, q in enumerate(enc.corpus.queries):
        qpos.setdefault(q, i)
    rng = np.random.default_rng(a.seed)
    pick = sorted(rng.choice(len(corpus.queries), size=min(a.queries, len(corpus.queries)), replace=False).tolist())
    qtexts = [corpus.queries[i] for i in pick]
    qids = [f"q{i}" for i in pick]
    qrels = {f"q{i}": {str(d): 1 for d in corpus.relevant[i]} for i in pick}
    dense_docs = {t: enc.docs[i] for i, t in enumerate(texts)}
    dense_q = {q: enc.queries[qpos[q]] for q in qtexts}
    mv_docs = {t: np.asarray(mv.docs[i]) for i, t in enumerate(texts)}
    mv_q = {q: np.asarray(mv.queries[j]) for j, q in enumerate(corpus.queries) if q in dense_q}
    dim, mdim = int(enc.docs.shape[1]), int(mv.docs.dim)
    docs = [{"id": str(i), "text": t, "metadata": {}} for i, t in enumerate(texts)]
    ctx.meta["pipeline"] = {"n": n, "queries": len(qtexts), "gather_k": GATHER_K, "mv_encoder": mv.encoder,
                            "doc_tokens": int(mv.docs.offsets[-1])}
    C.log(f"pipeline: {n} passages, {len(qtexts)} queries, {int(mv.docs.offsets[-1]):,} document tokens")

    colls: dict[str, Any] = {}
    build: dict[str, float] = {}
    for mode in ("pgsieve", "managed"):
        url = _database(ctx.url, mode)
        conn = psycopg.connect(url, autocommit=True)
        fields = [Field.dense("dense", encoder=Lookup(dim, dense_docs, dense_q)),
                  Field.sparse("bm25", encoder=BM25Encoder()),
                  Field.multivector("colbert", encoder=Lookup(mdim, mv_docs, mv_q), fmt="int8")]
        t0 = time.perf_counter()
        coll = Collection.create(conn, COLL, fields, mode=mode)
        coll.add(docs, batch_size=500, progress=True)
        build[mode] = time.perf_counter() - t0
        C.log(f"{mode}: collection built in {build[mode]:.1f}s")
        colls[mode] = coll

    hybrid = Pipeline(gather("bm25", GATHER_K), gather("dense", GATHER_K), rrf(60), rerank_maxsim("colbert", GATHER_K))
    systems: list[tuple[str, str, Any, dict[str, Any]]] = [
        ("bm25", "pgsieve", Pipeline(gather("bm25", 10)), {"stage": "sparse_block"}),
        ("dense", "pgsieve", Pipeline(gather("dense", 10)), {"stage": "hnsw"}),
        ("hybrid_rrf", "pgsieve", Pipeline(gather("bm25", GATHER_K), gather("dense", GATHER_K), rrf(60)),
         {"gather_k": GATHER_K, "rrf_k": 60}),
        ("hybrid", "pgsieve", hybrid, {"gather_k": GATHER_K, "rrf_k": 60, "rerank": "maxsim int8", "mode": "pgsieve"}),
        ("hybrid_unscreened", "pgsieve", hybrid, {"gather_k": GATHER_K, "rrf_k": 60, "rerank": "maxsim int8",
                                                  "mode": "pgsieve", "maxsim_screen": "off"}),
        ("hybrid_pruned", "pgsieve",
         Pipeline(gather("bm25", GATHER_K), gather("dense", GATHER_K), rrf(60),
                  rerank_maxsim("colbert", GATHER_K, alpha=0.03, beta=3)),
         {"gather_k": GATHER_K, "rrf_k": 60, "rerank": "maxsim_rerank int8, alpha 0.03, beta 3", "mode": "pgsieve"}),
        ("hybrid_managed", "managed", hybrid,
         {"gather_k": GATHER_K, "rrf_k": 60, "rerank": "SQL MaxSim halfvec[]", "mode": "managed"}),
    ]
    rows: list[dict[str, Any]] = []
    # Passes are interleaved (pass 1 of every system, then pass 2, ...) and each system keeps its lowest-median
    # pass: on a shared VM whose speed drifts for minutes at a time, back-to-back passes of one system would
    # hand a slow phase to whichever system ran during it.
    compiled: dict[str, list[Any]] = {}
    for system, mode, p, cfg in systems:
        def prep(system=system, mode=mode, p=p, cfg=cfg) -> None:
            compiled[system] = [colls[mode].compile(q, p, k=10) for q in qtexts]
            if "maxsim_screen" in cfg:
                for c in compiled[system]:
                    c.settings["pgsieve.maxsim_screen"] = cfg["maxsim_screen"]
        ctx.guarded(system, prep, lambda: None)
    passes: dict[str, list[tuple[list[list[str]], np.ndarray]]] = {s: [] for s in compiled}
    for _ in range(max(1, C.REPEAT)):
        for system, mode, p, cfg in systems:
            if system not in compiled:
                continue
            def one_pass(system=system, mode=mode) -> None:
                passes[system].append(_timed(colls[mode], compiled[system], 1))
            ctx.guarded(system, one_pass, lambda: None)
    for system, mode, p, cfg in systems:
        def finish(system=system, mode=mode, cfg=cfg) -> None:
            if not passes.get(system):
                return
            ids, lat = min(passes[system], key=lambda x: float(np.median(x[1])))
            srv = _server_ms(colls[mode], compiled[system])
            nd = ndcg10(ids, qids, qrels)
            sub = min(EXHAUSTIVE_QUERIES, len(qids))
            nd_sub = ndcg10(ids[:sub], qids[:sub], qrels)
            t = C.Timed([[int(x) for x in r] for r in ids], lat, srv)
            rows.append(C.make_row(SUITE, system, cfg, n, t, None, build[mode], None, ndcg_at_10=round(nd, 4),
                                   ndcg_at_10_first40=round(nd_sub, 4)))
            if system in ("hybrid", "hybrid_unscreened"):  # the screen must not change a single hit
                ctx.meta.setdefault("pipeline_ids", {})[system] = ids
            C.log(f"{system}: nDCG@10 {nd:.4f}, p50 {t.p50:.2f} ms (server {t.server_p50:.2f} ms)")
        ctx.guarded(system, finish, lambda: None)

    def exhaustive() -> None:
        from psycopg import sql

        coll = colls["pgsieve"]
        sub = list(range(min(EXHAUSTIVE_QUERIES, len(qtexts))))
        stmt = sql.SQL("SELECT id FROM {} ORDER BY colbert @# %s LIMIT 10").format(coll.table)
        lat, ids = [], []
        for i in sub:
            with coll.conn.transaction():
                coll.conn.execute("SET LOCAL enable_indexscan = off")
                t0 = time.perf_counter()
                got = coll.conn.execute(stmt, (mv_q[qtexts[i]],), prepare=False).fetchall()
                lat.append((time.perf_counter() - t0) * 1000)
            ids.append([str(r[0]) for r in got])
        nd = ndcg10(ids, [qids[i] for i in sub], qrels)
        t = C.Timed([[int(x) for x in r] for r in ids], np.asarray(lat), None)
        rows.append(C.make_row(SUITE, "maxsim_exhaustive", {"queries": len(sub), "format": "int8"}, n, t, None,
                               build["pgsieve"], None, ndcg_at_10=None, ndcg_at_10_first40=round(nd, 4)))
        C.log(f"maxsim_exhaustive: nDCG@10 {nd:.4f} ({len(sub)} queries), p50 {t.p50:.1f} ms")
    ctx.guarded("maxsim_exhaustive", exhaustive, lambda: None)
    from pgsieve import kernels as K

    ctx.meta["pipeline"]["screen_path"] = K.screen_path()  # the server runs on this machine's CPU
    got = ctx.meta.pop("pipeline_ids", {})
    if len(got) == 2:
        ctx.meta["pipeline"]["screen_same_hits"] = got["hybrid"] == got["hybrid_unscreened"]
    ctx.meta["acceptance"] = acceptance(rows)
    for c in colls.values():
        c.conn.close()
    return rows


def acceptance(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["system"]: r for r in rows}
    out: dict[str, Any] = {}
    singles = [by[s]["ndcg_at_10"] for s in ("bm25", "dense") if s in by]
    if "hybrid" in by and singles:
        out["hybrid_ndcg"] = by["hybrid"]["ndcg_at_10"]
        out["best_single_ndcg"] = max(singles)
        out["hybrid_beats_best_single"] = by["hybrid"]["ndcg_at_10"] > max(singles)
    if "hybrid" in by and "maxsim_exhaustive" in by:  # on the queries the exhaustive scan was run for
        out["hybrid_ndcg_first40"] = by["hybrid"]["ndcg_at_10_first40"]
        out["exhaustive_maxsim_ndcg_first40"] = by["maxsim_exhaustive"]["ndcg_at_10_first40"]
        out["hybrid_beats_exhaustive_maxsim"] = out["hybrid_ndcg_first40"] > out["exhaustive_maxsim_ndcg_first40"]
    if "hybrid" in by and "hybrid_managed" in by:
        h, m = by["hybrid"], by["hybrid_managed"]
        out["speedup_p50"] = round(m["p50_ms"] / h["p50_ms"], 2)
        if h.get("server_p50_ms") and m.get("server_p50_ms"):
            out["speedup_server_p50"] = round(m["server_p50_ms"] / h["server_p50_ms"], 2)
        out["ndcg_difference"] = round(h["ndcg_at_10"] - m["ndcg_at_10"], 4)
        out["equal_ndcg"] = abs(out["ndcg_difference"]) <= 0.01
        out["five_times_faster_at_equal_ndcg"] = out["speedup_p50"] >= 5 and out["equal_ndcg"]
    if "hybrid" in by and "hybrid_unscreened" in by:
        out["screen_speedup_p50"] = round(by["hybrid_unscreened"]["p50_ms"] / by["hybrid"]["p50_ms"], 2)
    if "hybrid_pruned" in by and "hybrid_managed" in by:  # the same pipeline with maxsim_rerank's CP + EE
        h, m = by["hybrid_pruned"], by["hybrid_managed"]
        out["pruned_speedup_p50"] = round(m["p50_ms"] / h["p50_ms"], 2)
        out["pruned_ndcg_difference"] = round(h["ndcg_at_10"] - m["ndcg_at_10"], 4)
        out["pruned_five_times_faster_at_equal_ndcg"] = (out["pruned_speedup_p50"] >= 5
                                                         and abs(out["pruned_ndcg_difference"]) <= 0.01)
    return out


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    pm = meta.get("pipeline", {})
    lines = [f"`{meta['command']}` — {meta['date']}, {pm.get('n')} passages, {pm.get('queries')} known-item queries, "
             f"{meta['machine'].get('cores')} cores.", "",
             "| system | config | nDCG@10 | nDCG@10 (first 40 queries) | p50 ms (client) | p95 ms | p50 ms (server) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {C.fmt_config(r['config'])} | {r.get('ndcg_at_10')} | "
                     f"{r.get('ndcg_at_10_first40')} | {r['p50_ms']} | {r['p95_ms']} | {r.get('server_p50_ms')} |")
    acc = acceptance(rows)
    lines += ["", "Acceptance (issue 5):", ""]
    if "hybrid_beats_best_single" in acc:
        lines.append(f"- default hybrid nDCG@10 {acc['hybrid_ndcg']} vs best single stage {acc['best_single_ndcg']}: "
                     f"{'PASS' if acc['hybrid_beats_best_single'] else 'FAIL'}")
    if "hybrid_beats_exhaustive_maxsim" in acc:
        lines.append(f"- on the first 40 queries: default hybrid {acc['hybrid_ndcg_first40']} vs exhaustive MaxSim "
                     f"{acc['exhaustive_maxsim_ndcg_first40']}: "
                     f"{'above' if acc['hybrid_beats_exhaustive_maxsim'] else 'NOT above'}")
    if "speedup_p50" in acc:
        lines.append(f"- pgsieve mode vs the same pipeline on pgvector alone: {acc['speedup_p50']}× (client p50), "
                     f"{acc.get('speedup_server_p50')}× (server p50), nDCG@10 difference {acc['ndcg_difference']}: "
                     f"{'PASS' if acc['five_times_faster_at_equal_ndcg'] else 'FAIL'} (≥ 5× at equal nDCG@10)")
    if "screen_speedup_p50" in acc:
        lines.append(f"- maxsim_rerank's screen (path: {pm.get('screen_path')}): default hybrid "
                     f"{acc['screen_speedup_p50']}× faster than with `pgsieve.maxsim_screen = off` (client p50); "
                     f"same hits for every query: {pm.get('screen_same_hits')}")
    if "pruned_speedup_p50" in acc:
        lines.append(f"- with maxsim_rerank's candidate pruning + early exit (alpha 0.03, beta 3; pgsieve only): "
                     f"{acc['pruned_speedup_p50']}× (client p50), nDCG@10 difference {acc['pruned_ndcg_difference']}: "
                     f"{'PASS' if acc['pruned_five_times_faster_at_equal_ndcg'] else 'FAIL'}")
    lines += ["", "Server p50: `Execution Time` of `EXPLAIN (ANALYZE, TIMING OFF)`; the client p50 (one statement, query "
              "already encoded) is the figure the acceptance uses."]
    return "\n".join(lines) + "\n"
