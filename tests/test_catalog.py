"""pgsieve's catalog lineage on a real server: upgrade/downgrade across revisions, data surviving an upgrade,
concurrent ``ensure_catalog``, joining a caller's transaction, ``pgsieve migrate`` and coexistence with a
user's own Alembic project (separate version tables, independent heads, invisible to the user's autogenerate).

The databases here have no extension at all: the catalog is plain tables.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psycopg
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")
alembic = pytest.importorskip("alembic")

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from alembic_project import make_project  # noqa: E402

from pgsieve import catalog, cli  # noqa: E402

CATALOG_TABLES = {"collections", "encoders", "bm25_corpus", "bm25_df"}


@pytest.fixture
def plain_url(plain_db_url: str) -> str:
    """A fresh database without any extension."""
    return plain_db_url


def tables(conn: psycopg.Connection, schema: str = catalog.SCHEMA) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall()
    return {r[0] for r in rows}


def columns(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                        "AND table_name = %s ORDER BY ordinal_position", (catalog.SCHEMA, table)).fetchall()
    return [r[0] for r in rows]


def test_lineage_is_linear_with_a_branch_label() -> None:
    hist = catalog.history()
    assert [h[1] for h in hist] == ["pgsieve_0001", "pgsieve_0002", "pgsieve_0003"]
    assert hist[0][0] is None and hist[1][0] == "pgsieve_0001"
    assert catalog.head_revision() == "pgsieve_0003"
    from alembic.script import ScriptDirectory

    base = ScriptDirectory.from_config(catalog.alembic_config()).get_revision("pgsieve@base")
    assert base is None or base.revision == "pgsieve_0001"
    assert ScriptDirectory.from_config(catalog.alembic_config()).get_revision("pgsieve@head").revision == \
        catalog.head_revision()


def test_ensure_catalog_creates_and_is_idempotent(plain_url: str) -> None:
    with psycopg.connect(plain_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'").fetchone()[0] == 0
        assert catalog.current_revision(conn) is None
        assert catalog.ensure_catalog(plain_url) == catalog.head_revision()
        assert tables(conn) == CATALOG_TABLES | {catalog.VERSION_TABLE}
        assert catalog.current_revision(conn) == catalog.head_revision()
        assert catalog.ensure_catalog(conn) == catalog.head_revision()  # psycopg connection, nothing to do
        assert conn.execute(f"SELECT count(*) FROM {catalog.SCHEMA}.{catalog.VERSION_TABLE}").fetchone()[0] == 1
        # the constraints the pipelines rely on
        conn.execute("INSERT INTO pgsieve_catalog.collections (name, table_name, mode, spec) "
                     "VALUES ('c', 'public.c', 'managed', '{}')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO pgsieve_catalog.collections (name, table_name, mode, spec) "
                         "VALUES ('d', 'public.d', 'other', '{}')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO pgsieve_catalog.collections (name, table_name, mode, spec) "
                         "VALUES ('e', 'public.c', 'pgsieve', '{}')")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO pgsieve_catalog.encoders (collection, field, kind, config) "
                         "VALUES ('nope', 'f', 'dense', '{}')")
        conn.execute("INSERT INTO pgsieve_catalog.encoders (collection, field, kind, config) "
                     "VALUES ('c', 'f', 'dense', '{}')")
        conn.execute("DELETE FROM pgsieve_catalog.collections WHERE name = 'c'")
        assert conn.execute("SELECT count(*) FROM pgsieve_catalog.encoders").fetchone()[0] == 0  # cascaded


def test_upgrade_downgrade_cycle_keeps_data(plain_url: str) -> None:
    spec = {"fields": {"body": {"kind": "dense", "dim": 384, "metric": "cosine"}}}
    with psycopg.connect(plain_url, autocommit=True) as conn:
        assert catalog.upgrade(plain_url, "pgsieve_0001") == "pgsieve_0001"
        assert "updated_at" not in columns(conn, "collections")
        conn.execute("INSERT INTO pgsieve_catalog.collections (name, table_name, mode, spec, created_at) "
                     "VALUES ('docs', 'public.docs', 'pgsieve', %s, '2026-01-02 03:04:05+00')",
                     (json.dumps(spec),))
        conn.execute("INSERT INTO pgsieve_catalog.encoders (collection, field, kind, config) "
                     "VALUES ('docs', 'body', 'dense', %s)", (json.dumps({"model": "/models/minilm"}),))
        conn.execute("INSERT INTO pgsieve_catalog.bm25_corpus VALUES ('docs', 3, 30)")
        conn.execute("INSERT INTO pgsieve_catalog.bm25_df VALUES ('docs', 7, 2)")

        assert catalog.upgrade(plain_url) == "pgsieve_0003"
        assert columns(conn, "collections")[-1] == "updated_at" and columns(conn, "encoders")[-1] == "updated_at"
        row = conn.execute("SELECT spec, created_at = updated_at FROM pgsieve_catalog.collections").fetchone()
        assert row == (spec, True)
        assert conn.execute("SELECT config, updated_at IS NOT NULL FROM pgsieve_catalog.encoders").fetchone() == \
            ({"model": "/models/minilm"}, True)
        assert conn.execute("SELECT * FROM pgsieve_catalog.bm25_df").fetchall() == [("docs", 7, 2)]
        conn.execute("INSERT INTO pgsieve_catalog.collections (name, table_name, mode, spec) "
                     "VALUES ('two', 'public.two', 'managed', '{}')")  # updated_at has a default at 0002
        assert conn.execute("SELECT count(*) FROM pgsieve_catalog.collections WHERE updated_at IS NOT NULL"
                            ).fetchone()[0] == 2

        assert catalog.downgrade(plain_url, "-2") == "pgsieve_0001"  # past pgsieve_0003 (search functions)
        assert "updated_at" not in columns(conn, "collections") + columns(conn, "encoders")
        assert conn.execute("SELECT count(*) FROM pgsieve_catalog.collections").fetchone()[0] == 2

        assert catalog.downgrade(plain_url, "base") is None
        assert tables(conn) == {catalog.VERSION_TABLE}  # schema and version table stay, every catalog table went
        assert catalog.current_revision(plain_url) is None

        assert catalog.upgrade(plain_url) == catalog.head_revision()
        assert tables(conn) == CATALOG_TABLES | {catalog.VERSION_TABLE}
        assert conn.execute("SELECT count(*) FROM pgsieve_catalog.collections").fetchone()[0] == 0


def test_bm25_statistics_live_in_the_catalog(plain_url: str) -> None:
    from pgsieve.encoders.bm25 import (CorpusStats, drop_stats, ensure_stats_tables, load_stats,
                                       stats_table_names, update_stats)

    assert stats_table_names("docs") == ("pgsieve_catalog.bm25_df", "pgsieve_catalog.bm25_corpus")
    with psycopg.connect(plain_url, autocommit=True) as conn:
        ensure_stats_tables(conn, "docs")  # creates the catalog on first use
        assert catalog.current_revision(conn) == catalog.head_revision()
        ensure_stats_tables(conn, "other")
        update_stats(conn, "docs", [[1, 2, 2], [2, 3]])
        update_stats(conn, "other", CorpusStats(N=1, total_len=4, df={9: 1}))
        assert load_stats(conn, "docs") == CorpusStats(N=2, total_len=5, df={1: 1, 2: 2, 3: 1})
        assert load_stats(conn, "other") == CorpusStats(N=1, total_len=4, df={9: 1})
        assert load_stats(conn, "never") == CorpusStats()
        assert conn.execute("SELECT stats, n_docs, total_len FROM pgsieve_catalog.bm25_corpus ORDER BY stats"
                            ).fetchall() == [("docs", 2, 5), ("other", 1, 4)]
        assert drop_stats(conn, "docs") and not drop_stats(conn, "docs")
        assert conn.execute("SELECT DISTINCT stats FROM pgsieve_catalog.bm25_df").fetchall() == [("other",)]
        with pytest.raises(ValueError, match="identifier"):
            load_stats(conn, "x; drop table y")


def test_unknown_revision_is_a_clear_error(plain_url: str) -> None:
    catalog.ensure_catalog(plain_url)
    with psycopg.connect(plain_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {catalog.SCHEMA}.{catalog.VERSION_TABLE} SET version_num = 'pgsieve_0099'")
        with pytest.raises(RuntimeError, match="newer pgsieve"):
            catalog.ensure_catalog(conn)
    with pytest.raises(ValueError, match="revision"):
        catalog.downgrade(plain_url, "")
    with pytest.raises(TypeError, match="URL"):
        catalog.ensure_catalog(42)  # type: ignore[arg-type]


def test_concurrent_ensure_catalog_upgrades_once(plain_url: str) -> None:
    """Two processes' worth of callers racing: the advisory lock makes one upgrade and the other find it done."""
    holder = psycopg.connect(plain_url)
    try:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (catalog.LOCK_KEY,))  # held until commit
        results: list[str] = []
        errors: list[BaseException] = []

        def call() -> None:
            try:
                results.append(catalog.ensure_catalog(plain_url))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
        with psycopg.connect(plain_url, autocommit=True) as watch:  # all three queue on the lock
            for _ in range(200):
                waiting = watch.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                        "AND NOT granted").fetchone()[0]
                if waiting == 3:
                    break
                threading.Event().wait(0.05)
            assert waiting == 3
            assert catalog.current_revision(watch) is None
        holder.commit()
        for t in threads:
            t.join(60)
        assert not errors and results == [catalog.head_revision()] * 3
    finally:
        holder.close()
    with psycopg.connect(plain_url) as conn:
        assert conn.execute(f"SELECT version_num FROM {catalog.SCHEMA}.{catalog.VERSION_TABLE}").fetchall() == \
            [(catalog.head_revision(),)]


