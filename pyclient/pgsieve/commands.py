"""``pgsieve ingest`` / ``search`` / ``eval``: the collection commands behind :mod:`pgsieve.cli`.

They work on a :class:`pgsieve.collections.Collection`:

* ``ingest PATH --collection NAME``: a JSONL file (``{"id", "text", "metadata"}`` per line) or a BEIR folder is
  encoded and added to the collection, which is created first (``--preset`` or ``--fields``) when it does not
  exist yet;
* ``search --collection NAME "query"``: one query through a pipeline, as a table, JSON (``--json``) or the one
  SQL statement it compiles to, with its parameters (``--explain``);
* ``eval --collection NAME --beir DIR``: every judged query of a BEIR split through the pipeline; the run is
  written as ``{qid: {docid: score}}`` JSON or a TREC run file and scored with ir-measures (nDCG@10, RR@10,
  R@100 by default); ``--per-stage`` also scores each gather stage alone (and the fusion before a re-rank) and
  ``--plot`` draws them as bars, ``--latency-plot`` as recall against latency.

The server is ``--dsn``, else ``$PGSIEVE_DSN``, else the running embedded server (``pgsieve server start``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from . import eval as ev

__all__ = ["PRESETS", "add_parsers", "parse_fields", "parse_pipeline", "stage_pipelines", "search_run"]


class CommandError(RuntimeError):
    """A request the command cannot carry out; the message says why (exit status 1)."""


# ---------------------------------------------------------------------------
# connection, fields, pipelines
# ---------------------------------------------------------------------------

def resolve_dsn(dsn: Optional[str]) -> str:
    """``--dsn``, else ``$PGSIEVE_DSN``, else the URL of the running embedded server."""
    if dsn:
        return dsn
    env = os.environ.get("PGSIEVE_DSN")
    if env:
        return env
    from . import server

    try:
        return server.url()
    except server.ServerError as exc:
        raise CommandError(f"{exc} (or pass --dsn / set PGSIEVE_DSN)") from None


def _connect(dsn: Optional[str]) -> Any:
    import psycopg

    url = resolve_dsn(dsn)
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise CommandError(f"cannot connect to {url}: {str(exc).strip()}") from None


def _dense(name: str, arg: Optional[str]) -> Any:
    from .collections import Field
    from .encoders import DenseEncoder

    return Field.dense(name, encoder=DenseEncoder(model_path=arg) if arg else DenseEncoder())


def _bm25(name: str, arg: Optional[str]) -> Any:
    from .collections import Field
    from .encoders import BM25Encoder

    return Field.sparse(name, encoder=BM25Encoder(tokenizer_path=arg) if arg else BM25Encoder())


def _splade(name: str, arg: Optional[str]) -> Any:
    from .collections import Field
    from .encoders import SpladeEncoder

    if not arg:
        raise CommandError(f"field {name!r}: splade needs a local model folder (NAME:splade=PATH)")
    return Field.sparse(name, encoder=SpladeEncoder(model_path=arg))


def _colbert(name: str, arg: Optional[str]) -> Any:
    from .collections import Field
    from .encoders import LateInteractionEncoder

    enc = LateInteractionEncoder(model_path=arg) if arg else LateInteractionEncoder()
    return Field.multivector(name, encoder=enc, fmt="int8")


def _binary(name: str, arg: Optional[str]) -> Any:
    from .collections import Field

    if not arg:
        raise CommandError(f"field {name!r}: binary needs the dense field it quantizes (NAME:binary=DENSE_FIELD)")
    return Field.binary(name, source=arg)


#: --fields kinds: NAME:KIND[=ARG] (ARG: a local model / tokenizer folder, or binary's source field)
FIELD_KINDS: dict[str, Callable[[str, Optional[str]], Any]] = {
    "dense": _dense, "bm25": _bm25, "splade": _splade, "colbert": _colbert, "binary": _binary,
}
#: --preset name -> the --fields it stands for (models: the packaged all-MiniLM-L6-v2)
PRESETS: dict[str, str] = {
    "bm25": "bm25:bm25",
    "minilm": "dense:dense",
    "minilm-hybrid": "bm25:bm25,dense:dense",
    "minilm-binary-hybrid": "bm25:bm25,dense:dense,bin:binary=dense",
    "minilm-colbert": "bm25:bm25,dense:dense,colbert:colbert",
}


def parse_fields(spec: str) -> list[Any]:
    """Fields of a ``--fields`` value: comma-separated ``NAME:KIND[=ARG]`` (kinds: see :data:`FIELD_KINDS`)."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise CommandError("--fields is empty")
    out = []
    for item in items:
        name, sep, rest = item.partition(":")
        kind, _, arg = rest.partition("=")
        if not sep or not name or kind not in FIELD_KINDS:
            raise CommandError(f"--fields item {item!r}: expected NAME:KIND[=ARG] with KIND one of "
                               f"{sorted(FIELD_KINDS)}")
        out.append(FIELD_KINDS[kind](name.strip(), arg.strip() or None))
    return out


