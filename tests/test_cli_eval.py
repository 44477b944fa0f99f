"""``pgsieve ingest / search / eval / bench`` run in-process (``pgsieve.cli.main``) against the test server.

The data is a real BEIR folder: man pages exported by ``pgsieve.eval.to_beir`` (known-item queries, qrels).
"""

from __future__ import annotations

import json
from pathlib import Path

import ir_measures
import pytest

from pgsieve import cli, corpus, eval as ev

PAGES = 6


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ev.to_beir(tmp_path_factory.mktemp("beir") / "man", corpus.load_manpages(max_pages=PAGES))


@pytest.fixture(scope="module")
def ingested(db_url: str, beir: Path) -> str:
    """The man-page BEIR corpus in collection ``man`` (BM25 + MiniLM dense), ingested through the CLI."""
    rc = cli.main(["ingest", str(beir), "--collection", "man", "--preset", "minilm-hybrid", "--dsn", db_url,
                   "--no-progress"])
    assert rc == 0
    return db_url


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_ingest_reports_and_refuses_new_fields_on_existing(ingested: str, beir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    with psycopg.connect(ingested) as conn:
        n = conn.execute("SELECT count(*) FROM man").fetchone()[0]
    assert n == ev.count_documents(beir)
    rc, _, err = _run(capsys, "ingest", str(beir), "--collection", "man", "--preset", "bm25", "--dsn", ingested)
    assert rc == 1 and "exists" in err


def test_search_json_and_stages(ingested: str, beir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = ev.load_beir(beir)
    qid, text = next(iter(ds.queries.items()))
    rc, out, err = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--k", "5", "--json", text)
    assert rc == 0, err
    hits = json.loads(out)
    assert 1 <= len(hits) <= 5
    assert all(h["id"] in {d["id"] for d in ev.iter_documents(beir)} for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert set().union(*(h["stages"] for h in hits)) >= {"bm25", "dense"}
    # the known item is found: one of the page's passages in the top 5
    assert any(h["id"] in ds.qrels[qid] for h in hits)

    rc, out, _ = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--pipeline", "bm25", "--json",
                      text)
    assert rc == 0
    assert all(set(h["stages"]) <= {"bm25"} for h in json.loads(out))

    pipeline = json.dumps({"gather": [{"field": "dense", "k": 20}]})
    rc, out, _ = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--pipeline", pipeline, "--json",
                      text)
    assert rc == 0 and all(set(h["stages"]) <= {"dense"} for h in json.loads(out))

    page = json.loads(next(iter((beir / "corpus.jsonl").open())))["metadata"]["page"]
    rc, out, _ = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--json", "--filter",
                      json.dumps({"page": page}), "--k", "20", text)
    got = json.loads(out)
    assert rc == 0 and got and all(h["metadata"]["page"] == page for h in got)

    rc, out, _ = _run(capsys, "search", "--collection", "man", "--dsn", ingested, text)  # the table
    assert rc == 0 and out.splitlines()[0].split()[:3] == ["#", "id", "score"]
    rc, out, _ = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--explain", text)
    assert rc == 0 and "SELECT" in out.upper()


def test_search_errors(ingested: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "search", "--collection", "nope", "--dsn", ingested, "q")
    assert rc == 1 and "no collection 'nope'" in err
    rc, _, err = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--pipeline", "colbert", "q")
    assert rc == 1 and "--pipeline 'colbert'" in err
    rc, _, err = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--pipeline", '{"gather": ',
                      "q")
    assert rc == 1 and "--pipeline: not JSON" in err
    rc, _, err = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--pipeline", '{"gather": []}',
                      "q")
    assert rc == 1 and "gather" in err
    rc, _, err = _run(capsys, "search", "--collection", "man", "--dsn", ingested, "--filter", "[1]", "q")
    assert rc == 1 and "--filter: expected a JSON object" in err
    with pytest.raises(SystemExit) as exc:  # usage error: argparse's exit status 2
        cli.main(["search", "q"])
    assert exc.value.code == 2


