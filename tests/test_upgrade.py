"""Extension upgrades: ``ALTER EXTENSION pgsieve UPDATE`` from every released version.

Versioning follows pgvector: ``sql/pgsieve--<default_version>.sql`` is the one full script changes are made in;
each released version's full script is kept byte for byte (``RELEASED`` pins their SHA-256), and
``sql/pgsieve--<a>--<b>.sql`` update scripts carry the differences.  For every released version this module

* creates the extension at that version and builds a table with an index of every access method,
* runs ``ALTER EXTENSION pgsieve UPDATE`` and requires the catalog (every extension member as
  ``pg_describe_object`` plus the definition of each: functions' arguments, result, volatility, strictness,
  parallel safety, C symbol; types, operators, operator families with their operators and support functions,
  access methods, casts, comments, privileges) to equal a fresh ``CREATE EXTENSION pgsieve``,
* requires the indexes built before the update to give the same answers after it (through an index scan),
  to accept inserts, and to pass ``pgsieve_index_check(..., heapallindexed => true)``.

So adding an object to the full script without adding it to the update script fails here, as does editing a
released script.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from pgsieve import server

REPO = Path(__file__).resolve().parents[1]

#: Released full scripts, frozen: version -> SHA-256 of sql/pgsieve--<version>.sql.  A release adds its
#: script here; none is ever edited again (changes go to the current script and an update script).
RELEASED: dict[str, str] = {
    "0.1.0": "6257fbcbe80f57f6f07284441229da9fad64e6876105ac1eea3f8c6bbd7d67f6",
}


def default_version() -> str:
    control = (REPO / "ext" / "pgsieve.control").read_text()
    m = re.search(r"^default_version\s*=\s*'([^']+)'", control, re.M)
    assert m is not None, "ext/pgsieve.control has no default_version"
    return m.group(1)


# --- catalog fingerprint of an extension ----------------------------------------------------------------------

_MEMBERS = """
    SELECT d.classid::regclass::text AS catalog, d.objid, pg_describe_object(d.classid, d.objid, d.objsubid) AS obj
    FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e' AND e.extname = %(ext)s
