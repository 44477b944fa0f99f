"""``pgsieve_index_check(index regclass, heapallindexed boolean DEFAULT false)`` on sound indexes.

* Every access method and index shape passes — operator classes and quantizers of binary_scan, halfvec and
  expression indexes, bit, partial indexes, sparse_block with a tail of inserted documents and flagged deletes,
  multivec_fde with and without a typmod, indexes built on empty or all-NULL tables, unlogged and temporary
  tables — after inserts, deletes, updates and VACUUM, and the heapallindexed pass reports (DEBUG1) exactly as
  many heap rows as the table (or the partial index's predicate) has.
* Its refusals: other access methods, relations that are no index, invalid indexes, callers without the EXECUTE
  privilege (revoked from PUBLIC, as amcheck's functions are).
* Under concurrent inserts, deletes, updates (HOT ones too) and VACUUM, repeated heapallindexed checks never report corruption:
  the snapshot is taken before the index is read, so every row it sees has its entry.

That the checks find real damage is proven in ``tests/test_crash.py`` (files altered on disk).
"""

from __future__ import annotations

import random
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.reliability import check_index  # noqa: E402

N = 700


def _vec(dim: int, expr_seed: str) -> str:
    return (f"(SELECT array_agg(round((random() - 0.5)::numeric, 4))::real[] FROM generate_series(1, {dim}) "
            f"WHERE {expr_seed} > 0)")


def fill(lo: int, hi: int) -> str:
    return FILL.replace("@LO@", str(lo)).replace("@HI@", str(hi))


FILL = f"""
INSERT INTO ic (id, v, b, sp, mv, mvn)
SELECT i,
       CASE WHEN i % 17 = 0 THEN NULL ELSE {_vec(16, 'i')}::vector(16) END,
       CASE WHEN i % 19 = 0 THEN NULL ELSE (SELECT string_agg(CASE WHEN random() > 0.5 THEN '1' ELSE '0' END, '')
                                            FROM generate_series(1, 40) WHERE i > 0)::bit(40) END,
       CASE WHEN i % 13 = 0 THEN NULL WHEN i % 29 = 0 THEN '{{}}/200'::sparsevec
            ELSE (SELECT ('{{' || string_agg(t || ':' || round((random() + 0.01)::numeric, 3), ',') || '}}/200')
                  FROM (SELECT DISTINCT (1 + floor(200 * random() ^ 2))::int AS t
                        FROM generate_series(1, 2 + i % 15) WHERE i > 0) x)::sparsevec END,
       CASE WHEN i % 11 = 0 THEN NULL ELSE ARRAY[{_vec(4, 'i')}, {_vec(4, 'i + 1')}]::multivec(4) END,
       CASE WHEN i % 23 = 0 THEN NULL ELSE ARRAY[{_vec(6, 'i')}]::multivec END
FROM generate_series(@LO@, @HI@) i
"""

INDEXES = {
    "ic_l2": ("binary_scan (v)", None),
    "ic_ip": ("binary_scan (v vector_ip_ops)", None),
    "ic_cos_sign": ("binary_scan (v vector_cosine_ops) WITH (quantizer = sign)", None),
    "ic_half": ("binary_scan (h halfvec_cosine_ops)", None),
    "ic_expr": ("binary_scan ((v::halfvec(16)) halfvec_l2_ops)", None),
    "ic_bit": ("binary_scan (b)", None),
    "ic_part": ("binary_scan (v vector_ip_ops)", "id % 3 = 0"),
    "ic_sp": ("sparse_block (sp)", None),
    "ic_sp_pruned": ("sparse_block (sp) WITH (n_postings = 20, centroid_fraction = 0.3)", None),
    "ic_mv": ("multivec_fde (mv) WITH (reps = 3, ksim = 2, dproj = 4)", None),
    "ic_mvn": ("multivec_fde (mvn) WITH (reps = 2, ksim = 3, dproj = 0, final_dim = 50)", None),
}