def test_psycopg_connection_joins_the_callers_transaction(plain_url: str) -> None:
    with psycopg.connect(plain_url) as conn:  # not autocommit: the caller's transaction
        conn.row_factory = psycopg.rows.dict_row  # the catalog code must not depend on the row factory
        conn.execute("CREATE TABLE mine (id int)")
        assert catalog.ensure_catalog(conn) == catalog.head_revision()
        assert catalog.current_revision(conn) == catalog.head_revision()
        conn.rollback()
        assert catalog.current_revision(conn) is None  # rolled back with the caller's work
        assert conn.execute("SELECT to_regclass('mine') AS t").fetchone() == {"t": None}
        catalog.ensure_catalog(conn)
        conn.commit()
    assert catalog.current_revision(plain_url) == catalog.head_revision()


def test_sqlalchemy_engine_and_connection(plain_url: str) -> None:
    engine = sqlalchemy.create_engine(catalog.sqlalchemy_url(plain_url))
    try:
        assert catalog.ensure_catalog(engine) == catalog.head_revision()
        with engine.connect() as conn:
            assert catalog.current_revision(conn) == catalog.head_revision()
            assert catalog.downgrade(conn, "pgsieve_0001") == "pgsieve_0001"  # commits its own transaction
        with engine.begin() as conn:  # caller's transaction: the caller commits
            catalog.upgrade(conn)
            assert catalog.current_revision(conn) == catalog.head_revision()
        assert catalog.current_revision(engine) == catalog.head_revision()
    finally:
        engine.dispose()
    assert str(catalog.sqlalchemy_url("postgres://u@h/db")).startswith("postgresql+psycopg://")
    with pytest.raises(ValueError, match="PostgreSQL"):
        catalog.sqlalchemy_url("sqlite:///x.db")