"""

#: One query per catalog an extension member can live in; each returns rows of text only (OIDs rendered as
#: names), restricted to the members via ``m`` (the _MEMBERS rows).
_DEFINITIONS: dict[str, str] = {
    "pg_proc": """
        SELECT p.oid::regprocedure::text, p.prokind, p.provolatile, p.proparallel, p.proisstrict::text,
               p.proleakproof::text, p.prosecdef::text, p.proretset::text, p.procost::text, p.prorows::text,
               pg_catalog.pg_get_function_arguments(p.oid), pg_catalog.pg_get_function_result(p.oid),
               l.lanname::text, p.prosrc, coalesce(p.probin, ''), p.prosupport::regproc::text,
               coalesce(p.proconfig::text, ''), coalesce(p.proacl::text, '')
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
        WHERE p.oid IN (SELECT objid FROM m WHERE catalog = 'pg_proc')""",
    "pg_aggregate": """
        SELECT a.aggfnoid::regprocedure::text, a.aggkind, a.aggtransfn::regproc::text, a.aggfinalfn::regproc::text,
               a.aggcombinefn::regproc::text, a.aggserialfn::regproc::text, a.aggdeserialfn::regproc::text,
               a.aggtranstype::regtype::text, coalesce(a.agginitval, ''), a.aggfinalmodify
        FROM pg_catalog.pg_aggregate a
        WHERE a.aggfnoid IN (SELECT objid FROM m WHERE catalog = 'pg_proc')""",
    "pg_type": """
        SELECT t.oid::regtype::text, t.typtype, t.typlen::text, t.typbyval::text, t.typalign, t.typstorage,
               t.typcategory, t.typinput::regproc::text, t.typoutput::regproc::text, t.typreceive::regproc::text,
               t.typsend::regproc::text, t.typmodin::regproc::text, t.typmodout::regproc::text,
               t.typanalyze::regproc::text, t.typelem::regtype::text, t.typarray::regtype::text
        FROM pg_catalog.pg_type t WHERE t.oid IN (SELECT objid FROM m WHERE catalog = 'pg_type')""",
    "pg_operator": """
        SELECT o.oid::regoperator::text, o.oprcode::regproc::text, o.oprcom::regoperator::text,
               o.oprnegate::regoperator::text, o.oprrest::regproc::text, o.oprjoin::regproc::text,
               o.oprcanmerge::text, o.oprcanhash::text, o.oprresult::regtype::text
        FROM pg_catalog.pg_operator o WHERE o.oid IN (SELECT objid FROM m WHERE catalog = 'pg_operator')""",
    "pg_am": """
        SELECT a.amname::text, a.amtype, a.amhandler::regproc::text
        FROM pg_catalog.pg_am a WHERE a.oid IN (SELECT objid FROM m WHERE catalog = 'pg_am')""",
    "pg_opclass": """
        SELECT c.opcname::text, am.amname::text, f.opfname::text, c.opcintype::regtype::text, c.opcdefault::text,
               c.opckeytype::regtype::text
        FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_am am ON am.oid = c.opcmethod
             JOIN pg_catalog.pg_opfamily f ON f.oid = c.opcfamily
        WHERE c.oid IN (SELECT objid FROM m WHERE catalog = 'pg_opclass')""",
    "pg_opfamily": """
        SELECT f.opfname::text, am.amname::text, 'op', o.amopstrategy::text, o.amoplefttype::regtype::text,
               o.amoprighttype::regtype::text, o.amopopr::regoperator::text, o.amoppurpose::text,
               coalesce((SELECT sf.opfname::text FROM pg_catalog.pg_opfamily sf WHERE sf.oid = o.amopsortfamily), '')
        FROM pg_catalog.pg_opfamily f JOIN pg_catalog.pg_am am ON am.oid = f.opfmethod
             JOIN pg_catalog.pg_amop o ON o.amopfamily = f.oid
        WHERE f.oid IN (SELECT objid FROM m WHERE catalog = 'pg_opfamily')
        UNION ALL
        SELECT f.opfname::text, am.amname::text, 'proc', p.amprocnum::text, p.amproclefttype::regtype::text,
               p.amprocrighttype::regtype::text, p.amproc::regprocedure::text, '', ''
        FROM pg_catalog.pg_opfamily f JOIN pg_catalog.pg_am am ON am.oid = f.opfmethod
             JOIN pg_catalog.pg_amproc p ON p.amprocfamily = f.oid
        WHERE f.oid IN (SELECT objid FROM m WHERE catalog = 'pg_opfamily')""",
    "pg_cast": """
        SELECT c.castsource::regtype::text, c.casttarget::regtype::text, c.castfunc::regprocedure::text,
               c.castcontext, c.castmethod
        FROM pg_catalog.pg_cast c WHERE c.oid IN (SELECT objid FROM m WHERE catalog = 'pg_cast')""",
    "pg_class": """
        SELECT c.oid::regclass::text, c.relkind, a.attnum::text, a.attname::text,
               pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull::text
        FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_attribute a
             ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.oid IN (SELECT objid FROM m WHERE catalog = 'pg_class')""",
}

_COMMENTS = """
    SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
    FROM pg_catalog.pg_description d WHERE (d.classoid::regclass::text, d.objoid) IN (SELECT catalog, objid FROM m)
"""


def extension_catalog(conn: psycopg.Connection, ext: str = "pgsieve") -> dict[str, list[tuple[str, ...]]]:
    """Everything the catalog says about ``ext``'s objects, as sorted rows of text per aspect."""
    members = f"WITH m AS ({_MEMBERS})"
    out: dict[str, list[tuple[str, ...]]] = {}
    rows = conn.execute(f"{members} SELECT catalog, obj FROM m", {"ext": ext}).fetchall()
    assert rows, f"extension {ext} has no members"
    out["members"] = sorted(rows)
    unknown = {catalog for catalog, _ in rows} - set(_DEFINITIONS)
    assert not unknown, f"extension members in catalogs this fingerprint does not cover: {unknown}; add them"
    for name, query in _DEFINITIONS.items():
        out[name] = sorted(conn.execute(f"{members} {query}", {"ext": ext}).fetchall())
    out["comments"] = sorted(conn.execute(f"{members} {_COMMENTS}", {"ext": ext}).fetchall())
    return out


