"""pgsieve catalog: collections, encoder configurations, BM25 corpus statistics

Revision ID: pgsieve_0001
Revises:
Create Date: 2026-11-28

* ``collections``: one row per collection; ``spec`` is its declaration (fields, dimensions, metrics, encoder
  references) as written by ``pgsieve.collections``; ``table_name`` is the table holding its rows; ``mode`` is
  ``pgsieve`` (pgsieve's types and access methods) or ``managed`` (pgvector only).
* ``encoders``: the encoder of one field of a collection (model path, parameters, seeds), dropped with it.
* ``bm25_corpus`` / ``bm25_df``: BM25 statistics per statistics name (``pgsieve.encoders.bm25``): document
  count and total length, and document frequency per term id; kept as additive counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "pgsieve_0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = ("pgsieve",)
depends_on: Union[str, Sequence[str], None] = None

SCHEMA = "pgsieve_catalog"
_NOW = sa.text("now()")


def upgrade() -> None:
    # pgsieve's own environment creates the schema before its version table; this is for users who run the
    # lineage from their own environment (version_locations + the "pgsieve" branch label)
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    op.create_table(
        "collections",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("created_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("name", name="collections_pkey"),
        sa.UniqueConstraint("table_name", name="collections_table_name_key"),
        sa.CheckConstraint("mode IN ('pgsieve', 'managed')", name="collections_mode_check"),
        schema=SCHEMA,
    )
    op.create_table(
        "encoders",
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("config", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("collection", "field", name="encoders_pkey"),
        sa.ForeignKeyConstraint(["collection"], [f"{SCHEMA}.collections.name"], ondelete="CASCADE",
                                onupdate="CASCADE", name="encoders_collection_fkey"),
        schema=SCHEMA,
    )
    op.create_table(
        "bm25_corpus",
        sa.Column("stats", sa.Text, nullable=False),
        sa.Column("n_docs", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("total_len", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("stats", name="bm25_corpus_pkey"),
        schema=SCHEMA,
    )
    op.create_table(
        "bm25_df",
        sa.Column("stats", sa.Text, nullable=False),
        sa.Column("term", sa.Integer, nullable=False),
        sa.Column("df", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("stats", "term", name="bm25_df_pkey"),
        sa.ForeignKeyConstraint(["stats"], [f"{SCHEMA}.bm25_corpus.stats"], ondelete="CASCADE",
                                name="bm25_df_stats_fkey"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("bm25_df", "bm25_corpus", "encoders", "collections"):
        op.drop_table(table, schema=SCHEMA)
