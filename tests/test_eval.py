"""pgsieve.eval (BEIR / JSONL loading, run I/O, ir-measures metrics) and pgsieve.plots, without a database."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ir_measures
import pytest

from pgsieve import corpus, eval as ev, plots

LOG2_3 = math.log2(3)

#: hand-made judgments: q1 two relevant docs, q2 one (graded 2), q3 judged but never retrieved,
#: q4 graded relevance 2 and 1; "qx" is in the run but not judged (ignored)
QRELS = {
    "q1": {"d1": 1, "d2": 1, "d9": 0},
    "q2": {"d5": 2},
    "q3": {"d7": 1},
    "q4": {"a": 2, "b": 1},
}
RUN = {
    "q1": {"d3": 0.9, "d1": 0.8, "d4": 0.7},  # first relevant at rank 2; d2 never found
    "q2": {"d5": 3.0, "d6": 1.0},  # relevant first
    "q4": {"b": 0.9, "a": 0.5},  # the less relevant one first
    "qx": {"z": 1.0},
}
# by hand: trec_eval's nDCG uses gain = relevance, discount log2(rank + 1)
HAND = {
    "q1": {"nDCG@10": (1 / LOG2_3) / (1 + 1 / LOG2_3), "RR@10": 0.5, "R@100": 0.5},
    "q2": {"nDCG@10": 1.0, "RR@10": 1.0, "R@100": 1.0},
    "q3": {"nDCG@10": 0.0, "RR@10": 0.0, "R@100": 0.0},
    "q4": {"nDCG@10": (1 + 2 / LOG2_3) / (2 + 1 / LOG2_3), "RR@10": 1.0, "R@100": 1.0},
}


def test_metrics_match_hand_computed_values() -> None:
    res = ev.evaluate(QRELS, RUN)
    assert res.metrics == ["nDCG@10", "RR@10", "R@100"]
    assert res.n_queries == 4 and res.n_empty == 1
    assert set(res.per_query) == set(HAND)  # only judged queries; qx is not scored
    for qid, vals in HAND.items():
        for name, want in vals.items():
            assert res.per_query[qid][name] == pytest.approx(want, abs=1e-9), (qid, name)
    for name in ev.DEFAULT_METRICS:
        assert res.aggregate[name] == pytest.approx(sum(v[name] for v in HAND.values()) / 4, abs=1e-9)
    # identical to calling ir-measures directly
    direct = ir_measures.calc_aggregate([ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.R @ 100],
                                        QRELS, RUN)
    assert {str(k): v for k, v in direct.items()} == pytest.approx(res.aggregate)


def test_metric_names() -> None:
    assert [str(m) for m in ev.parse_metrics(["MRR@10", "P@5", "AP"])] == ["RR@10", "P@5", "AP"]
    assert ev.max_cutoff(ev.parse_metrics(ev.DEFAULT_METRICS)) == 100
    assert ev.max_cutoff(ev.parse_metrics(["AP"])) == 1000  # no cutoff: the trec_eval depth
    with pytest.raises(ValueError, match="unknown metric"):
        ev.parse_metrics(["nDGC@10"])
    res = ev.evaluate(QRELS, RUN, ["P@2"])
    assert res.per_query["q1"]["P@2"] == 0.5 and res.per_query["q4"]["P@2"] == 1.0


def test_ignore_identical_ids() -> None:
    qrels = {"q1": {"d1": 1}}
    run = {"q1": {"q1": 2.0, "d1": 1.0}}
    assert ev.evaluate(qrels, run, ["RR@10"]).aggregate["RR@10"] == 0.5
    assert ev.evaluate(qrels, run, ["RR@10"], ignore_identical_ids=True).aggregate["RR@10"] == 1.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="qrels are empty"):
        ev.evaluate({}, RUN)
    with pytest.raises(ValueError, match="non-finite"):
        ev.evaluate(QRELS, {"q1": {"d1": float("nan")}})
    # no result for any judged query: every value 0, not an error
    assert ev.evaluate(QRELS, {}).aggregate == {"nDCG@10": 0.0, "RR@10": 0.0, "R@100": 0.0}


def test_run_io_json_and_trec(tmp_path: Path) -> None:
    run = {"q1": {"d3": 0.9, "d1": 0.8, "d4": 0.8}, "q2": {"d5": 3.0}}
    j = ev.write_run(run, tmp_path / "run.json")
    assert json.loads(j.read_text()) == run
    assert ev.read_run(j) == run
    t = ev.write_run(run, tmp_path / "run.trec", tag="mine")
    lines = t.read_text().splitlines()
    # ranks follow the score, ties by docid descending (trec_eval's order)
    assert lines[:3] == ["q1 Q0 d3 1 0.9 mine", "q1 Q0 d4 2 0.8 mine", "q1 Q0 d1 3 0.8 mine"]
    assert ev.read_run(t) == run
    # the TREC file reads back through ir-measures' own reader too
    got = {}
    for sd in ir_measures.read_trec_run(str(t)):
        got.setdefault(sd.query_id, {})[sd.doc_id] = sd.score
    assert got == run
    with pytest.raises(ValueError, match="whitespace"):
        ev.write_run({"q 1": {"d": 1.0}}, tmp_path / "bad.trec")
    (tmp_path / "broken.trec").write_text("q1 Q0 d1 1\n")
    with pytest.raises(ev.FormatError, match="broken.trec:1"):
        ev.read_run(tmp_path / "broken.trec")


def test_to_run_from_hits() -> None:
    class Hit:
        def __init__(self, id: str, score: float) -> None:
            self.id, self.score = id, score

    assert ev.to_run({"q": [Hit("a", 2.0), Hit("b", 1)], "r": [("c", 0.5)]}) == \
        {"q": {"a": 2.0, "b": 1.0}, "r": {"c": 0.5}}


def test_manpage_beir_export_round_trip(tmp_path: Path) -> None:
    passages = corpus.load_manpages(max_pages=6)
    folder = ev.to_beir(tmp_path / "man", passages)
    assert ev.is_beir_folder(folder)
    ds = ev.load_beir(folder)
    queries = corpus.known_item_queries(passages)
    assert ds.queries == {q.qid: q.text for q in queries}
    assert ds.qrels == corpus.qrels(queries)
    assert ds.judged_queries == ds.queries
    docs = list(ev.iter_documents(folder))
    kept = [p for p in passages if p.section != "NAME"]  # a NAME passage is its page's query word for word
    assert len(kept) < len(passages)
    assert [d["id"] for d in docs] == [p.pid for p in kept]
    assert ev.count_documents(folder) == len(kept)
    first = docs[0]
    assert first["text"] == f"{kept[0].page}\n{kept[0].text}"
    assert first["metadata"] == {"page": kept[0].page, "section": kept[0].section, "title": kept[0].page}
    # every judged document is in the corpus
    assert set().union(*ds.qrels.values()) <= {d["id"] for d in docs}
    full = ev.to_beir(tmp_path / "full", passages, keep_name_passages=True)
    assert ev.count_documents(full) == len(passages)
    # qrels file is a real BEIR TSV
    header = (folder / "qrels" / "test.tsv").read_text().splitlines()[0]
    assert header == "query-id\tcorpus-id\tscore"
    with pytest.raises(ev.FormatError, match="split 'dev'"):
        ev.load_beir(folder, split="dev")


def test_jsonl_docs_and_format_errors(tmp_path: Path) -> None:
    f = tmp_path / "docs.jsonl"
    f.write_text('{"id": "a", "text": "alpha", "metadata": {"lang": "en"}}\n\n{"id": 7, "text": "beta"}\n')
    assert list(ev.iter_documents(f)) == [{"id": "a", "text": "alpha", "metadata": {"lang": "en"}},
                                          {"id": "7", "text": "beta", "metadata": {}}]
    f.write_text('{"id": "a"}\n')
    with pytest.raises(ev.FormatError, match=r"docs.jsonl:1: .*text"):
        list(ev.iter_documents(f))
    f.write_text('{"id": "a", "text": "x"}\n[1, 2]\n')
    with pytest.raises(ev.FormatError, match=r"docs.jsonl:2: expected a JSON object"):
        list(ev.iter_documents(f))
    with pytest.raises(ev.FormatError, match="not a BEIR folder|without corpus.jsonl"):
        list(ev.iter_documents(tmp_path))
    with pytest.raises(FileNotFoundError):
        ev.iter_documents(tmp_path / "missing.jsonl")
    beir = tmp_path / "b"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text('{"title": "t", "text": "x"}\n')
    with pytest.raises(ev.FormatError, match='needs an "_id"'):
        list(ev.iter_documents(beir))
    (beir / "qrels").mkdir()
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (beir / "qrels" / "test.tsv").write_text("qid\tdocid\trel\nq1\td1\t1\n")
    with pytest.raises(ev.FormatError, match="header"):
        ev.load_beir(beir)
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td1\t1\n")
    with pytest.raises(ev.FormatError, match="no text in queries.jsonl"):
        ev.load_beir(beir)


def test_metrics_table() -> None:
    table = ev.metrics_table({"bm25": {"nDCG@10": 0.5, "RR@10": 0.25}, "hybrid": {"nDCG@10": 0.75}},
                             ["nDCG@10", "RR@10"], label="stage")
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "nDCG@10", "RR@10"]
    assert lines[2].split() == ["bm25", "0.5000", "0.2500"]
    assert lines[3].split() == ["hybrid", "0.7500", "nan"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_stage_bars_png(tmp_path: Path) -> None:
    png = plots.stage_bars({"bm25": {"nDCG@10": 0.41, "R@100": 0.7}, "dense": {"nDCG@10": 0.35, "R@100": 0.8},
                            "rrf": {"nDCG@10": 0.47, "R@100": 0.86}}, tmp_path / "sub" / "stages.png", "per stage")
    w, h = _png_size(png)
    assert w > 400 and h > 300 and png.stat().st_size > 10_000
    # the bars are drawn: the image is not one flat colour
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    assert img.reshape(-1, img.shape[-1]).std(axis=0).max() > 0.05
    with pytest.raises(ValueError, match="no stages"):
        plots.stage_bars({}, tmp_path / "x.png", "empty")


def test_recall_latency_png(tmp_path: Path) -> None:
    series = [plots.Series("a", [0.9, 0.95, 0.99], [1.0, 2.0, 5.0], point_labels=["50", "100", "200"]),
              plots.Series("b", [0.97], [3.0], marker="s")]
    png = plots.recall_latency(series, tmp_path / "rl.png", "recall vs latency", notes=[("default", 0.95, 2.0)])
    assert _png_size(png)[0] > 400 and png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="empty"):
        plots.recall_latency([plots.Series("a", [], [])], tmp_path / "no.png", "t")
    with pytest.raises(ValueError, match="recall values"):
        plots.Series("bad", [0.1, 0.2], [1.0])