def catalog_differences(a: dict[str, list[tuple[str, ...]]], b: dict[str, list[tuple[str, ...]]]) -> list[str]:
    """Human-readable rows present in only one of two fingerprints."""
    diffs: list[str] = []
    for aspect in sorted(set(a) | set(b)):
        left, right = set(a.get(aspect, [])), set(b.get(aspect, []))
        diffs += [f"{aspect}: only after update: {row}" for row in sorted(left - right)]
        diffs += [f"{aspect}: only in fresh install: {row}" for row in sorted(right - left)]
    return diffs


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def make_db(pg_server: str, pg_data_dir: Path) -> Iterator:
    """Factory of fresh empty databases (with pgvector) on the session server, dropped after the module."""
    names: list[str] = []

    def make() -> psycopg.Connection:
        name = f"test_upgrade_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        names.append(name)
        conn = psycopg.connect(server.url(pg_data_dir, dbname=name), autocommit=True)
        conn.execute("CREATE EXTENSION vector")
        return conn

    yield make
    with psycopg.connect(pg_server, autocommit=True) as admin:
        for name in names:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def fresh_catalog(make_db) -> dict[str, list[tuple[str, ...]]]:
    with make_db() as conn:
        conn.execute("CREATE EXTENSION pgsieve")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgsieve'").fetchone()[0]
        assert version == default_version()
        return extension_catalog(conn)


# --- tests ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", sorted(RELEASED))
def test_released_scripts_are_frozen(version: str) -> None:
    script = REPO / "sql" / f"pgsieve--{version}.sql"
    assert script.is_file(), f"released script {script.name} is missing"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    assert digest == RELEASED[version], (
        f"{script.name} changed: released scripts are frozen. Put the change in "
        f"sql/pgsieve--{default_version()}.sql and sql/pgsieve--<previous>--{default_version()}.sql"
    )


def test_current_version_is_not_a_released_one() -> None:
    assert default_version() not in RELEASED
    assert (REPO / "sql" / f"pgsieve--{default_version()}.sql").is_file()


@pytest.mark.parametrize("version", sorted(RELEASED))
def test_update_path_exists(make_db, version: str) -> None:
    with make_db() as conn:
        row = conn.execute(
            "SELECT path FROM pg_extension_update_paths('pgsieve') WHERE source = %s AND target = %s",
            (version, default_version()),
        ).fetchone()
    assert row is not None and row[0] is not None, f"no update path {version} -> {default_version()}"


DIM, SPARSE_DIM, MV_DIM, ROWS = 32, 500, 8, 400


def _corpus(rng: np.random.Generator, n: int, start: int) -> list[tuple[int, str, str, str]]:
    rows = []
    for i in range(start, start + n):
        emb = rng.standard_normal(DIM).astype(np.float32)
        nnz = int(rng.integers(3, 20))
        idx = np.sort(rng.choice(SPARSE_DIM, nnz, replace=False)) + 1
        val = rng.random(nnz).astype(np.float32) + 0.01
        toks = rng.standard_normal((int(rng.integers(2, 6)), MV_DIM)).astype(np.float32)
        rows.append(
            (
                i,
                "[" + ",".join(f"{x:.6g}" for x in emb) + "]",
                "{" + ",".join(f"{j}:{v:.6g}" for j, v in zip(idx, val)) + f"}}/{SPARSE_DIM}",
                "[" + ",".join("[" + ",".join(f"{x:.6g}" for x in t) + "]" for t in toks) + "]",
            )
        )
    return rows


_INDEXES = {
    "docs_emb_idx": ("binary_scan", "emb vector_cosine_ops", "emb <=> %s::vector"),
    "docs_sp_idx": ("sparse_block", "sp", "sp <#> %s::sparsevec"),
    "docs_toks_idx": ("multivec_fde", "toks", "toks @# %s::multivec"),
}