def test_eval_matches_ir_measures_per_stage_and_plots(ingested: str, beir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_path, metrics_path, png, lat_png = (tmp_path / "run.json", tmp_path / "metrics.json",
                                            tmp_path / "stages.png", tmp_path / "latency.png")
    rc, out, err = _run(capsys, "eval", "--collection", "man", "--beir", str(beir), "--dsn", ingested,
                        "--run-out", str(run_path), "--metrics-out", str(metrics_path), "--per-stage",
                        "--plot", str(png), "--latency-plot", str(lat_png), "--no-progress")
    assert rc == 0, err
    ds = ev.load_beir(beir)
    run = json.loads(run_path.read_text())
    assert set(run) == set(ds.qrels)
    assert all(isinstance(s, float) for docs in run.values() for s in docs.values())
    doc = json.loads(metrics_path.read_text())
    assert list(doc["results"]) == ["bm25", "dense", "rrf"]
    fused = doc["results"]["rrf"]["aggregate"]
    direct = ir_measures.calc_aggregate([ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.R @ 100],
                                        ds.qrels, run)
    assert fused == pytest.approx({str(m): v for m, v in direct.items()}, abs=1e-12)
    assert fused["RR@10"] > 0.3  # known-item queries on a handful of pages: the page is found near the top
    for label in ("bm25", "dense"):
        assert set(doc["results"][label]["aggregate"]) == {"nDCG@10", "RR@10", "R@100"}
        assert doc["results"][label]["pipeline"]["gather"][0]["field"] == label
    # the printed table has one row per stage with the run's values
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in
            (["bm25"], ["dense"], ["rrf"])}
    assert float(rows["rrf"][0]) == pytest.approx(fused["nDCG@10"], abs=6e-5)
    for p in (png, lat_png):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_eval_trec_run_and_metrics_option(ingested: str, beir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    trec = tmp_path / "bm25.trec"
    rc, out, err = _run(capsys, "eval", "--collection", "man", "--beir", str(beir), "--dsn", ingested,
                        "--pipeline", "bm25", "--metrics", "nDCG@10,P@5,MRR@10", "--run-out", str(trec),
                        "--limit", "3", "--no-progress")
    assert rc == 0, err
    run = ev.read_run(trec)
    assert len(run) == 3 and all(len(d) <= 10 for d in run.values())  # k = deepest cutoff (10)
    header = next(line for line in out.splitlines() if line.startswith("run"))
    assert header.split()[1:4] == ["nDCG@10", "P@5", "RR@10"]
    qrels = ev.load_beir(beir).qrels
    want = ev.evaluate({q: qrels[q] for q in run}, run, ["P@5"]).aggregate["P@5"]
    value = next(line for line in out.splitlines() if line.startswith("pipeline")).split()[2]
    assert float(value) == pytest.approx(want, abs=6e-5)
    rc, _, err = _run(capsys, "eval", "--collection", "man", "--beir", str(beir), "--dsn", ingested,
                      "--metrics", "nDGC@10")
    assert rc == 1 and "unknown metric" in err
    rc, _, err = _run(capsys, "eval", "--collection", "man", "--beir", str(beir), "--dsn", ingested,
                      "--split", "dev")
    assert rc == 1 and "split 'dev'" in err


def test_ingest_jsonl_bm25_only(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [
        {"id": "pg", "text": "PostgreSQL is a relational database server", "metadata": {"kind": "db"}},
        {"id": "py", "text": "Python is a programming language", "metadata": {"kind": "lang"}},
        {"id": "rs", "text": "Rust is a systems programming language", "metadata": {"kind": "lang"}},
    ]) + "\n")
    rc, out, err = _run(capsys, "ingest", str(docs), "--collection", "notes", "--preset", "bm25", "--dsn", db_url,
                        "--no-progress")
    assert rc == 0, err
    assert "added 3 documents" in out
    rc, out, _ = _run(capsys, "search", "--collection", "notes", "--dsn", db_url, "--json", "relational database")
    hits = json.loads(out)
    assert rc == 0 and hits[0]["id"] == "pg" and hits[0]["metadata"] == {"kind": "db"}
    rc, out, _ = _run(capsys, "search", "--collection", "notes", "--dsn", db_url, "--json", "--filter",
                      '{"kind": "lang"}', "programming language")
    assert {h["id"] for h in json.loads(out)} == {"py", "rs"}
    # the same through pgvector alone (managed mode): same ranking
    rc, out, err = _run(capsys, "ingest", str(docs), "--collection", "notes_managed", "--preset", "bm25", "--mode",
                        "managed", "--dsn", db_url, "--no-progress")
    assert rc == 0 and "managed mode" in out, err
    rc, out, _ = _run(capsys, "search", "--collection", "notes_managed", "--dsn", db_url, "--json", "--k", "3",
                      "programming language")
    managed = [h["id"] for h in json.loads(out)]
    rc, out, _ = _run(capsys, "search", "--collection", "notes", "--dsn", db_url, "--json", "--k", "3",
                      "programming language")
    assert managed == [h["id"] for h in json.loads(out)] and set(managed[:2]) == {"py", "rs"}
    # a corpus larger than one chunk goes in through several add() calls (one transaction each)
    from pgsieve import commands

    monkeypatch.setattr(commands, "INGEST_CHUNK", 2)
    rc, out, err = _run(capsys, "ingest", str(docs), "--collection", "notes_chunked", "--preset", "bm25", "--dsn",
                        db_url, "--no-progress")
    assert rc == 0 and "added 3 documents" in out, err
    rc, out, _ = _run(capsys, "search", "--collection", "notes_chunked", "--dsn", db_url, "--json", "--k", "3",
                      "relational database")
    assert json.loads(out)[0]["id"] == "pg" and len(json.loads(out)) >= 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    rc, _, err = _run(capsys, "ingest", str(bad), "--collection", "notes2", "--preset", "bm25", "--dsn", db_url)
    assert rc == 1 and "bad.jsonl:1" in err