def _rows(db: psycopg.Connection, table: str, where: str | None) -> int:
    return db.execute(f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")).fetchone()[0]


def _check_all(db: psycopg.Connection, table: str = "ic", indexes: dict | None = None) -> None:
    for name, (_, where) in (indexes or INDEXES).items():
        heap, err = check_index(db, name)
        assert not err, f"{name}: {err}"
        assert heap == _rows(db, table, where), name
        assert check_index(db, name, heapallindexed=False) == (-1, ""), name


def test_sound_indexes_pass(db: psycopg.Connection) -> None:
    db.execute("DROP TABLE IF EXISTS ic")
    db.execute("CREATE TABLE ic (id int PRIMARY KEY, v vector(16), h halfvec(16), b bit(40), sp sparsevec(200), "
               "mv multivec(4), mvn multivec)")
    db.execute(fill(1, N))
    db.execute("UPDATE ic SET h = v::halfvec(16)")
    for name, (definition, where) in INDEXES.items():
        db.execute(f"CREATE INDEX {name} ON ic USING {definition}" + (f" WHERE {where}" if where else ""))
    _check_all(db)

    # inserts (binary_scan insert pages, sparse_block's tail), deletes, updates (new versions), VACUUM
    db.execute(fill(N + 1, N + 80))
    db.execute(f"UPDATE ic SET h = v::halfvec(16) WHERE id > {N}")
    _check_all(db)
    db.execute("DELETE FROM ic WHERE id % 7 = 1")
    db.execute("UPDATE ic SET v = NULL, sp = NULL WHERE id % 31 = 2")
    db.execute("UPDATE ic SET mv = ARRAY['{1,2,3,4}'::real[]]::multivec(4), sp = '{3:1}/200' WHERE id % 37 = 3")
    _check_all(db)  # dead rows' entries are still there: only visible rows must have one
    db.execute("VACUUM (INDEX_CLEANUP ON) ic")
    _check_all(db)
    db.execute("REINDEX TABLE ic")
    _check_all(db)

    # a check under REPEATABLE READ uses the transaction's snapshot
    with db.transaction():
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        heap, err = check_index(db, "ic_sp")
        assert not err and heap == _rows(db, "ic", None)

    # NULL arguments: the function is STRICT
    assert db.execute("SELECT pgsieve_index_check(NULL)").fetchone()[0] is None


@pytest.mark.parametrize("persistence", ["", "UNLOGGED", "TEMPORARY"])
def test_empty_all_null_and_persistence(db: psycopg.Connection, persistence: str) -> None:
    t = f"ic_e{persistence.lower()[:4]}"
    db.execute(f"DROP TABLE IF EXISTS {t}")
    # no typmods: the first value inserted fixes the dimensions
    db.execute(f"CREATE {persistence} TABLE {t} (id int, v vector, sp sparsevec, mv multivec)")
    idx = {f"{t}_v": ("binary_scan (v vector_cosine_ops)", None), f"{t}_sp": ("sparse_block (sp)", None),
           f"{t}_mv": ("multivec_fde (mv) WITH (reps = 2, ksim = 2, dproj = 4)", None)}
    for name, (definition, _) in idx.items():
        db.execute(f"CREATE INDEX {name} ON {t} USING {definition}")
    _check_all(db, t, idx)  # empty
    db.execute(f"INSERT INTO {t} SELECT i, NULL, NULL, NULL FROM generate_series(1, 50) i")
    _check_all(db, t, idx)  # NULL rows only: no dimensions yet
    db.execute(f"INSERT INTO {t} VALUES (51, '[1,2,3]', '{{1:0.5,7:2}}/10', '[[1,0],[0,1]]')")
    _check_all(db, t, idx)
    for name, (definition, _) in idx.items():  # built on NULL rows and one value
        db.execute(f"DROP INDEX {name}")
        db.execute(f"CREATE INDEX {name} ON {t} USING {definition}")
    db.execute(f"INSERT INTO {t} VALUES (52, '[0,-1,3]', '{{2:1}}/10', '[[0,1]]'), (53, NULL, NULL, NULL)")
    _check_all(db, t, idx)
    db.execute(f"DROP TABLE {t}")


def test_refusals(db: psycopg.Connection, db_url: str) -> None:
    db.execute("DROP TABLE IF EXISTS ic_r")
    db.execute("CREATE TABLE ic_r (id int PRIMARY KEY, v vector(3))")
    db.execute("INSERT INTO ic_r SELECT i, ARRAY[i, -i, 1]::vector(3) FROM generate_series(1, 20) i")
    db.execute("CREATE INDEX ic_r_bs ON ic_r USING binary_scan (v)")

    with pytest.raises(psycopg.errors.FeatureNotSupported, match=r'"ic_r_pkey" is not a pgsieve index'):
        db.execute("SELECT pgsieve_index_check('ic_r_pkey')")
    with pytest.raises(psycopg.errors.WrongObjectType, match="is not an index"):
        db.execute("SELECT pgsieve_index_check('ic_r')")

    db.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ic_r_bs'::regclass")
    try:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="cannot check index"):
            db.execute("SELECT pgsieve_index_check('ic_r_bs', true)")
    finally:
        db.execute("UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'ic_r_bs'::regclass")

    role = f"ic_user_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role}")
    try:
        db.execute(f"GRANT SELECT ON ic_r TO {role}")
        db.execute(f"SET ROLE {role}")
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute("SELECT pgsieve_index_check('ic_r_bs')")
        finally:
            db.execute("RESET ROLE")
        db.execute(f"GRANT EXECUTE ON FUNCTION pgsieve_index_check(regclass, boolean) TO {role}")
        db.execute(f"SET ROLE {role}")
        try:
            db.execute("SELECT pgsieve_index_check('ic_r_bs', true)")
        finally:
            db.execute("RESET ROLE")
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")
    db.execute("DROP TABLE ic_r")