def _answers(conn: psycopg.Connection, queries: list[tuple[str, str, str]]) -> dict[str, list[list[int]]]:
    """Top-10 ids of every query through each index (the plan must use it)."""
    out: dict[str, list[list[int]]] = {}
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL enable_sort = off")
        for pos, (index, (_am, _col, order)) in enumerate(_INDEXES.items()):
            stmt = f"SELECT id FROM docs ORDER BY {order} LIMIT 10"
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + stmt, (queries[0][pos],)).fetchall())
            assert f"Index Scan using {index}" in plan, plan
            out[index] = [[r[0] for r in conn.execute(stmt, (q[pos],)).fetchall()] for q in queries]
    return out


@pytest.mark.parametrize("version", sorted(RELEASED))
def test_update_gives_the_fresh_catalog_and_keeps_indexes(make_db, fresh_catalog, version: str) -> None:
    rng = np.random.default_rng(7)
    with make_db() as conn:
        conn.execute(sql.SQL("CREATE EXTENSION pgsieve VERSION {}").format(sql.Literal(version)))
        conn.execute(f"CREATE TABLE docs (id int PRIMARY KEY, emb vector({DIM}), sp sparsevec({SPARSE_DIM}), toks multivec({MV_DIM}))")
        with conn.cursor().copy("COPY docs (id, emb, sp, toks) FROM STDIN") as copy:
            for row in _corpus(rng, ROWS, 0):
                copy.write_row(row)
        for index, (am, col, _order) in _INDEXES.items():
            conn.execute(f"CREATE INDEX {index} ON docs USING {am} ({col})")
        queries = [(r[1], r[2], r[3]) for r in _corpus(rng, 5, 10_000)]
        before = _answers(conn, queries)

        conn.execute("ALTER EXTENSION pgsieve UPDATE")
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgsieve'").fetchone()[0] == default_version()
        diffs = catalog_differences(extension_catalog(conn), fresh_catalog)
        assert not diffs, (
            f"CREATE EXTENSION pgsieve VERSION '{version}' + ALTER EXTENSION UPDATE differs from a fresh install; "
            f"add the change to the update script(s) in sql/:\n" + "\n".join(diffs[:50])
        )
        url = conn.info.dsn

    # a new backend (as after a server upgrade) on the updated catalog
    with psycopg.connect(url, autocommit=True) as conn:
        assert _answers(conn, queries) == before
        for index in _INDEXES:
            conn.execute("SELECT pgsieve_index_check(%s::regclass, true)", (index,))
        with conn.cursor().copy("COPY docs (id, emb, sp, toks) FROM STDIN") as copy:
            for row in _corpus(rng, 50, 20_000):
                copy.write_row(row)
        # an inserted row equal to a query is that query's nearest neighbour in every index
        q = queries[0]
        conn.execute("INSERT INTO docs VALUES (99999, %s, %s, %s)", q)
        after = _answers(conn, [q])
        assert after["docs_emb_idx"][0][0] == 99999
        assert after["docs_toks_idx"][0][0] == 99999
        assert 99999 in after["docs_sp_idx"][0]
        for index in _INDEXES:
            conn.execute("SELECT pgsieve_index_check(%s::regclass, true)", (index,))


def test_fingerprint_sees_a_missing_or_changed_object(make_db, fresh_catalog) -> None:
    """The comparison is not vacuous: an extra member or a changed volatility shows up as a difference."""
    with make_db() as conn:
        conn.execute("CREATE EXTENSION pgsieve")
        assert catalog_differences(extension_catalog(conn), fresh_catalog) == []
        conn.execute(
            "CREATE FUNCTION pgsieve_extra(int) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE "
            "SET search_path = pg_catalog, pg_temp AS 'SELECT $1'"
        )
        conn.execute("ALTER EXTENSION pgsieve ADD FUNCTION pgsieve_extra(int)")
        diffs = catalog_differences(extension_catalog(conn), fresh_catalog)
        assert any("pgsieve_extra" in d and d.startswith("members:") for d in diffs), diffs
        conn.execute("ALTER EXTENSION pgsieve DROP FUNCTION pgsieve_extra(int)")
        conn.execute("ALTER FUNCTION pgsieve_kernel_level() VOLATILE")
        diffs = catalog_differences(extension_catalog(conn), fresh_catalog)
        assert diffs and all("pgsieve_kernel_level" in d for d in diffs), diffs