def parse_pipeline(text: Optional[str], coll: Any) -> Any:
    """``--pipeline``: ``default``, the name of one field (that field alone), inline JSON or ``@file.json``."""
    from .pipeline import Pipeline, gather

    if text is None or text == "default":
        return Pipeline.default(coll)
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"--pipeline {text}: {exc.strerror}") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        return Pipeline.from_dict(ev.json_object(stripped, "--pipeline"))
    if stripped in coll.fields:
        return Pipeline(gather(stripped, 100))
    raise CommandError(f"--pipeline {text!r}: expected 'default', a field of {coll.name!r} "
                       f"{sorted(coll.fields)}, JSON or @file")


def _json_arg(text: Optional[str], what: str) -> Optional[dict[str, Any]]:
    return None if text is None else ev.json_object(text, what)


def stage_pipelines(pipeline: Any, k: int) -> dict[str, Any]:
    """Label -> pipeline for ``--per-stage``: each gather alone (with ``k`` rows at least), the fusion of the
    gathers when a re-rank follows it, and the whole pipeline (last)."""
    from .pipeline import Gather, Pipeline

    out: dict[str, Any] = {}
    parts = [pipeline.fusion.method] if pipeline.fusion is not None else []
    if len(pipeline.gathers) > 1 or pipeline.rerank is not None:
        for g in pipeline.gathers:
            out[g.label] = Pipeline(Gather(g.field, max(g.k, k), g.kind, g.name))
    if pipeline.rerank is not None:
        if pipeline.fusion is not None:
            out[pipeline.fusion.method] = Pipeline(gathers=pipeline.gathers, fusion=pipeline.fusion)
        parts.append(pipeline.rerank.method)
    label = "+".join(parts) if parts else pipeline.gathers[0].label
    out[label] = pipeline
    return out


# ---------------------------------------------------------------------------
# running queries
# ---------------------------------------------------------------------------

def search_run(coll: Any, queries: Mapping[str, str], pipeline: Any = None, *, k: int = 100,
               filter: Optional[Mapping[str, Any]] = None, progress: bool = True,
               desc: str = "queries") -> tuple[ev.Run, list[float]]:
    """Run every query through ``coll.search``; the run ``{qid: {docid: score}}`` and each query's latency (ms)."""
    from tqdm.auto import tqdm

    run: ev.Run = {}
    latency: list[float] = []
    for qid, text in tqdm(queries.items(), total=len(queries), desc=desc, unit="q", disable=not progress,
                          leave=False):
        t0 = time.perf_counter()
        hits = coll.search(text, pipeline, k=k, filter=filter)
        latency.append((time.perf_counter() - t0) * 1000.0)
        run[qid] = {str(h.id): float(h.score) for h in hits}
    return run, latency


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------

#: documents per ``Collection.add`` call (one transaction each) when a corpus is larger than this
INGEST_CHUNK = 10_000


