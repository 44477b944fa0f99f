#!/usr/bin/env python3
"""pgsieve benchmark harness.

    python bench/run.py --suite binary [--n 100000] [--scale auto|none|FACTOR] [--queries 200]
                        [--systems seqscan,pgsieve,...] [--out bench/results/binary-100k.json]
                        [--data-dir bench/data] [--dsn URL] [--update-md]

Runs every system of a suite side by side on the same table, queries and exact ground truth, writes JSON rows
``{suite, system, config, n, recall_at_10, p50_ms, p95_ms, qps, build_s, index_mb, ...}`` and, with
``--update-md``, the suite's section of BENCHMARKS.md plus a recall/latency plot under bench/plots/.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench import common as C  # noqa: E402
from bench.suites import SUITES, SYSTEMS  # noqa: E402


def n_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=sorted(SUITES), help="suite to run (required unless --render-md)")
    p.add_argument("--n", type=int, default=100_000, help="table rows (default 100000)")
    p.add_argument("--scale", default="auto",
                   help="'auto' (default): grow the real corpus with noisy copies when --n exceeds it; "
                        "'none': never (error if --n exceeds the real rows); FACTOR: n = FACTOR x real rows")
    p.add_argument("--noise", type=float, default=0.015,
                   help="per-dimension gaussian sigma for synthetic copies (before re-normalizing; default 0.015, "
                        "about cos 0.96 to the original for d=384)")
    p.add_argument("--queries", type=int, default=200, help="known-item queries sampled (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3,
                   help="timed passes per configuration; the lowest-median pass is reported (default 3)")
    p.add_argument("--systems", type=lambda s: [x.strip() for x in s.split(",") if x.strip()], default=None,
                   help="comma list of systems to run (default all of the suite)")
    p.add_argument("--rerank", default=None, help="pgsieve.binary_rerank values (default 100,200,400,800)")
    p.add_argument("--ef-search", default=None, help="hnsw.ef_search values (default 40,100,200,400,800)")
    p.add_argument("--bit-limits", default=None, help="inner LIMITs of the HNSW-bit recipe (default 40,...,800)")
    p.add_argument("--mv-encoder", choices=("minilm", "fake"), default="minilm",
                   help="multivector: token encoder (fake = a test double for smoke tests; default minilm)")
    p.add_argument("--fde-rerank", default=None,
                   help="multivector: pgsieve.fde_rerank values (default 50,100,200,400,800)")
    p.add_argument("--candidates", default=None,
                   help="multivector: sparse-gather candidate counts for the MaxSim re-rank (default 50,100,200)")
    p.add_argument("--seqscan-queries", type=int, default=None,
                   help="multivector: queries timed on the exhaustive scans (default 40; all: 0)")
    p.add_argument("--limit-passages", type=int, default=None,
                   help="use only the first N real passages (smoke tests)")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/SUITE-N.json)")
    p.add_argument("--data-dir", type=Path, default=C.DATA_DIR,
                   help="encodings cache and the bench server's data dir (pgdata/ inside)")
    p.add_argument("--dsn", default=None, help="use this server instead of starting bench/data/pgdata")
    p.add_argument("--update-md", action="store_true", help="rewrite the suite's section of BENCHMARKS.md")
    p.add_argument("--md", type=Path, default=C.BENCHMARKS_MD, help=argparse.SUPPRESS)
    p.add_argument("--md-section", default=None,
                   help="BENCHMARKS.md section name (default SUITE for n=100000, else SUITE-N)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--render-md", type=Path, default=None, metavar="JSON",
                   help="only re-render BENCHMARKS.md's section (and plot) from a results file, run nothing")
    a = p.parse_args(argv)
    if not a.suite and not a.render_md:
        p.error("--suite is required")
    if a.systems:
        bad = [s for s in a.systems if s not in SYSTEMS.get(a.suite, [])]
        if bad:
            p.error(f"unknown systems for suite {a.suite}: {bad}; known: {SYSTEMS.get(a.suite)}")
    return a


def render_only(a: argparse.Namespace) -> int:
    doc = json.loads(a.render_md.read_text())
    meta, rows = doc["meta"], doc["rows"]
    a.suite = a.suite or meta["suite"]
    write_outputs(a, meta, rows)
    return 0


def write_outputs(a: argparse.Namespace, meta: dict, rows: list) -> None:
    n, n_real = meta["n"], meta["n_real"]
    if a.suite == "multivector":          # its own section, tables and plot (a normal run writes them itself)
        from bench.suites import multivector
        meta["acceptance"] = multivector.acceptance(rows, meta.get("multivector", {}))
        if not a.no_plot and rows:
            png = C.PLOTS_DIR / f"multivector-{n_label(n)}.png"
            if multivector.plot(rows, png, meta):
                meta["plot"] = str(png.relative_to(C.REPO_ROOT))
        if a.update_md or a.render_md:
            C.replace_md_section(a.md_section or "multivector", multivector.markdown(meta, rows), a.md)
            C.log(f"updated {a.md} section {a.md_section or 'multivector'}")
        return
    plot_rel = None
    if not a.no_plot and rows:
        png = C.PLOTS_DIR / f"{a.suite}-{n_label(n)}.png"
        title = (f"{a.suite}: recall@10 vs p50 latency (client), n={n:,}"
                 + (" (synthetic)" if n > n_real else "") + f", {meta['machine'].get('cores')} cores")
        if C.plot_recall_latency(rows, png, title, key="p50_ms"):
            plot_rel = str(png.relative_to(C.REPO_ROOT))
            C.log(f"plot: {png}")
    if a.update_md or a.render_md:
        section = a.md_section or (a.suite if n == 100_000 else f"{a.suite}-{n_label(n)}")
        if a.suite == "binary":
            from bench.suites import binary
            body = binary.markdown(meta, rows, plot_rel)
        elif a.suite == "pipeline":
            from bench.suites import pipeline
            body = pipeline.markdown(meta, rows)
        else:
            body = C.rows_table(rows)
        C.replace_md_section(section, body, a.md)
        C.log(f"updated {a.md} section {section}")


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.render_md:
        return render_only(a)
    cmd = "python bench/run.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    t_start = time.perf_counter()
    C.REPEAT = max(1, a.repeat)

    enc = C.encoded_corpus(a.limit_passages, a.data_dir)
    real = enc.docs
    r = real.shape[0]
    if a.suite in ("multivector", "pipeline"):   # token sets are never grown: these use the real passages only
        a.n = min(a.n, r)
    if a.scale == "none":
        if a.n > r:
            raise SystemExit(f"--n {a.n} exceeds the {r} real passages and --scale none was given")
        n = a.n
    elif a.scale == "auto":
        n = a.n
    else:
        n = int(round(float(a.scale) * r))
    emb, n_real = C.scaled_embeddings(real, n, a.noise, a.seed)
    C.log(f"table: {n:,} rows ({n_real:,} real" + (f", {n - n_real:,} synthetic" if n > n_real else "") + ")")

    # queries: known-item queries with a relevant passage among the real rows
    rng = np.random.default_rng(a.seed)
    cand = [i for i, rel in enumerate(enc.corpus.relevant) if any(x < n_real for x in rel)]
    if not cand:
        cand = list(range(len(enc.corpus.queries)))
    pick = sorted(rng.choice(len(cand), size=min(a.queries, len(cand)), replace=False).tolist())
    qidx = [cand[i] for i in pick]
    queries = enc.queries[qidx]
    relevant = [[x for x in enc.corpus.relevant[i] if x < n_real] for i in qidx]

    t0 = time.perf_counter()
    truth, truth_scores = C.exact_topk(emb, queries, 10)
    distinct = float(np.mean([len(set((row % n_real).tolist())) for row in truth]))
    C.log(f"numpy exact top-10 for {len(queries)} queries in {time.perf_counter() - t0:.1f}s")

    url = a.dsn
    server = None
    if url is None:
        server = C.BenchServer(a.data_dir / "pgdata")
        url = server.start()
        server.ensure_settings()
        C.log(f"bench server: {server.data_dir} via {server.how}")

    meta = {
        "suite": a.suite, "command": cmd, "date": C.now_iso(), "n": n, "n_real": n_real, "synthetic": n > n_real,
        "noise": a.noise if n > n_real else None, "d": int(emb.shape[1]), "queries": len(queries),
        "seed": a.seed, "repeat": C.REPEAT, "corpus": enc.corpus.name, "corpus_fingerprint": enc.corpus.fingerprint,
        "corpus_info": enc.corpus.info, "encoder": enc.encoder, "encodings_cache": enc.cache_file,
        "machine": C.machine_facts(), "server_settings": C.SERVER_SETTINGS, "session_settings": C.SESSION_SETTINGS,
        "server_dsn_given": a.dsn is not None, "truth_distinct_sources": round(distinct, 2),
    }
    ctx = C.Context(args=a, url=url, emb=emb, n_real=n_real, queries=queries, relevant=relevant, truth=truth,
                    truth_scores=truth_scores,
                    meta=meta)
    meta["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    rows = SUITES[a.suite](ctx)
    meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["errors"] = ctx.errors
    meta["wall_s"] = round(time.perf_counter() - t_start, 1)

    out = a.out or (C.RESULTS_DIR / f"{a.suite}-{n_label(meta['n'])}.json")   # a suite may cap n (multivector)
    C.write_json(out, meta, rows)
    C.log(f"wrote {len(rows)} rows to {out}")
    print(C.rows_table(rows))

    write_outputs(a, meta, rows)
    if ctx.errors:
        C.log("errors: " + "; ".join(ctx.errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
