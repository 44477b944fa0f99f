"""Collections and pipelines, end to end against a real server, in both modes.

* ``pgsieve`` mode: a database with ``vector`` and ``pgsieve`` (the ``db`` fixture);
* ``managed`` mode: a second database on the same server with ``vector`` only (no pgsieve objects at all).

Every pipeline runs in both modes on a small man-page corpus (MiniLM dense vectors, BM25 over its vocabulary,
MiniLM token vectors as the multivector field, float32 so that MaxSim is exact in both modes): exact stages
agree exactly, approximate ones closely, and both agree with numpy ground truth.
"""

from __future__ import annotations

import os
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pgsieve import server  # noqa: E402
from pgsieve.collections import Collection, CollectionError, Field, ManagedModeWarning  # noqa: E402
from pgsieve.fields import FieldError  # noqa: E402
from pgsieve.pipeline import (Pipeline, PipelineError, gather, rerank_exact, rerank_maxsim, rrf,  # noqa: E402
                              weighted)

N = 80
QUERIES = ("open and possibly create a file", "send a signal to a process", "change the current working directory")


@pytest.fixture(scope="module")
def managed_url(pg_server: str, pg_data_dir: Path):
    """A database with pgvector only: what a managed PostgreSQL offers."""
    name = f"test_managed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.url(pg_data_dir, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    yield url
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def mdb(managed_url: str):
    with psycopg.connect(managed_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def docs():
    from pgsieve.corpus import load_manpages
    from pgsieve.ingest import document_text

    ps = load_manpages(max_pages=30, sections=[2])[:N]
    if len(ps) < N:
        pytest.skip("man pages not installed (apt-get install -y manpages manpages-dev)")
    return [{"id": p.pid, "text": document_text(p), "metadata": {"page": p.pid.split("#")[0], "n": i}}
            for i, p in enumerate(ps)]


class Memo:
    """An encoder that remembers what it encoded (both modes ingest the same texts; CPU time is scarce here).

    It describes itself by the wrapped encoder's config, so ``Collection.open`` rebuilds the real encoder."""

    def __init__(self, enc) -> None:
        self.enc, self.dim, self._docs, self._queries = enc, enc.dim, {}, {}

    def pgsieve_config(self):
        from pgsieve.fields import encoder_config

        return encoder_config(self.enc)

    def _get(self, cache, fn, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            cache.update(zip(todo, fn(todo)))
        return [cache[t] for t in texts]

    def encode_documents(self, texts):
        return self._get(self._docs, self.enc.encode_documents, list(texts))

    def encode_queries(self, texts):
        return self._get(self._queries, self.enc.encode_queries, list(texts))


@pytest.fixture(scope="module")
def encoders():
    from pgsieve.encoders import DenseEncoder, LateInteractionEncoder

    return (Memo(DenseEncoder(batch_size=64, max_length=128)),
            Memo(LateInteractionEncoder(doc_maxlen=96, batch_size=32)))


def _fields(encoders):
    from pgsieve.encoders import BM25Encoder

    dense, li = encoders
    return [Field.dense("dense", encoder=dense), Field.sparse("bm25", encoder=BM25Encoder()),
            Field.binary("bin", source="dense"), Field.multivector("colbert", encoder=li, fmt="float32")]


@pytest.fixture(scope="module")
def colls(db, mdb, docs, encoders):
    """The same collection in both modes, filled with add()."""
    out = {}
    for mode, conn in (("pgsieve", db), ("managed", mdb)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            coll = Collection.create(conn, "docs", _fields(encoders), mode="auto")
        assert coll.mode == mode
        assert any(issubclass(x.category, ManagedModeWarning) for x in w) == (mode == "managed")
        assert coll.add(docs, batch_size=32, progress=False) == N
        out[mode] = coll
    return out


PIPELINES = {
    "bm25": Pipeline(gather("bm25", 20)),
    "dense": Pipeline(gather("dense", 20)),
    "binary": Pipeline(gather("bin", 20)),
    "colbert": Pipeline(gather("colbert", 20)),
    "hybrid": Pipeline(gather("bm25", 30), gather("dense", 30), rrf(60), rerank_maxsim("colbert", 30)),
    "hybrid3": Pipeline(gather("bm25", 30), gather("dense", 30), gather("bin", 30, name="b"), rrf(60)),
    "weighted_exact": Pipeline(gather("bm25", 30), gather("dense", 30), weighted({"bm25": 0.3, "dense": 0.7}),
                               rerank_exact("dense", 30)),
}


def _ids(hits):
    return [h.id for h in hits]


def _cos_top(docs, encoders, q, k):
    dense, _ = encoders
    m = np.stack(dense.encode_documents([d["text"] for d in docs]))
    s = m @ dense.encode_queries([q])[0]
    order = sorted(range(len(docs)), key=lambda i: (-s[i], docs[i]["id"]))
    return [docs[i]["id"] for i in order[:k]], s


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_pipeline_runs_in_both_modes_and_agrees(colls, name) -> None:
    p = PIPELINES[name]
    for q in QUERIES:
        got = {mode: c.search(q, p, k=10) for mode, c in colls.items()}
        a, b = got["pgsieve"], got["managed"]
        assert len(a) == len(b) == 10
        if name == "colbert":  # managed gathers through an approximate FDE/HNSW, then exact MaxSim
            assert len(set(_ids(a)) & set(_ids(b))) >= 8
            common = set(_ids(a)) & set(_ids(b))
            sa = {h.id: h.score for h in a}
            sb = {h.id: h.score for h in b}
            for i in common:
                assert sa[i] == pytest.approx(sb[i], rel=1e-5)
            continue
        # the other stages are exact at this size (sparse_block at defaults, binary_scan re-ranking every row,
        # HNSW with ef_search >= k over 80 rows), so both modes give the same ranking
        assert _ids(a) == _ids(b), (name, q)
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-4, atol=5e-4)  # halfvec
        for ha, hb in zip(a, b):
            assert set(ha.stages) == set(hb.stages)
            for s in ha.stages:
                assert ha.stages[s].rank == hb.stages[s].rank


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_prepared_generic_plan_and_cached_statement_give_the_same_hits(colls, name) -> None:
    """execute() prepares the statement, runs it on the generic plan (no filter) and renders its text once per
    Compiled.key: the rows equal a freshly planned, unprepared run of the freshly rendered statement, and the key
    names the text (equal for two queries of one pipeline, different across pipelines and filters)."""
    p = PIPELINES[name]
    for mode, c in colls.items():
        c1, c2 = (c.compile(q, p, k=10) for q in QUERIES[:2])
        assert c1.key is not None and c1.key == c2.key
        assert c1.statement.as_bytes(c.conn) == c2.statement.as_bytes(c.conn)
        cf = c.compile(QUERIES[0], p, k=10, filter={"lang": "en"})
        assert cf.filtered and cf.key != c1.key
        for other, op in PIPELINES.items():
            if other != name:
                assert c.compile(QUERIES[0], op, k=10).key != c1.key
        for q in QUERIES:
            comp = c.compile(q, p, k=10)
            for _ in range(3):  # the first executions prepare; later ones reuse the generic plan
                prepared = c.execute(comp)
            with c.conn.transaction(), c.conn.cursor() as cur:
                for k, v in comp.settings.items():
                    cur.execute(sql.SQL("SET LOCAL {} = {}").format(sql.SQL(k), sql.Literal(v)))
                cur.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                fresh = cur.execute(comp.statement, comp.params, prepare=False).fetchall()
            assert [r[0] for r in prepared] == [r[0] for r in fresh], (mode, name, q)
            np.testing.assert_allclose([r[1] for r in prepared], [r[1] for r in fresh], rtol=1e-12)


def test_maxsim_pruning_is_pgsieve_only_and_scores_exactly(colls) -> None:
    """rerank_maxsim(alpha=, beta=): maxsim_rerank's candidate pruning and early exit; the hits it keeps carry their
    exact MaxSim; managed mode refuses it (client and SQL function) instead of silently re-ranking exactly."""
    from psycopg.types.json import Jsonb

    pruned = Pipeline(gather("bm25", 30), gather("dense", 30), rrf(60), rerank_maxsim("colbert", 30, alpha=0.03, beta=3))
    exact = PIPELINES["hybrid"]
    pg = colls["pgsieve"]
    for q in QUERIES:
        a = {h.id: h.score for h in pg.search(q, exact, k=30)}
        got = pg.search(q, pruned, k=10)
        assert 1 <= len(got) <= 10 and all(h.score == pytest.approx(a[h.id], rel=1e-6) for h in got)
        rows = pg.conn.execute("SELECT id FROM pgsieve_catalog.search('docs', %s, %s, 10)",
                               (Jsonb(pg.query_json(q, pruned)), Jsonb(pruned.to_dict()))).fetchall()
        assert [r[0] for r in rows] == _ids(got)
    m = colls["managed"]
    with pytest.raises(PipelineError, match="need pgsieve mode"):
        m.search(QUERIES[0], pruned)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="need pgsieve mode"):
        m.conn.execute("SELECT * FROM pgsieve_catalog.search('docs', %s, %s)",
                       (Jsonb(m.query_json(QUERIES[0], exact)), Jsonb(pruned.to_dict())))


def test_dense_and_binary_gathers_equal_numpy_ground_truth(colls, docs, encoders) -> None:
    for q in QUERIES:
        want, s = _cos_top(docs, encoders, q, 10)
        for c in colls.values():
            for field in ("dense", "bin"):
                hits = c.search(q, Pipeline(gather(field, 10)), k=10)
                assert _ids(hits) == want
                by_id = {d["id"]: i for i, d in enumerate(docs)}
                np.testing.assert_allclose([h.score for h in hits], [s[by_id[h.id]] for h in hits], atol=2e-3)


def test_hybrid_hits_carry_stage_scores_and_rrf_is_recomputable(colls) -> None:
    p = Pipeline(gather("bm25", 30), gather("dense", 30), rrf(60), rerank_maxsim("colbert", 30))
    for c in colls.values():
        hits = c.search(QUERIES[0], p, k=10)
        assert [h.stages["maxsim"].rank for h in hits] == list(range(1, 11))
        assert all(h.score == pytest.approx(h.stages["maxsim"].score) for h in hits)
        assert hits == sorted(hits, key=lambda h: -h.score)
        for h in hits:
            assert h.text and h.metadata["page"] == h.id.split("#")[0]
            want = sum(1.0 / (60 + h.stages[s].rank) for s in ("bm25", "dense") if s in h.stages)
            assert h.stages["rrf"].score == pytest.approx(want)
            assert {"bm25", "dense"} & set(h.stages)
        # the maxsim score is the exact MaxSim of the stored tokens against the query tokens
        li = c.fields["colbert"].encoder
        qt = li.encode_queries([QUERIES[0]])[0]
        dt = li.encode_documents([hits[0].text])[0]
        assert hits[0].score == pytest.approx(float((qt @ dt.T).max(axis=1).sum()), rel=1e-4)


def test_default_pipeline_and_filter(colls, docs) -> None:
    for c in colls.values():
        p = Pipeline.default(c)
        assert [g.field for g in p.gathers] == ["bm25", "dense"] and p.fusion.method == "rrf" \
            and p.fusion.k == 60 and p.rerank.method == "maxsim" and p.rerank.field == "colbert"
        assert _ids(c.search(QUERIES[1], k=5)) == _ids(c.search(QUERIES[1], p, k=5))
        page = docs[5]["metadata"]["page"]
        hits = c.search(QUERIES[1], k=5, filter={"page": page})
        n_page = sum(d["metadata"]["page"] == page for d in docs)
        assert 1 <= len(hits) == min(5, n_page) and all(h.metadata["page"] == page for h in hits)
        assert c.search(QUERIES[1], k=5, filter={"page": "no such page"}) == []


def test_explain_shows_the_one_statement_with_parameters(colls) -> None:
    for mode, c in colls.items():
        text = c.explain(QUERIES[0], k=7)
        stmts = [s for s in text.split(";\n") if s.strip() and not s.lstrip().startswith(("SET LOCAL", "--"))]
        assert len(stmts) == 1 and stmts[0].lstrip().startswith("WITH ")
        assert "%(k)s = 7" in text and "%(q_0)s = sparsevec" in text
        if mode == "pgsieve":
            assert "maxsim_rerank(" in text and "SET LOCAL pgsieve.sparse_top_k" in text
        else:
            assert "unnest" in text and "pgsieve" not in text.replace('"docs"', "")
        # the statement is what search runs
        compiled = c.compile(QUERIES[0], k=7)
        assert compiled.statement.as_string(c.conn) in text


def test_pgsieve_mode_uses_the_extension_indexes(colls) -> None:
    c = colls["pgsieve"]
    ams = dict(c.conn.execute(
        "SELECT c.relname, am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = 'docs'::regclass").fetchall())
    assert sorted(ams.values()) == sorted(["btree", "gin", "hnsw", "sparse_block", "binary_scan", "multivec_fde"])
    m = colls["managed"]
    ams = m.conn.execute("SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                         "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = 'docs'::regclass").fetchall()
    assert {a for (a,) in ams} == {"btree", "gin", "hnsw"}
    assert m.conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgsieve'").fetchone()[0] == 0


def test_open_rebuilds_fields_and_encoders_from_the_catalog(colls) -> None:
    for mode, c in colls.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ManagedModeWarning)
            o = Collection.open(c.conn, "docs")
        assert o.mode == mode and list(o.fields) == list(c.fields)
        assert {n: (f.kind, f.dim, f.fmt, f.source) for n, f in o.fields.items()} == \
            {n: (f.kind, f.dim, f.fmt, f.source) for n, f in c.fields.items()}
        assert type(o.fields["bm25"].encoder).__name__ == "BM25Encoder"
        assert type(o.fields["dense"].encoder).__name__ == "DenseEncoder"
        assert type(o.fields["colbert"].encoder).__name__ == "LateInteractionEncoder"
        assert o.fields["bm25"].encoder.stats.N == N
        assert _ids(o.search(QUERIES[2], k=5)) == _ids(c.search(QUERIES[2], k=5))
        assert len(o) == N
    with pytest.raises(CollectionError, match="no collection"):
        Collection.open(colls["pgsieve"].conn, "nope")


def test_create_refuses_mode_pgsieve_without_the_extension_and_duplicates(mdb, db, encoders) -> None:
    with pytest.raises(CollectionError, match="pgsieve extension"):
        Collection.create(mdb, "x1", [Field.dense("d", dim=4)], mode="pgsieve")
    Collection.create(db, "dup", [Field.dense("d", dim=4)])
    with pytest.raises(CollectionError, match="already exists"):
        Collection.create(db, "dup", [Field.dense("d", dim=4)])


def test_managed_mode_reports_limitations(colls) -> None:
    lim = colls["managed"].limitations
    assert colls["pgsieve"].limitations == []
    assert any("1000 non-zeros" in x for x in lim) and any("MaxSim is computed in SQL" in x for x in lim)
    assert any(x.startswith("bin:") for x in lim)


def test_managed_sparse_rows_over_hnsw_limit_are_still_found(mdb, encoders) -> None:
    """pgvector's HNSW cannot index a sparsevec with more than 1,000 non-zeros: such rows are kept out of the
    partial index and scored by the second branch of the gather, so they are still found."""
    from pgsieve.encoders import BM25Encoder

    bm = BM25Encoder()
    words = [w for w, i in sorted(bm.tokenizer.vocab.items(), key=lambda x: x[1]) if w.isalpha() and len(w) > 3]
    big = " ".join(words[2000:3300])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ManagedModeWarning)
        c = Collection.create(mdb, "bigsparse", [Field.sparse("bm25", encoder=bm)])
    small = [{"id": f"s{i}", "text": f"small document number {i} about {words[3000 + i]}"} for i in range(20)]
    c.add(small + [{"id": "big", "text": big}], progress=False)
    nnz = dict(mdb.execute("SELECT id, bm25_nnz FROM bigsparse").fetchall())
    assert nnz["big"] > 1000 and max(v for k, v in nnz.items() if k != "big") < 1000
    hits = c.search(words[3001], Pipeline(gather("bm25", 5)), k=5)
    assert {"big", "s1"} <= set(_ids(hits))


