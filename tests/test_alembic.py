"""Alembic integration on a real server: a user project whose env.py plugs in ``pgsieve.alembic``; autogenerate
renders MULTIVEC and pgvector types with their imports; migrations with ``op.ensure_pgsieve_extension`` and
``op.create_pgsieve_index(concurrently=True)`` upgrade, downgrade to base and upgrade again; after the upgrade
autogenerate finds nothing to do; offline SQL; an invalid index left by an interrupted CONCURRENTLY build is
replaced."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import psycopg
import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from alembic import command  # noqa: E402
from alembic.autogenerate import compare_metadata, render_python_code  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402
from alembic.operations import Operations, ops  # noqa: E402
from alembic_project import make_project  # noqa: E402

import pgsieve.alembic as pa  # noqa: E402
from pgsieve.catalog import sqlalchemy_url  # noqa: E402

ENV = '''
import pgsieve.alembic
from alembic import context
from sqlalchemy import create_engine, pool

from shop_models import metadata

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
if context.is_offline_mode():
    context.configure(url=engine.url, target_metadata=metadata, literal_binds=True,
                      render_item=pgsieve.alembic.render_item, include_object=pgsieve.alembic.include_object,
                      process_revision_directives=pgsieve.alembic.rewriter, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_item=pgsieve.alembic.render_item, include_object=pgsieve.alembic.include_object,
                          process_revision_directives=pgsieve.alembic.rewriter, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
engine.dispose()
'''

MODELS = '''
import sqlalchemy as sa
from pgvector.sqlalchemy import SPARSEVEC, VECTOR

from pgsieve.sqlalchemy import MULTIVEC, sparse_block_index

metadata = sa.MetaData()
docs = sa.Table(
    "shop_docs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("emb", VECTOR(8)),
    sa.Column("sparse", SPARSEVEC(32)),
    sa.Column("tokens", MULTIVEC(4, "int8")),
)
sparse_block_index("shop_docs_sparse_idx", docs.c.sparse, n_postings=1000)
# shop_docs_tokens_idx (multivec_fde) is not in the model: a hand-written migration builds it CONCURRENTLY
'''

R1 = '''
"""pgsieve extension"""
from alembic import op

revision = "r1"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.ensure_pgsieve_extension()


def downgrade():
    op.drop_pgsieve_extension()
'''

R3 = '''
"""multivec index"""
from alembic import op

revision = "r3"
down_revision = "r2"
branch_labels = None
depends_on = None


def upgrade():
    op.create_pgsieve_index("shop_docs_tokens_idx", "shop_docs", "tokens", "multivec_fde", concurrently=True,
                            reps=4, ksim=3, dproj=4)


def downgrade():
    op.drop_pgsieve_index("shop_docs_tokens_idx", concurrently=True)
'''


@pytest.fixture
def project(plain_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    root = tmp_path / "shop"
    monkeypatch.syspath_prepend(str(root))
    cfg = make_project(root, plain_db_url, ENV, {"shop_models.py": MODELS, "versions/r1_ext.py": R1})
    yield cfg, root, plain_db_url
    sys.modules.pop("shop_models", None)


def indexes(conn: psycopg.Connection) -> dict[str, tuple[str, bool]]:
    rows = conn.execute("SELECT c.relname, a.amname, i.indisvalid FROM pg_index i "
                        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                        "WHERE i.indrelid = to_regclass('shop_docs') AND NOT i.indisprimary").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def extensions(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")}


def test_autogenerate_and_upgrade_downgrade(project: Any) -> None:
    cfg, root, url = project
    command.upgrade(cfg, "r1")
    with psycopg.connect(url, autocommit=True) as conn:
        assert extensions(conn) == {"vector", "pgsieve"}  # CASCADE brought pgvector

    # autogenerate against the model: the table with its types rendered with their imports, and the model's
    # sparse_block index as op.create_pgsieve_index (operator class written out) / op.drop_pgsieve_index
    command.revision(cfg, message="shop docs", autogenerate=True, rev_id="r2")
    r2 = next((root / "versions").glob("r2_*.py")).read_text()
    assert "import pgsieve.sqlalchemy" in r2 and "import pgvector.sqlalchemy" in r2 and "import pgsieve.alembic" in r2
    assert "pgsieve.sqlalchemy.MULTIVEC(dim=4, fmt='int8')" in r2
    assert "pgvector.sqlalchemy.VECTOR(dim=8)" in r2 and "pgvector.sqlalchemy.SPARSEVEC(dim=32)" in r2
    assert ("op.create_pgsieve_index('shop_docs_sparse_idx', 'shop_docs', 'sparse', 'sparse_block', "
            "opclass='sparsevec_ip_ops', n_postings=1000)") in r2
    assert "op.drop_pgsieve_index('shop_docs_sparse_idx')" in r2
    assert "op.create_index" not in r2 and "op.drop_index" not in r2
    (root / "versions" / "r3_indexes.py").write_text(R3)

    command.upgrade(cfg, "head")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                            "'shop_docs'::regclass AND attname = 'tokens'").fetchone()[0] == "multivec(4,int8)"
        assert indexes(conn) == {"shop_docs_sparse_idx": ("sparse_block", True),
                                 "shop_docs_tokens_idx": ("multivec_fde", True)}
        assert "reps=4" in conn.execute("SELECT array_to_string(reloptions, ',') FROM pg_class "
                                        "WHERE relname = 'shop_docs_tokens_idx'").fetchone()[0]

    # nothing left to autogenerate: types compare equal, the modeled index is there, the unmodeled one is kept
    from shop_models import metadata  # type: ignore[import-not-found]

    engine = sqlalchemy.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            mc = MigrationContext.configure(conn, opts={"include_object": pa.include_object})
            assert compare_metadata(mc, metadata) == []
    finally:
        engine.dispose()

    command.downgrade(cfg, "base")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('shop_docs')").fetchone()[0] is None
        assert extensions(conn) == {"vector"}
    command.upgrade(cfg, "head")
    with psycopg.connect(url, autocommit=True) as conn:
        assert set(indexes(conn)) == {"shop_docs_sparse_idx", "shop_docs_tokens_idx"}
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "r3"

    # offline: plain SQL, the CONCURRENTLY build outside the migration's transaction
    out = io.StringIO()
    with redirect_stdout(out):
        command.upgrade(cfg, "r1:r3", sql=True)
    script = out.getvalue()
    assert ("CREATE INDEX shop_docs_sparse_idx ON shop_docs USING sparse_block (sparse sparsevec_ip_ops) "
            "WITH (n_postings = 1000)") in script
    cic = script.index("CREATE INDEX CONCURRENTLY shop_docs_tokens_idx ON shop_docs USING multivec_fde "
                       "(tokens multivec_maxsim_ops) WITH (reps = 4, ksim = 3, dproj = 4)")
    assert script.rfind("COMMIT", 0, cic) > script.rfind("BEGIN", 0, cic)  # not inside a transaction


def test_render_item_falls_back_and_ops_render() -> None:
    class Ctx:
        imports: set[str] = set()

    assert pa.render_item("type", sqlalchemy.Integer(), Ctx()) is False
    assert pa.render_item("server_default", None, Ctx()) is False
    create = pa.CreatePgsieveIndexOp("i", "t", "emb", "binary_scan", opclass="vector_ip_ops", concurrently=True,
                                     quantizer="sign")
    code = render_python_code(ops.UpgradeOps(ops=[pa.EnsurePgsieveExtensionOp(version="0.1.0"), create,
                                                 create.reverse(), pa.DropPgsieveExtensionOp(cascade=True)]))
    assert "op.ensure_pgsieve_extension(version='0.1.0')" in code
    assert ("op.create_pgsieve_index('i', 't', 'emb', 'binary_scan', opclass='vector_ip_ops', concurrently=True, "
            "quantizer='sign')") in code
    assert "op.drop_pgsieve_index('i', concurrently=True)" in code
    assert "op.drop_pgsieve_extension(cascade=True)" in code
    assert create.ddl == ("CREATE INDEX CONCURRENTLY i ON t USING binary_scan (emb vector_ip_ops) "
                          "WITH (quantizer = sign)")
    with pytest.raises(ValueError, match="unknown multivec_fde option"):
        pa.CreatePgsieveIndexOp("i", "t", "c", "multivec_fde", repz=3)
    with pytest.raises(ValueError, match="cannot be reversed"):
        pa.DropPgsieveIndexOp("i").reverse()
    with pytest.raises(ValueError, match="version"):
        pa.EnsurePgsieveExtensionOp(version="")


def test_concurrently_replaces_an_invalid_index(plain_db_url: str) -> None:
    with psycopg.connect(plain_db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgsieve CASCADE")
        conn.execute("CREATE TABLE w (id int, sparse sparsevec(8))")
        conn.execute("INSERT INTO w VALUES (1, '{1:1,2:-1}/8'), (2, '{3:2}/8')")  # a negative weight
        with pytest.raises(psycopg.Error):
            conn.execute("CREATE INDEX CONCURRENTLY w_sparse_idx ON w USING sparse_block (sparse)")
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'w_sparse_idx'::regclass"
                            ).fetchone()[0] is False  # left behind, invalid
        conn.execute("UPDATE w SET sparse = '{1:1,2:1}/8' WHERE id = 1")
    engine = sqlalchemy.create_engine(sqlalchemy_url(plain_db_url))
    try:
        with engine.connect() as conn:
            op = Operations(MigrationContext.configure(conn))
            op.create_pgsieve_index("w_sparse_idx", "w", "sparse", "sparse_block", concurrently=True)
            conn.commit()
    finally:
        engine.dispose()
    with psycopg.connect(plain_db_url, autocommit=True) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'w_sparse_idx'::regclass"
                            ).fetchone()[0] is True
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT id FROM w ORDER BY sparse <#> '{1:1}/8' LIMIT 1"))
        assert "w_sparse_idx" in plan