def test_no_false_alarms_under_concurrent_writes(db: psycopg.Connection, db_url: str) -> None:
    db.execute("DROP TABLE IF EXISTS ic_c")
    db.execute("CREATE TABLE ic_c (id int PRIMARY KEY, v vector(8), sp sparsevec(100), n int DEFAULT 0) "
               "WITH (fillfactor = 70)")
    db.execute("INSERT INTO ic_c SELECT i, ARRAY[i % 5, -i % 3, 1, 2, i % 7, 0, 1, -1]::vector(8), "
               "('{' || (1 + i % 45) || ':1,' || (50 + i % 47) || ':0.5}/100')::sparsevec FROM generate_series(1, 2000) i")
    db.execute("CREATE INDEX ic_c_bs ON ic_c USING binary_scan (v)")
    db.execute("CREATE INDEX ic_c_sp ON ic_c USING sparse_block (sp)")
    stop = threading.Event()
    errors: list[str] = []
    writes = [0]

    def writer() -> None:
        rng = random.Random(5)
        next_id = 3000
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                while not stop.is_set():
                    r = rng.random()
                    if r < 0.4:
                        c.execute("INSERT INTO ic_c SELECT i, ARRAY[i % 3, 1, i % 5, 0, 0, 1, 2, -i % 4]::vector(8), "
                                  "CASE WHEN i % 9 = 0 THEN NULL ELSE ('{' || (1 + i % 80) || ':2}/100')::sparsevec "
                                  f"END FROM generate_series({next_id}, {next_id + 9}) i")
                        next_id += 10
                    elif r < 0.7:
                        c.execute("DELETE FROM ic_c WHERE id IN (SELECT id FROM ic_c ORDER BY random() LIMIT 8)")
                    elif r < 0.8:
                        c.execute("UPDATE ic_c SET v = v + '[1,0,0,0,0,0,0,1]', sp = NULL WHERE id IN "
                                  "(SELECT id FROM ic_c ORDER BY random() LIMIT 5)")
                    elif r < 0.95:  # no indexed column changes: HOT updates, found through their chain's root
                        c.execute("UPDATE ic_c SET n = n + 1 WHERE id IN (SELECT id FROM ic_c ORDER BY random() LIMIT 5)")
                    else:
                        c.execute("VACUUM ic_c")
                    writes[0] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"writer: {e}")

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    checks = 0
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            for name in ("ic_c_bs", "ic_c_sp"):
                heap, err = check_index(db, name)
                assert not err, f"{name} under concurrent writes: {err}"
                assert heap > 0
                checks += 1
    finally:
        stop.set()
        th.join(60)
    assert not errors, errors
    print(f"{checks} heapallindexed checks during {writes[0]} concurrent writes")
    assert checks >= 4 and writes[0] >= 20, (checks, writes)
    for name in ("ic_c_bs", "ic_c_sp"):
        heap, err = check_index(db, name)
        assert not err and heap == _rows(db, "ic_c", None)
    db.execute("DROP TABLE ic_c")