# -- validation: before any SQL -----------------------------------------------------------------------------

@pytest.fixture()
def offline():
    """A collection on a closed connection: any SQL would fail, so every error below is raised before SQL."""
    conn = psycopg.Connection.__new__(psycopg.Connection)  # never connected
    fields = [Field.dense("dense", dim=4), Field.sparse("bm25", dim=50), Field.binary("bin", source="dense"),
              Field.multivector("mv", dim=3, index=False)]
    return Collection(conn, "docs", fields, "pgsieve")


def _q(**over):
    from pgvector import SparseVector

    q = {"dense": np.ones(4, np.float32), "bm25": SparseVector({1: 1.0}, 50), "mv": np.ones((2, 3), np.float32)}
    q.update(over)
    return q


def test_bad_requests_fail_with_clear_errors_before_sql(offline) -> None:
    c = offline
    cases = [
        (lambda: c.compile(_q(), Pipeline(gather("nope", 10))), "unknown field"),
        (lambda: c.compile(_q(dense=np.ones(5)), Pipeline(gather("dense", 10))), r"shape \(5,\), expected \(4,\)"),
        (lambda: c.compile(_q(bm25=__import__("pgvector").SparseVector({1: 1.0}, 60)), Pipeline(gather("bm25"))),
         "60 dimensions, expected 50"),
        (lambda: c.compile(_q(), Pipeline(gather("dense", kind="sparse"))), "is a dense field"),
        (lambda: c.compile(_q(), Pipeline(gather("mv"))), "without an index"),
        (lambda: c.compile(_q(), Pipeline(gather("dense")), k=0), "k must be"),
        (lambda: Pipeline(gather("dense", 0)), "k must be"),
        (lambda: Pipeline(), "at least one gather"),
        (lambda: Pipeline(rrf()), "at least one gather"),
        (lambda: Pipeline(gather("dense"), gather("bm25")), "needs a fusion stage"),
        (lambda: Pipeline(gather("dense"), gather("dense"), rrf()), "distinct names"),
        (lambda: Pipeline(gather("dense"), gather("bm25"), weighted({"dense": 1, "x": 2})), "unknown stages"),
        (lambda: Pipeline(gather("dense"), "rerank"), "not a pipeline stage"),
        (lambda: c.compile(_q(), Pipeline(gather("dense"), rerank_maxsim("dense"))), "needs a multivector field"),
        (lambda: c.compile(_q(), Pipeline(gather("dense"), rerank_maxsim("colbert"))), "unknown field"),
        (lambda: c.compile(_q(), Pipeline(gather("dense")), filter=["a"]), "filter must be a dict"),
        (lambda: c.compile(_q(), Pipeline(gather("dense")), filter={"a": {1, 2}}), "filter must be JSON"),
        (lambda: Pipeline(gather("dense"), rerank_maxsim(alpha=2)), "alpha must be"),
        (lambda: c.compile({"dense": np.ones(4)}, Pipeline(gather("dense"), gather("bm25"), rrf())),
         r"no query value for \['bm25'\]"),
        (lambda: c.compile(_q(), Pipeline(gather("dense", name="rrf"))), "reserved"),
        (lambda: Pipeline.from_dict({"gather": [{"field": "dense", "k": 10, "depth": 3}]}), "malformed"),
        (lambda: Pipeline.from_dict({"gather": []}), "non-empty list"),
        (lambda: Pipeline.from_dict({"gather": [{"field": "dense"}], "fuse": {}}), "unknown pipeline keys"),
    ]
    for fn, msg in cases:
        with pytest.raises(PipelineError, match=msg):
            fn()
    # without a multivector field, a MaxSim re-rank names the problem
    c2 = Collection(c.conn, "d2", [Field.dense("dense", dim=4)], "managed")
    with pytest.raises(PipelineError, match="0 multivector fields"):
        c2.compile(_q(), Pipeline(gather("dense"), rerank_maxsim()))
    with pytest.raises(FieldError, match="reserved"):
        Field.dense("metadata", dim=3)
    with pytest.raises(FieldError, match="not a dense field"):
        Collection(c.conn, "d3", [Field.binary("b", source="x")], "pgsieve")
    with pytest.raises(CollectionError, match="unknown keys"):
        c.add([{"id": "a", "txt": "x"}])
    with pytest.raises(CollectionError, match="duplicate id"):
        c.add([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])