def _chunks(docs: Any, size: int) -> Any:
    batch: list[ev.Doc] = []
    for d in docs:
        batch.append(d)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def cmd_ingest(ns: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    from tqdm.auto import tqdm

    from .collections import Collection

    if ns.workers < 1 or ns.batch_size < 1:
        raise CommandError("--workers and --batch-size must be >= 1")
    path = Path(ns.path)
    docs = ev.iter_documents(path)  # checks the path before connecting
    total = ev.count_documents(path)
    with _connect(ns.dsn) as conn:
        if _exists(conn, ns.collection):
            if ns.fields or ns.preset:
                raise CommandError(f"collection {ns.collection!r} exists: --fields/--preset only apply when "
                                   "creating it (drop it first to change its fields)")
            coll = Collection.open(conn, ns.collection)
        else:
            spec = ns.fields or PRESETS[ns.preset or "minilm-hybrid"]
            coll = Collection.create(conn, ns.collection, fields=parse_fields(spec), mode=ns.mode)
            print(f"created collection {ns.collection!r}: {spec} ({coll.mode} mode)", file=out)
        t0 = time.perf_counter()
        n = 0
        pool = _pools(coll, ns.workers)
        try:
            if total <= INGEST_CHUNK:  # one transaction; add's own progress bar
                n = coll.add(docs, pool=pool, batch_size=ns.batch_size, progress=not ns.no_progress)
            else:  # one transaction per chunk, so memory stays bounded; progress over the whole corpus
                with tqdm(total=total, desc=f"ingest {path.name}", unit="doc", disable=ns.no_progress) as bar:
                    for chunk in _chunks(docs, INGEST_CHUNK):
                        n += coll.add(chunk, pool=pool, batch_size=ns.batch_size, progress=False)
                        bar.update(len(chunk))
        finally:
            for p in (pool or {}).values():
                p.close()
        dt = time.perf_counter() - t0
        print(f"added {n} documents to {ns.collection!r} in {dt:.1f}s ({n / dt if dt > 0 else 0:.0f} docs/s)",
              file=out)
    return 0


def _exists(conn: Any, name: str) -> bool:
    """Whether the catalog has a collection ``name`` (without opening it, which loads its encoders)."""
    from psycopg import sql

    from .catalog import SCHEMA, ensure_catalog

    ensure_catalog(conn)
    row = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE name = %s").format(sql.Identifier(SCHEMA, "collections")),
                       (name,)).fetchone()
    return row is not None


def _pools(coll: Any, workers: int) -> Optional[dict[str, Any]]:
    """``--workers N``: an EncoderPool of N worker processes per model-encoded field (BM25 is encoded in-process
    from the database's statistics); None for in-process encoding."""
    if workers <= 1:
        return None
    from .workers import EncoderPool

    pools: dict[str, Any] = {}
    try:
        for f in coll.fields.values():
            cfg = f.config
            if cfg is None or not f.needs_encoder or str(cfg.get("factory", "")).endswith(":BM25Encoder"):
                continue
            pools[f.name] = EncoderPool((cfg["factory"], dict(cfg.get("kwargs") or {})), devices="auto",
                                        workers_per_device=workers)
    except BaseException:
        for p in pools.values():
            p.close()
        raise
    return pools or None


def _open(conn: Any, name: str) -> Any:
    from .collections import Collection

    if not _exists(conn, name):
        raise CommandError(f"no collection {name!r} in this database (create it with `pgsieve ingest`)")
    return Collection.open(conn, name)


def _hit_dict(h: Any) -> dict[str, Any]:
    return {"id": h.id, "score": h.score,
            "stages": {name: {"rank": s.rank, "score": s.score} for name, s in (h.stages or {}).items()},
            "text": h.text, "metadata": h.metadata}


def _snippet(text: Optional[str], width: int = 70) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= width else t[: width - 1] + "\u2026"