def test_pgsieve_migrate_cli(plain_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate", "history"]) == 0
    out = capsys.readouterr().out
    assert "<base> -> pgsieve_0001, pgsieve catalog" in out and "pgsieve_0001 -> pgsieve_0002," in out \
        and "pgsieve_0002 -> pgsieve_0003 (head)" in out
    assert cli.main(["migrate", "current", "--dsn", plain_url]) == 0
    assert capsys.readouterr().out.strip() == "<base>"
    assert cli.main(["migrate", "upgrade", "pgsieve_0001", "--dsn", plain_url]) == 0
    assert capsys.readouterr().out.strip() == "pgsieve catalog at pgsieve_0001"
    assert cli.main(["migrate", "--dsn", plain_url]) == 0  # default action: upgrade to head
    assert capsys.readouterr().out.strip() == "pgsieve catalog at pgsieve_0003 (head)"
    assert cli.main(["migrate", "current", "--dsn", plain_url]) == 0
    assert capsys.readouterr().out.strip() == "pgsieve_0003 (head)"
    assert cli.main(["migrate", "downgrade", "--dsn", plain_url]) == 2
    assert "give the target revision" in capsys.readouterr().err
    assert cli.main(["migrate", "downgrade", "nonexistent", "--dsn", plain_url]) == 1
    assert "nonexistent" in capsys.readouterr().err
    assert cli.main(["migrate", "downgrade", "base", "--dsn", plain_url]) == 0
    assert capsys.readouterr().out.strip() == "pgsieve catalog at <base>"


# ---------------------------------------------------------------------------------------------------------------
# a user's own Alembic project next to pgsieve's lineage

USER_ENV = '''
from alembic import context
from sqlalchemy import create_engine, pool

from user_models import metadata

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
'''

USER_MODELS = '''
import sqlalchemy as sa

metadata = sa.MetaData()
items = sa.Table("user_items", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("title", sa.Text, nullable=False))
'''

USER_REVISION = '''
"""user items"""
import sqlalchemy as sa
from alembic import op

revision = "u1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("user_items", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("title", sa.Text, nullable=False))


def downgrade():
    op.drop_table("user_items")
'''


def make_user_project(root: Path, url: str) -> Config:
    return make_project(root, url, USER_ENV, {"user_models.py": USER_MODELS, "versions/u1_items.py": USER_REVISION})


def test_composes_with_a_user_alembic_project(plain_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path / "proj"))
    cfg = make_user_project(tmp_path / "proj", plain_url)
    command.upgrade(cfg, "head")
    catalog.ensure_catalog(plain_url)
    with psycopg.connect(plain_url, autocommit=True) as conn:
        assert conn.execute("SELECT version_num FROM public.alembic_version").fetchall() == [("u1",)]
        assert catalog.current_revision(conn) == catalog.head_revision()
        # the user's autogenerate sees nothing to do: the catalog is in its own schema
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext
        from user_models import metadata  # type: ignore[import-not-found]

        engine = sqlalchemy.create_engine(catalog.sqlalchemy_url(plain_url))
        try:
            with engine.connect() as sa_conn:
                assert compare_metadata(MigrationContext.configure(sa_conn), metadata) == []
        finally:
            engine.dispose()
        # each lineage moves on its own
        command.downgrade(cfg, "base")
        assert conn.execute("SELECT count(*) FROM public.alembic_version").fetchone()[0] == 0
        assert catalog.current_revision(conn) == catalog.head_revision()
        catalog.downgrade(plain_url, "base")
        command.upgrade(cfg, "head")
        assert conn.execute("SELECT version_num FROM public.alembic_version").fetchall() == [("u1",)]
        assert catalog.current_revision(conn) is None
        assert tables(conn, "public") == {"alembic_version", "user_items"}


def test_lineage_runs_inside_a_user_environment_by_branch_label(plain_url: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Pattern 2: the user adds pgsieve's versions to ``version_locations``; ``pgsieve@head`` upgrades ours."""
    monkeypatch.syspath_prepend(str(tmp_path / "proj"))
    cfg = make_user_project(tmp_path / "proj", plain_url)
    cfg.set_main_option("path_separator", "os")
    import os

    cfg.set_main_option("version_locations", os.pathsep.join(
        [str(tmp_path / "proj" / "versions"), str(catalog.migrations_dir() / "versions")]))
    command.upgrade(cfg, "heads")
    with psycopg.connect(plain_url, autocommit=True) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT version_num FROM public.alembic_version")) == \
            [catalog.head_revision(), "u1"]
        assert tables(conn) == CATALOG_TABLES
        command.downgrade(cfg, "pgsieve@base")
        assert tables(conn) == set()
        assert [r[0] for r in conn.execute("SELECT version_num FROM public.alembic_version")] == ["u1"]