def test_pipeline_json_round_trip() -> None:
    p = Pipeline(gather("bm25", 50), gather("dense", 40, name="d"), rrf(30, {"bm25": 2, "d": 1}),
                 rerank_maxsim("mv", 60))
    assert Pipeline.from_dict(p.to_dict()) == p
    w = Pipeline(gather("a"), gather("b"), weighted({"a": 0.5, "b": 0.5}, limit=20), rerank_exact("a", 10))
    assert Pipeline.from_dict(w.to_dict()) == w


# -- ingest through worker processes ------------------------------------------------------------------------

def test_add_through_a_pool_survives_a_killed_worker(db) -> None:
    """The dense field encoded by an EncoderPool ahead of the COPY; a worker SIGKILLed mid-ingest: the pool
    re-queues its batches and every document arrives exactly once, with the right vector."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import workers_helpers

    from pgsieve.encoders import BM25Encoder
    from pgsieve.workers import EncoderPool

    coll = Collection.create(db, "pooled", [Field.dense("dense", dim=8), Field.sparse("bm25", encoder=BM25Encoder())])
    docs = [{"id": f"w{i}", "text": f"worker text {i} " * (i % 4 + 1)} for i in range(37)]
    with EncoderPool(("workers_helpers:HashEncoder", {"dim": 8, "delay": 0.05}), devices="cpu",
                     workers_per_device=2, max_batch_size=2) as pool:
        victim = pool.pids[0]
        killer = workers_helpers.kill_after_batches(pool, victim, 3)
        assert coll.add(docs, pool=pool, batch_size=5, progress=False, encode_ahead=3) == 37
        killer.join()
        st = pool.stats()
        assert st["worker_deaths"] == 1 and victim not in pool.pids
    rows = db.execute("SELECT id, dense FROM pooled").fetchall()
    assert sorted(r[0] for r in rows) == sorted(d["id"] for d in docs)  # each exactly once (and id is the key)
    want = workers_helpers.HashEncoder(dim=8).encode_documents([d["text"] for d in docs])
    got = {r[0]: r[1].to_numpy() for r in rows}
    np.testing.assert_array_equal(np.stack([got[d["id"]] for d in docs]), want)
    # BM25 statistics were updated in the same transaction as the rows
    assert coll.fields["bm25"].encoder.stats.N == 37
    hits = coll.search({"dense": want[7], "bm25": coll.fields["bm25"].encoder.encode_queries(["worker"])[0]},
                       Pipeline(gather("dense", 5)), k=1)
    assert hits[0].id == "w7"


# -- the SQL function API --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_sql_function_runs_the_same_pipeline(colls, name) -> None:
    """pgsieve_catalog.search(collection, queries, pipeline, k, filter) returns what the client's search does."""
    from psycopg.types.json import Jsonb

    p = PIPELINES[name]
    for c in colls.values():
        for q, filt in ((QUERIES[0], None), (QUERIES[1], {"page": "kill(2)"})):
            want = c.search(q, p, k=10, filter=filt)
            rows = c.conn.execute("SELECT id, score, stages FROM pgsieve_catalog.search('docs', %s, %s, 10, %s)",
                                  (Jsonb(c.query_json(q, p)), Jsonb(p.to_dict()),
                                   None if filt is None else Jsonb(filt))).fetchall()
            assert [r[0] for r in rows] == _ids(want), (c.mode, name, q)
            np.testing.assert_allclose([r[1] for r in rows], [h.score for h in want], rtol=1e-5, atol=1e-6)
            for r, h in zip(rows, want):
                assert {s: v["rank"] for s, v in r[2].items()} == {s: v.rank for s, v in h.stages.items()}


