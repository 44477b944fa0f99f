"""Suite ``binary``: binary-quantized dense retrieval, pgsieve's ``binary_scan`` and its peers side by side.

Systems (all on the same table, same queries, same exact ground truth):
- ``seqscan``            exact sequential scan (``ORDER BY emb <=> q LIMIT 10`` with index scans disabled)
- ``pgsieve``            ``binary_scan`` index (quantizer 'mean', the default), at its default
                         ``pgsieve.binary_rerank`` and at several explicit values; plus a code-scan row
                         (``binary_rerank = 10``) giving rows/s = n / server execution time
- ``pgsieve_sign``       the same index with ``quantizer = 'sign'`` (the codes faiss scans below)
- ``faiss_binary_flat``  faiss ``IndexBinaryFlat`` over sign codes, single-threaded: Hamming top-10 (the code-scan
                         speed reference) and Hamming top-R + numpy float re-rank (the same algorithm in-process)
- ``pgvector_hnsw``      HNSW on ``vector`` (m=16, ef_construction=64), ``hnsw.ef_search`` sweep
- ``pgvector_hnsw_bit``  HNSW on ``binary_quantize(emb)::bit(d)`` + pgvector's documented re-rank subquery
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import common as C

SUITE = "binary"
TABLE = "bench_items"
KNN = "SELECT id FROM bench_items ORDER BY emb <=> %(q)s LIMIT 10"
# index systems: keep the planner off the exact scan (at small n it prefers it); the plan is also checked
IDX = ["SET enable_seqscan = off"]


def _ints(s: str | list[int] | None, default: list[int]) -> list[int]:
    if s is None:
        return default
    if isinstance(s, list):
        return s
    return [int(x) for x in str(s).split(",") if x.strip()]


def run(ctx: C.Context) -> list[dict[str, Any]]:
    a = ctx.args
    conn = C.connect(ctx.url)
    n, d = ctx.emb.shape
    fp = {"n": n, "n_real": ctx.n_real, "d": d, "noise": getattr(a, "noise", None), "seed": a.seed,
          "corpus": ctx.meta.get("corpus_fingerprint"), "encoder": ctx.meta.get("encoder")}
    reloaded, load_s = C.load_table(conn, TABLE, ctx.emb, fp)
    ctx.meta["table_mb"] = round(C.relation_mb(conn, TABLE), 1)
    ctx.meta["table_load_s"] = round(load_s, 1) if reloaded else None
    C.drop_indexes(conn, TABLE)
    pgsieve_err = C.ensure_pgsieve(conn)
    ctx.meta["server"] = C.server_facts(conn)

    rows: list[dict[str, Any]] = []
    syn = ctx.synthetic
    common_extra = {"synthetic": syn, "queries": len(ctx.queries)}

    def add(system: str, config: dict[str, Any], t: C.Timed | None, build_s=None, index_mb=None, **extra):
        rec = None if t is None else ctx.recall(t.ids)
        r = C.make_row(SUITE, system, config, n, t, rec, build_s, index_mb, **common_extra, **extra)
        if t is not None:
            r["recall_at_10_strict"] = round(C.recall_at_k(t.ids, ctx.truth, 10), 4)
        if t is not None:
            ki = C.known_item_success(t.ids, ctx.relevant, ctx.n_real)
            if ki is not None:
                r["known_item_success_at_10"] = round(ki, 4)
        if t is not None and t.plan:
            r["plan"] = t.plan
        rows.append(r)
        C.log(f"  {system:18s} {C.fmt_config(config):45s} recall@10={r['recall_at_10']} "
              f"p50={r['p50_ms']}ms server_p50={r.get('server_p50_ms')}ms qps={r['qps']}"
              + (f" rows/s={r['rows_per_s']:.3g}" if r.get("rows_per_s") else ""))
        return r

    def guarded(system: str, fn) -> None:
        ctx.guarded(system, fn, lambda: C.drop_indexes(conn, TABLE))

    rerank_list = _ints(getattr(a, "rerank", None), [100, 200, 400, 800])
    ef_list = _ints(getattr(a, "ef_search", None), [40, 100, 200, 400, 800])
    bit_limits = _ints(getattr(a, "bit_limits", None), [40, 100, 200, 400, 800])

    # ---------------------------------------------------------------- exact sequential scan
    def seqscan():
        t = C.time_sql(ctx.url, KNN, ctx.queries,
                       setup=["SET enable_indexscan = off", "SET enable_bitmapscan = off"],
                       expect_node="Seq Scan", repeat=1)
        r = add("seqscan", {"exact": True}, t, None, None)
        ctx.meta["ground_truth_check"] = {
            "seqscan_recall_vs_numpy": r["recall_at_10"],
            "ok": r["recall_at_10"] is not None and r["recall_at_10"] >= 0.999,
        }
        if not ctx.meta["ground_truth_check"]["ok"]:
            C.log("!! exact seq scan disagrees with the numpy ground truth")

    guarded("seqscan", seqscan)

    # ---------------------------------------------------------------- pgsieve binary_scan
    def pgsieve_system(system: str, quantizer: str | None) -> None:
        if pgsieve_err is not None:
            raise RuntimeError(f"CREATE EXTENSION pgsieve failed ({pgsieve_err}); install it with "
                               f"`pgsieve ext install` (pg_config {C.pg_config_path()})")
        ok = conn.execute("SELECT 1 FROM pg_am WHERE amname = 'binary_scan'").fetchone()
        if not ok:
            raise RuntimeError("index access method binary_scan does not exist in the installed pgsieve")
        with_ = f" WITH (quantizer = '{quantizer}')" if quantizer else ""
        name = "bench_pgsieve"
        C.log(f"  CREATE INDEX ... USING binary_scan (emb vector_cosine_ops){with_}")
        with C.BuildProgress(ctx.url, name, every=30):
            build_s, mb = C.build_index(
                conn, f"CREATE INDEX {name} ON {TABLE} USING binary_scan (emb vector_cosine_ops){with_}", name)
        C.log(f"  built in {build_s:.2f}s, {mb:.1f} MB")
        default_rr = conn.execute("SELECT current_setting('pgsieve.binary_rerank')").fetchone()[0]
        qcfg = {"quantizer": quantizer or "mean (default)"}
        t = C.time_sql(ctx.url, KNN, ctx.queries, setup=IDX, expect_node=name)
        add(system, {**qcfg, "binary_rerank": f"{default_rr} (default)"}, t, build_s, mb)
        for rr in rerank_list:
            t = C.time_sql(ctx.url, KNN, ctx.queries, setup=IDX + [f"SET pgsieve.binary_rerank = {rr}"],
                           expect_node=name)
            add(system, {**qcfg, "binary_rerank": rr}, t, build_s, mb)
        # code-scan speed: minimal re-rank; rows/s = n / server-side execution time (p50)
        t = C.time_sql(ctx.url, KNN, ctx.queries, setup=IDX + ["SET pgsieve.binary_rerank = 10"], expect_node=name)
        add(system, {**qcfg, "binary_rerank": 10, "purpose": "code-scan"}, t, build_s, mb,
            rows_per_s=round(n / (t.server_p50 / 1000.0)))

    guarded("pgsieve", lambda: pgsieve_system("pgsieve", None))
    guarded("pgsieve_sign", lambda: pgsieve_system("pgsieve_sign", "sign"))

    # ---------------------------------------------------------------- faiss IndexBinaryFlat
    def faiss_flat():
        import faiss
        faiss.omp_set_num_threads(1)
        dpad = (d + 7) // 8 * 8
        def pack(x: np.ndarray) -> np.ndarray:
            bits = x > 0
            if dpad != d:
                bits = np.concatenate([bits, np.zeros((bits.shape[0], dpad - d), bool)], axis=1)
            return np.packbits(bits, axis=1)                       # dim i -> byte i/8, bit 7-(i%8) (MSB first)
        codes = pack(ctx.emb)
        qcodes = pack(ctx.queries)
        t0 = time.perf_counter()
        index = faiss.IndexBinaryFlat(dpad)
        index.add(codes)
        build_s = time.perf_counter() - t0
        mb = codes.nbytes / 2**20
        cfg = {"threads": 1, "codes": f"sign {dpad}-bit"}

        def hamming10(i: int):
            _, I = index.search(qcodes[i:i + 1], 10)
            return I[0]
        t = _time_indexed(hamming10, len(ctx.queries))
        add("faiss_binary_flat", {**cfg, "k": 10, "rerank": None, "purpose": "code-scan"}, t, build_s, mb,
            rows_per_s=round(n / (t.p50 / 1000.0)), timing="in-process")
        for rr in rerank_list:
            def hr(i: int, rr=rr):
                _, I = index.search(qcodes[i:i + 1], rr)
                cand = I[0][I[0] >= 0]
                s = ctx.emb[cand] @ ctx.queries[i]
                top = np.argsort(-s, kind="stable")[:10]
                return cand[top]
            t = _time_indexed(hr, len(ctx.queries))
            add("faiss_binary_flat", {**cfg, "k": 10, "rerank": rr, "rerank_by": "numpy float"}, t, build_s, mb,
                timing="in-process")

    guarded("faiss_binary_flat", faiss_flat)

    # ---------------------------------------------------------------- pgvector HNSW on vector
    def hnsw():
        name = "bench_hnsw"
        C.log("  CREATE INDEX ... USING hnsw (emb vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        with C.BuildProgress(ctx.url, name, every=30):
            build_s, mb = C.build_index(
                conn, f"CREATE INDEX {name} ON {TABLE} USING hnsw (emb vector_cosine_ops) "
                      f"WITH (m = 16, ef_construction = 64)", name)
        C.log(f"  built in {build_s:.1f}s, {mb:.1f} MB")
        for ef in ef_list:
            t = C.time_sql(ctx.url, KNN, ctx.queries, setup=IDX + [f"SET hnsw.ef_search = {ef}"], expect_node=name)
            add("pgvector_hnsw", {"m": 16, "ef_construction": 64, "ef_search": ef}, t, build_s, mb)

    guarded("pgvector_hnsw", hnsw)

    # ---------------------------------------------------------------- pgvector HNSW on binary_quantize()::bit
    def hnsw_bit():
        name = "bench_hnsw_bit"
        expr = f"(binary_quantize(emb)::bit({d}))"
        C.log(f"  CREATE INDEX ... USING hnsw ({expr} bit_hamming_ops) WITH (m = 16, ef_construction = 64)")
        with C.BuildProgress(ctx.url, name, every=30):
            build_s, mb = C.build_index(
                conn, f"CREATE INDEX {name} ON {TABLE} USING hnsw ({expr} bit_hamming_ops) "
                      f"WITH (m = 16, ef_construction = 64)", name)
        C.log(f"  built in {build_s:.1f}s, {mb:.1f} MB")
        for lim in bit_limits:
            ef = min(1000, max(40, lim))
            sql = (f"SELECT id FROM (SELECT id, emb FROM {TABLE} "
                   f"ORDER BY binary_quantize(emb)::bit({d}) <~> binary_quantize(%(q)s) LIMIT {lim}) s "
                   f"ORDER BY s.emb <=> %(q)s LIMIT 10")
            t = C.time_sql(ctx.url, sql, ctx.queries, setup=IDX + [f"SET hnsw.ef_search = {ef}"], expect_node=name)
            add("pgvector_hnsw_bit", {"m": 16, "ef_construction": 64, "inner_limit": lim, "ef_search": ef},
                t, build_s, mb)

    guarded("pgvector_hnsw_bit", hnsw_bit)

    conn.close()
    ctx.meta["acceptance"] = acceptance(rows)
    return rows


def _time_indexed(fn, nq: int) -> C.Timed:
    return C.time_callable(fn, range(nq))


def acceptance(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's acceptance points, computed from one run's rows (None where a system is missing)."""
    def pick(system, pred=lambda c: True):
        return [r for r in rows if r["system"] == system and pred(r["config"])]

    out: dict[str, Any] = {}
    pd = pick("pgsieve", lambda c: str(c.get("binary_rerank", "")).endswith("(default)"))
    hn = pick("pgvector_hnsw")
    scan = pick("pgsieve", lambda c: c.get("purpose") == "code-scan")
    fz = pick("faiss_binary_flat", lambda c: c.get("purpose") == "code-scan")
    if pd:
        p = pd[0]
        out["pgsieve_default"] = {"config": p["config"], "recall_at_10": p["recall_at_10"], "p50_ms": p["p50_ms"],
                                  "server_p50_ms": p.get("server_p50_ms"), "build_s": p["build_s"]}
        out["recall_ok"] = p["recall_at_10"] >= 0.98
        if hn:
            matched = sorted([h for h in hn if h["recall_at_10"] >= p["recall_at_10"]],
                             key=lambda h: h["config"]["ef_search"])
            h = matched[0] if matched else max(hn, key=lambda h: h["recall_at_10"])
            out["hnsw_same_recall"] = {"config": h["config"], "recall_at_10": h["recall_at_10"],
                                       "p50_ms": h["p50_ms"], "server_p50_ms": h.get("server_p50_ms"),
                                       "reaches_pgsieve_recall": bool(matched)}
            out["latency_ok"] = p["p50_ms"] <= h["p50_ms"]
            out["latency_ratio_p50"] = round(p["p50_ms"] / h["p50_ms"], 3)
            out["build_ratio"] = round(p["build_s"] / hn[0]["build_s"], 4)
            out["build_ok"] = out["build_ratio"] <= 0.1
    if scan and fz:
        out["scan_rows_per_s"] = {"pgsieve": scan[0]["rows_per_s"], "faiss": fz[0]["rows_per_s"]}
        out["scan_ratio"] = round(scan[0]["rows_per_s"] / fz[0]["rows_per_s"], 3)
        out["scan_ok"] = out["scan_ratio"] >= 0.5
    return out


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], plot_rel: str | None) -> str:
    """Body of the BENCHMARKS.md section for this suite."""
    m = meta
    mach, srv = m.get("machine", {}), m.get("server", {})
    acc = m.get("acceptance", {})
    lines = [f"### Suite `binary`, n = {m['n']:,}" + (" (synthetic rows)" if m.get("synthetic") else ""), ""]
    lines += [f"Run {m['date']}: `{m['command']}`", ""]
    ci = m.get("corpus_info", {})
    syn_note = ""
    if m.get("synthetic"):
        syn_note = (f", grown to {m['n']:,} rows ({1 - m['n_real'] / m['n']:.0%} synthetic) with noisy "
                    f"re-normalized copies (σ = {m.get('noise')} per dimension)")
        if m.get("truth_distinct_sources"):
            syn_note += (f"; an exact top-10 then holds {m['truth_distinct_sources']:.1f} distinct source passages "
                         f"on average (the rest are their copies)")
    lines += [
        f"- Corpus: {m['n_real']:,} real man-page passages from {ci.get('pages', '?'):,} pages" + syn_note
        + f"; {m['queries']} known-item queries (NAME lines); embeddings: all-MiniLM-L6-v2, d = {m['d']} "
        f"({m.get('encoder')}).",
        "- Recall@10 is against exact float (cosine) top-10 computed in numpy"
        + (f"; the exact seq scan in PostgreSQL agrees at {m['ground_truth_check']['seqscan_recall_vs_numpy']}."
           if m.get("ground_truth_check") else "."),
        "- Latency: single client, warm (one warm-up pass), prepared statements; *client* = psycopg round trip, "
        "*server* = `Execution Time` of `EXPLAIN (ANALYZE, TIMING OFF)`. faiss rows are in-process (client = "
        f"server). Best of {m.get('repeat', 1)} passes (lowest median; the exact seq scan: 1 pass). "
        "QPS = 1 / mean client latency of that pass.",
        f"- Machine: {mach.get('cpu', '?')}, {mach.get('cores')} cores, {mach.get('mem_gib')} GiB; "
        f"PostgreSQL {srv.get('server_version')}, extensions {srv.get('extensions')}; pgsieve kernel level "
        f"`{srv.get('pgsieve_kernel_level')}`; faiss {mach.get('faiss')}.",
        f"- Server settings: shared_buffers={srv.get('shared_buffers')}, work_mem={srv.get('work_mem')}, "
        f"maintenance_work_mem={srv.get('maintenance_work_mem')}, max_parallel_maintenance_workers="
        f"{srv.get('max_parallel_maintenance_workers')} (HNSW builds use leader + 1 worker), "
        f"max_parallel_workers_per_gather={srv.get('max_parallel_workers_per_gather')}, jit={srv.get('jit')}. "
        f"Table {m.get('table_mb')} MB. Load average (1/5/15 min) at start {m.get('loadavg_start')}, "
        f"end {m.get('loadavg_end')}; run took {m.get('wall_s')} s.",
    ]
    loads = [x for k in ("loadavg_start", "loadavg_end") for x in (m.get(k) or [])[:1]]
    if loads and max(loads) > 1.0:
        lines.append(f"- **Shared machine**: other processes were running (1-min load up to {max(loads)} on "
                     f"{mach.get('cores')} cores), so latencies are noisier and higher than on a quiet machine; "
                     "compare systems within this run, and rerun on a quiet machine for final figures.")
    lines.append("")
    lines.append(C.rows_table(rows))
    scan_rows = [r for r in rows if r.get("rows_per_s")]
    if scan_rows:
        lines.append("Code-scan speed (rows/s; pgsieve: n / server execution time at `binary_rerank = 10`; "
                     "faiss: n / search time of one query, `omp_set_num_threads(1)`):")
        lines.append("")
        for r in scan_rows:
            lines.append(f"- {r['system']} ({C.fmt_config(r['config'])}): {r['rows_per_s']:,.0f} rows/s")
        lines.append("")
    if acc:
        lines.append("Acceptance (issue 2), from this run:")
        lines.append("")
        pdv = acc.get("pgsieve_default")
        if pdv:
            lines.append(f"- recall@10 at defaults: {pdv['recall_at_10']} (≥ 0.98: "
                         f"{'yes' if acc.get('recall_ok') else 'no'})")
        h = acc.get("hnsw_same_recall")
        if h and pdv:
            how = ("the smallest ef_search reaching pgsieve's recall" if h["reaches_pgsieve_recall"] else
                   "HNSW never reached pgsieve's recall in the sweep; its best setting")
            lines.append(f"- p50 vs pgvector HNSW at the same recall ({how}: {C.fmt_config(h['config'])}, recall "
                         f"{h['recall_at_10']}): pgsieve {pdv['p50_ms']:.3f} ms vs HNSW {h['p50_ms']:.3f} ms "
                         f"client, {pdv.get('server_p50_ms'):.3f} vs {h.get('server_p50_ms'):.3f} ms server "
                         f"({'yes' if acc.get('latency_ok') else 'no'})")
        if "build_ratio" in acc:
            lines.append(f"- build time ratio pgsieve / HNSW: {acc['build_ratio']} (≤ 0.1: "
                         f"{'yes' if acc.get('build_ok') else 'no'})")
        if "scan_ratio" in acc:
            lines.append(f"- code scan rows/s ratio pgsieve / faiss IndexBinaryFlat (1 thread): {acc['scan_ratio']} "
                         f"(≥ 0.5: {'yes' if acc.get('scan_ok') else 'no'})")
        lines.append("")
    if m.get("errors"):
        lines.append("Errors in this run: " + "; ".join(m["errors"]))
        lines.append("")
    if plot_rel:
        lines.append(f"![recall vs latency]({plot_rel})")
        lines.append("")
    return "\n".join(lines)
