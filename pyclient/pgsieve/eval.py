"""Retrieval evaluation in the formats IR people already use.

* **Documents**: plain JSONL (one ``{"id", "text", "metadata"}`` object per line) or a BEIR folder
  (``corpus.jsonl`` lines ``{"_id", "title", "text", "metadata"?}``, ``queries.jsonl`` lines ``{"_id", "text"}``,
  ``qrels/{split}.tsv`` with the header ``query-id corpus-id score``).  :func:`iter_documents` reads either and
  yields the ``{"id", "text", "metadata"}`` dicts that ``Collection.add`` takes; a BEIR title is kept in
  ``metadata["title"]`` and put in front of the text (the way BEIR's dense models encode ``title + text``).
* **Runs**: ``{qid: {docid: score}}`` (ids are strings, larger scores are better), the currency of ranx,
  ir-measures and pytrec_eval; written as that JSON object or as a TREC run file (``qid Q0 docid rank score tag``).
* **Metrics**: computed by `ir-measures <https://ir-measur.es>`_ (its pytrec_eval backend), never by hand here.
  The defaults are nDCG@10, RR@10 (MRR@10) and R@100.  A judged query with no results counts as 0, like
  ``trec_eval -c``.
* :func:`to_beir` writes the man-page corpus (:mod:`pgsieve.corpus`) and its known-item queries as a real BEIR
  folder, so tests and demos have one without a download.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

__all__ = [
    "Qrels", "Run", "Doc", "DEFAULT_METRICS", "BeirDataset", "Evaluation",
    "json_object", "is_beir_folder", "load_beir", "read_queries", "read_qrels", "write_qrels", "iter_beir_corpus",
    "iter_jsonl_docs", "iter_documents", "count_documents", "read_run", "write_run", "to_run",
    "parse_metrics", "max_cutoff", "evaluate", "metrics_table", "to_beir",
]

PathLike = Union[str, Path]
Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]
Doc = dict[str, Any]  # {"id": str, "text": str, "metadata": dict}

#: what ``pgsieve eval`` reports unless told otherwise (BEIR's headline metrics)
DEFAULT_METRICS: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100")


class FormatError(ValueError):
    """A file is not in the format it should be in; the message names the file and line."""


# ---------------------------------------------------------------------------
# JSONL helpers
# ---------------------------------------------------------------------------

def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a clear error for anything but a JSON object."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, json_object(line, f"{path}:{lineno}")


def json_object(text: str, where: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object; :class:`FormatError` naming ``where`` for bad JSON or another type."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _str_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise FormatError(f"{where}: id must be a non-empty string (or integer), got {value!r}")
    return str(value)


def _text(value: Any, where: str, what: str = "text") -> str:
    if not isinstance(value, str):
        raise FormatError(f"{where}: {what} must be a string, got {type(value).__name__}")
    return value


def _metadata(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"{where}: metadata must be a JSON object, got {type(value).__name__}")
    return dict(value)


# ---------------------------------------------------------------------------
# documents
# ---------------------------------------------------------------------------

def is_beir_folder(path: PathLike) -> bool:
    """True for a directory holding a BEIR ``corpus.jsonl``."""
    p = Path(path)
    return p.is_dir() and (p / "corpus.jsonl").is_file()


def iter_beir_corpus(folder: PathLike) -> Iterator[Doc]:
    """The documents of a BEIR folder as ``{"id", "text", "metadata"}`` (title in front of the text)."""
    path = Path(folder) / "corpus.jsonl"
    for lineno, obj in _jsonl(path):
        where = f"{path}:{lineno}"
        if "_id" not in obj:
            raise FormatError(f"{where}: a BEIR corpus line needs an \"_id\"")
        text = _text(obj.get("text", ""), where)
        title = _text(obj.get("title") or "", where, "title")
        meta = _metadata(obj.get("metadata"), where)
        if title:
            meta.setdefault("title", title)
        yield {"id": _str_id(obj["_id"], where), "text": f"{title}\n{text}" if title else text, "metadata": meta}


def iter_jsonl_docs(path: PathLike) -> Iterator[Doc]:
    """Documents of a JSONL file: ``{"id", "text", "metadata"?}`` per line (a BEIR-style ``_id`` works too)."""
    p = Path(path)
    for lineno, obj in _jsonl(p):
        where = f"{p}:{lineno}"
        key = "id" if "id" in obj else "_id" if "_id" in obj else None
        if key is None:
            raise FormatError(f"{where}: a document needs an \"id\"")
        if "text" not in obj:
            raise FormatError(f"{where}: a document needs a \"text\"")
        meta = _metadata(obj.get("metadata"), where)
        text = _text(obj["text"], where)
        title = obj.get("title")
        if title:
            meta.setdefault("title", _text(title, where, "title"))
            text = f"{title}\n{text}"
        yield {"id": _str_id(obj[key], where), "text": text, "metadata": meta}


def iter_documents(path: PathLike) -> Iterator[Doc]:
    """Documents of a BEIR folder or a JSONL file, whichever ``path`` is."""
    p = Path(path)
    if p.is_dir():
        if not is_beir_folder(p):
            raise FormatError(f"{p} is a directory without corpus.jsonl (not a BEIR folder)")
        return iter_beir_corpus(p)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file or directory")
    return iter_jsonl_docs(p)


def count_documents(path: PathLike) -> int:
    """Number of non-blank lines of the corpus (for a progress bar's total), without parsing them."""
    p = Path(path)
    f = p / "corpus.jsonl" if p.is_dir() else p
    with f.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


# ---------------------------------------------------------------------------
# BEIR queries and qrels
# ---------------------------------------------------------------------------

def read_queries(path: PathLike) -> dict[str, str]:
    """``{qid: text}`` from a BEIR ``queries.jsonl``."""
    p = Path(path)
    out: dict[str, str] = {}
    for lineno, obj in _jsonl(p):
        where = f"{p}:{lineno}"
        if "_id" not in obj or "text" not in obj:
            raise FormatError(f"{where}: a query line needs \"_id\" and \"text\"")
        out[_str_id(obj["_id"], where)] = _text(obj["text"], where)
    return out


def read_qrels(path: PathLike) -> Qrels:
    """``{qid: {docid: relevance}}`` from a BEIR qrels TSV (header ``query-id corpus-id score``)."""
    p = Path(path)
    qrels: Qrels = {}
    with p.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise FormatError(f"{p}:1: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header!r}")
        for lineno, row in enumerate(rows, 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise FormatError(f"{p}:{lineno}: expected 3 tab-separated columns, got {row!r}")
            try:
                rel = int(float(row[2]))
            except ValueError:
                raise FormatError(f"{p}:{lineno}: score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0], {})[row[1]] = rel
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: PathLike) -> Path:
    """Write a BEIR qrels TSV."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["query-id", "corpus-id", "score"])
        for qid, docs in qrels.items():
            for docid, rel in docs.items():
                w.writerow([qid, docid, int(rel)])
    return p


@dataclass
class BeirDataset:
    """Queries and judgments of one split of a BEIR folder (the corpus is streamed by :func:`iter_beir_corpus`)."""

    path: Path
    split: str
    queries: dict[str, str]
    qrels: Qrels

    @property
    def judged_queries(self) -> dict[str, str]:
        """The queries that have judgments in this split, in queries.jsonl order."""
        return {qid: text for qid, text in self.queries.items() if qid in self.qrels}


def load_beir(folder: PathLike, split: str = "test") -> BeirDataset:
    """Queries and qrels of a BEIR folder's ``split``; every judged query must have a text."""
    p = Path(folder)
    if not is_beir_folder(p):
        raise FormatError(f"{p} is not a BEIR folder (no corpus.jsonl)")
    qrels_path = p / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(x.stem for x in (p / "qrels").glob("*.tsv")) if (p / "qrels").is_dir() else []
        raise FormatError(f"{p}: no qrels for split {split!r} ({qrels_path} missing; splits present: {have})")
    queries = read_queries(p / "queries.jsonl")
    qrels = read_qrels(qrels_path)
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise FormatError(f"{qrels_path}: {len(missing)} judged queries have no text in queries.jsonl, "
                          f"e.g. {missing[:3]}")
    return BeirDataset(p, split, queries, qrels)


# ---------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------

def to_run(results: Mapping[str, Iterable[Any]]) -> Run:
    """``{qid: {docid: score}}`` from ``{qid: hits}``; a hit is an object with ``id``/``score`` or a pair."""
    run: Run = {}
    for qid, hits in results.items():
        ranked: dict[str, float] = {}
        for h in hits:
            docid, score = (h.id, h.score) if hasattr(h, "id") else h
            ranked[str(docid)] = float(score)
        run[str(qid)] = ranked
    return run


def _ranked(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """Docs by descending score; ties by descending docid (trec_eval's order), so rank numbers match it."""
    return sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def _run_format(path: Path, fmt: Optional[str]) -> str:
    if fmt is None:
        fmt = "json" if path.suffix.lower() == ".json" else "trec"
    if fmt not in ("json", "trec"):
        raise ValueError(f"run format must be 'json' or 'trec', got {fmt!r}")
    return fmt


def write_run(run: Mapping[str, Mapping[str, float]], path: PathLike, fmt: Optional[str] = None,
              tag: str = "pgsieve") -> Path:
    """Write a run as JSON ``{qid: {docid: score}}`` (``.json``) or a TREC run file (anything else)."""
    p = Path(path)
    fmt = _run_format(p, fmt)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        p.write_text(json.dumps({q: dict(d) for q, d in run.items()}, indent=1) + "\n", encoding="utf-8")
        return p
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"a TREC run tag must be one non-empty word, got {tag!r}")
    with p.open("w", encoding="utf-8") as f:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(_ranked(docs), 1):
                if any(c.isspace() for c in qid + docid):
                    raise ValueError(f"TREC run files cannot hold ids with whitespace: {qid!r} / {docid!r}")
                f.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")
    return p


def read_run(path: PathLike, fmt: Optional[str] = None) -> Run:
    """Read a run written by :func:`write_run` (or any TREC run / ``{qid: {docid: score}}`` JSON)."""
    p = Path(path)
    fmt = _run_format(p, fmt)
    if fmt == "json":
        obj = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(obj, dict) or not all(isinstance(v, dict) for v in obj.values()):
            raise FormatError(f"{p}: a JSON run is an object {{qid: {{docid: score}}}}")
        return {str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in obj.items()}
    run: Run = {}
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise FormatError(f"{p}:{lineno}: a TREC run line is 'qid Q0 docid rank score tag', got {line!r}")
            try:
                score = float(parts[4])
            except ValueError:
                raise FormatError(f"{p}:{lineno}: score {parts[4]!r} is not a number") from None
            run.setdefault(parts[0], {})[parts[2]] = score
    return run


# ---------------------------------------------------------------------------
# metrics (ir-measures)
# ---------------------------------------------------------------------------

def parse_metrics(names: Iterable[str]) -> list[Any]:
    """ir-measures measure objects for names like ``nDCG@10``, ``MRR@10`` (= ``RR@10``), ``R@100``, ``AP``."""
    import ir_measures

    out = []
    for name in names:
        try:
            out.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError, AttributeError) as exc:
            raise ValueError(f"unknown metric {name!r} (ir-measures syntax, e.g. nDCG@10, RR@10, R@100): "
                             f"{exc}") from None
    if not out:
        raise ValueError("no metrics given")
    return out


def max_cutoff(metrics: Iterable[Any], default: int = 1000) -> int:
    """The deepest rank any metric looks at (``R@100`` -> 100): how many results a run needs."""
    cutoffs = []
    for m in metrics:
        c = getattr(m, "params", {}).get("cutoff")
        if c is None:
            return default
        cutoffs.append(int(c))
    return max(cutoffs) if cutoffs else default


@dataclass
class Evaluation:
    """Metric values: ``aggregate[name]`` over the judged queries and ``per_query[qid][name]``."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    metrics: list[str]
    n_queries: int
    n_empty: int = 0  # judged queries the run has no results for (they count as 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"aggregate": self.aggregate, "per_query": self.per_query, "metrics": self.metrics,
                "n_queries": self.n_queries, "n_empty": self.n_empty, **self.extra}


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
             metrics: Sequence[Any] = DEFAULT_METRICS, *, ignore_identical_ids: bool = False) -> Evaluation:
    """Score ``run`` against ``qrels`` with ir-measures.

    ``metrics``: names (``"nDCG@10"``) or ir-measures measure objects.  Only judged queries are scored; a judged
    query missing from the run (or with no results) scores 0.  ``ignore_identical_ids`` drops a result whose id
    equals its query's id first (BEIR's ``EvaluateRetrieval`` does this by default, for corpora such as ArguAna
    or Quora where queries are also documents).
    """
    import ir_measures

    measures = [m if not isinstance(m, str) else parse_metrics([m])[0] for m in metrics]
    if not measures:
        raise ValueError("no metrics given")
    q = {str(qid): {str(d): int(r) for d, r in docs.items()} for qid, docs in qrels.items() if docs}
    if not q:
        raise ValueError("qrels are empty: nothing to evaluate")
    r: Run = {}
    for qid, docs in run.items():
        if str(qid) not in q:
            continue
        kept = {str(d): float(s) for d, s in docs.items() if not (ignore_identical_ids and str(d) == str(qid))}
        bad = [d for d, s in kept.items() if not math.isfinite(s)]
        if bad:
            raise ValueError(f"run has non-finite scores for query {qid!r}, e.g. document {bad[0]!r}")
        if kept:
            r[str(qid)] = kept
    names = [str(m) for m in measures]
    per_query: dict[str, dict[str, float]] = {qid: {n: 0.0 for n in names} for qid in q}
    aggregate = {n: 0.0 for n in names}
    if r:
        for metric in ir_measures.iter_calc(measures, q, r):
            per_query[metric.query_id][str(metric.measure)] = float(metric.value)
        aggregate.update({str(m): float(v) for m, v in ir_measures.calc_aggregate(measures, q, r).items()})
    return Evaluation(aggregate, per_query, names, len(q), sum(1 for qid in q if qid not in r))


def metrics_table(rows: Mapping[str, Mapping[str, float]], metrics: Sequence[str], label: str = "run",
                  digits: int = 4, formats: Optional[Mapping[str, str]] = None) -> str:
    """A plain-text table: one row per run (``rows[name][metric]``), one column per metric.

    Values print with ``digits`` decimals unless ``formats[column]`` gives a format spec (e.g. ``".1f"``).
    """
    fmts = {m: (formats or {}).get(m, f".{digits}f") for m in metrics}
    cells = {name: [format(float(vals.get(m, float("nan"))), fmts[m]) for m in metrics] for name, vals in rows.items()}
    width = max([len(label), *(len(k) for k in rows)])
    cols = [max([len(m), *(len(c[i]) for c in cells.values())]) for i, m in enumerate(metrics)]
    lines = [f"{label:<{width}}  " + "  ".join(f"{m:>{w}}" for m, w in zip(metrics, cols))]
    lines.append("-" * len(lines[0]))
    for name, row in cells.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(row, cols)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# the man-page corpus as a BEIR folder
# ---------------------------------------------------------------------------

def to_beir(folder: PathLike, passages: Optional[Sequence[Any]] = None, *, max_pages: Optional[int] = 50,
            split: str = "test", keep_name_passages: bool = False) -> Path:
    """Write man-page passages and their known-item queries as a BEIR folder; returns the folder.

    ``passages``: :class:`pgsieve.corpus.Passage` objects (default: ``load_manpages(max_pages)``).  Each page with
    a NAME description becomes a query (the description) judged relevant to the page's other passages (relevance
    1), in ``qrels/{split}.tsv``; each passage becomes a corpus line ``{"_id": pid, "title": page, "text",
    "metadata": {"page", "section"}}``.  The NAME passages themselves are left out of the corpus unless
    ``keep_name_passages``: each holds its page's query word for word yet is judged not relevant.
    """
    from .corpus import known_item_queries, load_manpages, qrels

    if passages is None:
        passages = load_manpages(max_pages=max_pages)
    queries = known_item_queries(passages)
    if not queries:
        raise ValueError("these passages give no known-item queries (no page has a NAME description)")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for p in passages:
            if p.section == "NAME" and not keep_name_passages:
                continue
            f.write(json.dumps({"_id": p.pid, "title": p.title, "text": p.text,
                                "metadata": {"page": p.page, "section": p.section}}, ensure_ascii=False) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps({"_id": q.qid, "text": q.text}, ensure_ascii=False) + "\n")
    write_qrels(qrels(queries), out / "qrels" / f"{split}.tsv")
    return out