def test_sql_function_default_pipeline_and_errors(colls) -> None:
    from psycopg.types.json import Jsonb

    for c in colls.values():
        want = c.search(QUERIES[2], k=5)
        rows = c.conn.execute("SELECT id FROM pgsieve_catalog.search('docs', %s, k => 5)",
                              (Jsonb(c.query_json(QUERIES[2])),)).fetchall()
        assert [r[0] for r in rows] == _ids(want)
        qj = Jsonb(c.query_json(QUERIES[2]))
        bad = [
            ("SELECT * FROM pgsieve_catalog.search('nope', %s)", (qj,), psycopg.errors.UndefinedObject, "no collection"),
            ("SELECT * FROM pgsieve_catalog.search('docs', %s, '{\"gather\": [{\"field\": \"x\"}]}')", (qj,),
             psycopg.errors.InvalidParameterValue, "unknown field"),
            ("SELECT * FROM pgsieve_catalog.search('docs', %s, '{\"gather\": [{\"field\": \"dense\"}, "
             "{\"field\": \"bm25\"}]}')", (qj,), psycopg.errors.InvalidParameterValue, "needs a fusion stage"),
            ("SELECT * FROM pgsieve_catalog.search('docs', %s, '{\"gather\": []}')", (qj,),
             psycopg.errors.InvalidParameterValue, "non-empty"),
            ("SELECT * FROM pgsieve_catalog.search('docs', %s, k => 0)", (qj,),
             psycopg.errors.InvalidParameterValue, "k must be"),
            ("SELECT * FROM pgsieve_catalog.search('docs', '{\"dense\": [1, 2]}', '{\"gather\": [{\"field\": "
             "\"dense\"}]}')", None, psycopg.errors.InvalidParameterValue, "array of 384 numbers"),
            ("SELECT * FROM pgsieve_catalog.search('docs', %s, '{\"gather\": [{\"field\": \"dense\"}], "
             "\"rerank\": {\"method\": \"maxsim\", \"field\": \"bm25\"}}')", (qj,),
             psycopg.errors.InvalidParameterValue, "needs a multivector field"),
        ]
        for stmt, params, exc, msg in bad:
            with pytest.raises(exc, match=msg):
                c.conn.execute(stmt, params)