def cmd_search(ns: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    filt = _json_arg(ns.filter, "--filter")
    with _connect(ns.dsn) as conn:
        coll = _open(conn, ns.collection)
        pipeline = parse_pipeline(ns.pipeline, coll)
        if ns.explain:
            print(coll.explain(ns.query, pipeline, k=ns.k, filter=filt), file=out)
            return 0
        hits = coll.search(ns.query, pipeline, k=ns.k, filter=filt)
    if ns.json:
        print(json.dumps([_hit_dict(h) for h in hits], indent=1, ensure_ascii=False), file=out)
        return 0
    if not hits:
        print("no results", file=out)
        return 0
    stages = list(dict.fromkeys(s for h in hits for s in (h.stages or {})))
    idw = max(len("id"), *(len(h.id) for h in hits))
    head = f"{'#':>3}  {'id':<{idw}}  {'score':>9}" + "".join(f"  {s[:8]:>8}" for s in stages) + "  text"
    print(head, file=out)
    for i, h in enumerate(hits, 1):
        ranks = "".join(f"  {'' if s not in (h.stages or {}) else h.stages[s].rank:>8}" for s in stages)
        print(f"{i:>3}  {h.id:<{idw}}  {h.score:>9.4f}{ranks}  {_snippet(h.text)}", file=out)
    if stages:
        print(f"(stage columns: the hit's rank in each stage; blank = not found by that stage)", file=out)
    return 0


def cmd_eval(ns: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    metrics = ev.parse_metrics(ns.metrics.split(",") if ns.metrics else ev.DEFAULT_METRICS)
    names = [str(m) for m in metrics]
    ds = ev.load_beir(ns.beir, ns.split)
    queries = ds.judged_queries
    if ns.limit:
        queries = dict(list(queries.items())[: ns.limit])
    qrels = {q: ds.qrels[q] for q in queries}
    k = ns.k or ev.max_cutoff(metrics)
    filt = _json_arg(ns.filter, "--filter")
    with _connect(ns.dsn) as conn:
        coll = _open(conn, ns.collection)
        pipeline = parse_pipeline(ns.pipeline, coll)
        todo = stage_pipelines(pipeline, k) if ns.per_stage else {"pipeline": pipeline}
        results: dict[str, dict[str, Any]] = {}
        for label, p in todo.items():
            run, lat = search_run(coll, queries, p, k=k, filter=filt, progress=not ns.no_progress,
                                  desc=f"eval {label}")
            res = ev.evaluate(qrels, run, metrics, ignore_identical_ids=ns.ignore_identical_ids)
            results[label] = {"run": run, "eval": res, "latency": lat, "pipeline": p.to_dict()}
    main_label = list(todo)[-1]
    if ns.run_out:
        ev.write_run(results[main_label]["run"], ns.run_out)
    rows = {label: {**r["eval"].aggregate, "p50 ms": _pct(r["latency"], 50), "p95 ms": _pct(r["latency"], 95)}
            for label, r in results.items()}
    print(f"{ds.path.name} ({ns.split}): {len(queries)} queries, k={k}, collection {ns.collection!r}", file=out)
    print(ev.metrics_table(rows, [*names, "p50 ms", "p95 ms"], label="stage" if ns.per_stage else "run",
                           formats={"p50 ms": ".1f", "p95 ms": ".1f"}), file=out)
    if ns.run_out:
        print(f"run: {ns.run_out}", file=out)
    if ns.metrics_out:
        doc = {"dataset": str(ds.path), "split": ns.split, "collection": ns.collection, "k": k,
               "results": {label: {**r["eval"].as_dict(), "pipeline": r["pipeline"],
                                   "latency_ms": {"p50": _pct(r["latency"], 50), "p95": _pct(r["latency"], 95)}}
                           for label, r in results.items()}}
        Path(ns.metrics_out).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.metrics_out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"metrics: {ns.metrics_out}", file=out)
    title = f"{ds.path.name} ({ns.split}, {len(queries)} queries), collection {ns.collection}"
    if ns.plot:
        from . import plots

        plots.stage_bars({label: r["eval"].aggregate for label, r in results.items()}, ns.plot, title, names)
        print(f"plot: {ns.plot}", file=out)
    if ns.latency_plot:
        from . import plots

        recall = next((n for n in names if n.startswith("R@")), names[0])
        series = [plots.Series(label, [r["eval"].aggregate[recall]], [max(_pct(r["latency"], 50), 1e-3)],
                               marker="osD^v<>ph*"[i % 10]) for i, (label, r) in enumerate(results.items())]
        plots.recall_latency(series, ns.latency_plot, title, xlabel=recall, ylabel="p50 latency per query, ms (log)")
        print(f"latency plot: {ns.latency_plot}", file=out)
    return 0


# ---------------------------------------------------------------------------
# argparse
# ---------------------------------------------------------------------------

def add_parsers(sub: Any) -> None:
    """Register ``ingest``, ``search`` and ``eval`` on :mod:`pgsieve.cli`'s sub-parsers."""
    dsn_help = "server URL (default: $PGSIEVE_DSN, else the running embedded server)"

    p = sub.add_parser("ingest", help="encode and load documents (JSONL or a BEIR folder) into a collection",
                       description="Encode and load documents into a collection, creating it if needed.")
    p.add_argument("path", help="JSONL file ({id, text, metadata} per line) or BEIR folder (corpus.jsonl)")
    p.add_argument("--collection", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", choices=sorted(PRESETS),
                   help="fields of a new collection (default minilm-hybrid: bm25 + MiniLM dense)")
    g.add_argument("--fields", help="fields of a new collection: NAME:KIND[=ARG],... with KIND one of "
                                    f"{', '.join(sorted(FIELD_KINDS))} (ARG: local model folder; binary: its "
                                    "dense source field), e.g. bm25:bm25,dense:dense")
    p.add_argument("--mode", default="auto", choices=("auto", "pgsieve", "managed"),
                   help="storage of a new collection (default auto)")
    p.add_argument("--dsn", help=dsn_help)
    p.add_argument("--workers", type=int, default=1, help="encoding worker processes (default 1: in-process)")
    p.add_argument("--batch-size", type=int, default=64, help="documents per encode/COPY batch (default 64)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="query a collection", description="Run one query through a pipeline.")
    p.add_argument("query")
    p.add_argument("--collection", required=True)
    p.add_argument("--pipeline", default="default",
                   help="'default' (the collection's hybrid), a field name (that field alone), JSON or @file.json")
    p.add_argument("--k", type=int, default=10, help="results (default 10)")
    p.add_argument("--filter", help='metadata filter as JSON, e.g. \'{"section": "DESCRIPTION"}\'')
    p.add_argument("--explain", action="store_true", help="print the SQL statement and its parameters instead of the hits")
    p.add_argument("--json", action="store_true", help="hits as JSON")
    p.add_argument("--dsn", help=dsn_help)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="evaluate a collection on a BEIR split (nDCG@10, RR@10, R@100)",
                       description="Run every judged query of a BEIR split, write the run and score it with "
                                   "ir-measures.")
    p.add_argument("--collection", required=True)
    p.add_argument("--beir", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv)")
    p.add_argument("--split", default="test")
    p.add_argument("--pipeline", default="default", help="as for `pgsieve search`")
    p.add_argument("--metrics", help=f"comma list in ir-measures syntax (default {','.join(ev.DEFAULT_METRICS)})")
    p.add_argument("--k", type=int, default=None,
                   help="results per query (default: the deepest metric cutoff, 100 for R@100)")
    p.add_argument("--filter", help="metadata filter as JSON, applied to every query")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N judged queries")
    p.add_argument("--run-out", help="write the run: .json -> {qid: {docid: score}}, otherwise a TREC run file")
    p.add_argument("--metrics-out", help="write aggregate and per-query metrics as JSON")
    p.add_argument("--per-stage", action="store_true",
                   help="also evaluate each gather stage alone (and the fusion before a re-rank)")
    p.add_argument("--plot", help="PNG: bar chart of the metrics per stage")
    p.add_argument("--latency-plot", help="PNG: recall against p50 latency, one point per stage")
    p.add_argument("--ignore-identical-ids", action="store_true",
                   help="drop a result whose id equals its query id (BEIR's default for ArguAna/Quora)")
    p.add_argument("--dsn", help=dsn_help)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_eval)


#: errors the commands report as one line (exit status 1) instead of a traceback
def expected_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    errs: list[type[BaseException]] = [CommandError, ev.FormatError, FileNotFoundError, ValueError, psycopg.Error]
    return tuple(errs)