def test_bench_still_delegates(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--help"]) == 0
    assert cli.main(["bench", "--suite", "no-such-suite"]) == 2  # bench/run.py's own argparse error


def test_ingest_with_worker_pool(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--workers 2: the dense field is encoded by an EncoderPool of two worker processes, same vectors."""
    import numpy as np
    import psycopg

    from pgsieve.encoders import DenseEncoder

    texts = {"a": "create a new directory", "b": "allocate dynamic memory", "c": "send a signal to a process"}
    docs = tmp_path / "w.jsonl"
    docs.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    rc, out, err = _run(capsys, "ingest", str(docs), "--collection", "pooled", "--preset", "minilm",
                        "--workers", "2", "--batch-size", "1", "--dsn", db_url, "--no-progress")
    assert rc == 0, err
    assert "added 3 documents" in out
    with psycopg.connect(db_url) as conn:
        rows = dict(conn.execute("SELECT id, dense::text FROM pooled").fetchall())
    want = DenseEncoder().encode_documents(list(texts.values()))
    for i, k in enumerate(texts):
        got = np.array(json.loads(rows[k]), dtype=np.float32)
        assert np.allclose(got, want[i], atol=1e-5)
    rc, out, _ = _run(capsys, "search", "--collection", "pooled", "--dsn", db_url, "--json", "--k", "1", "mkdir")
    assert rc == 0 and json.loads(out)[0]["id"] == "a"


def test_stage_pipelines_labels() -> None:
    from pgsieve.commands import stage_pipelines
    from pgsieve.pipeline import Pipeline, gather, rerank_maxsim, rrf

    full = Pipeline(gather("bm25", 50), gather("dense", 200), rrf(60), rerank_maxsim("colbert", 100))
    stages = stage_pipelines(full, k=100)
    assert list(stages) == ["bm25", "dense", "rrf", "rrf+maxsim"]
    assert stages["bm25"].to_dict() == {"gather": [{"field": "bm25", "k": 100}]}  # at least k rows
    assert stages["dense"].to_dict() == {"gather": [{"field": "dense", "k": 200}]}
    assert stages["rrf"].rerank is None and stages["rrf"].fusion == full.fusion
    assert stages["rrf+maxsim"] is full
    single = Pipeline(gather("bm25", 100))
    assert stage_pipelines(single, 10) == {"bm25": single}
    assert list(stage_pipelines(Pipeline(gather("bm25"), rerank_maxsim("colbert")), 10)) == ["bm25", "maxsim"]


def test_parse_fields_errors() -> None:
    from pgsieve.commands import CommandError, parse_fields

    for spec, msg in (("", "empty"), ("bm25", "NAME:KIND"), ("x:nope", "NAME:KIND"),
                      ("s:splade", "local model folder"), ("b:binary", "dense field it quantizes")):
        with pytest.raises(CommandError, match=msg):
            parse_fields(spec)


def test_ingest_binary_field_over_dense(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--fields with a binary field quantizing the dense one; searching that field alone works."""
    docs = tmp_path / "b.jsonl"
    docs.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in
                            {"a": "create a new directory", "b": "allocate dynamic memory",
                             "c": "send a signal to a process"}.items()))
    rc, out, err = _run(capsys, "ingest", str(docs), "--collection", "bin", "--fields",
                        "dense:dense,bits:binary=dense", "--dsn", db_url, "--no-progress")
    assert rc == 0, err
    rc, out, err = _run(capsys, "search", "--collection", "bin", "--dsn", db_url, "--pipeline", "bits", "--json",
                        "--k", "3", "kill a process with a signal")
    assert rc == 0, err
    hits = json.loads(out)
    assert hits[0]["id"] == "c" and {h["id"] for h in hits} == {"a", "b", "c"}
    assert all(set(h["stages"]) <= {"bits"} for h in hits)