def test_pgvector_before_0_8_gets_no_iterative_scan_setting(offline) -> None:
    """pgvector 0.7 reserves the hnsw.* prefix but has no iterative scans: the statement must not SET it, and the
    collection says what that costs.  With 0.8 only a filtered gather needs one (without a filter every row the
    graph yields is kept, and ef_search >= k)."""
    c = offline
    p = Pipeline(gather("dense", 20), gather("bm25", 20), rrf())
    assert c.compile(_q(), p, filter={"lang": "en"}).settings["hnsw.iterative_scan"] == "strict_order"
    assert "hnsw.iterative_scan" not in c.compile(_q(), p).settings
    c.pgvector_version = (0, 7, 4)
    settings = c.compile(_q(), p, filter={"lang": "en"}).settings
    assert "hnsw.iterative_scan" not in settings and settings["hnsw.ef_search"] == 40
    assert any("iterative_scan" in x for x in c.limitations)


def test_drop_removes_table_catalog_entry_and_statistics(db) -> None:
    from pgsieve.encoders import BM25Encoder

    c = Collection.create(db, "todrop", [Field.sparse("bm25", encoder=BM25Encoder())])
    c.add([{"id": "a", "text": "a small document"}], progress=False)
    assert db.execute("SELECT n_docs FROM pgsieve_catalog.bm25_corpus WHERE stats = 'todrop__bm25'").fetchone() == (1,)
    c.drop()
    assert db.execute("SELECT to_regclass('public.todrop')").fetchone() == (None,)
    assert db.execute("SELECT count(*) FROM pgsieve_catalog.bm25_corpus WHERE stats = 'todrop__bm25'").fetchone() == (0,)
    with pytest.raises(CollectionError, match="no collection"):
        Collection.open(db, "todrop")
