"""collections.updated_at and encoders.updated_at: when a declaration or encoder configuration last changed

Revision ID: pgsieve_0002
Revises: pgsieve_0001
Create Date: 2026-11-28

Writers that change ``spec`` or ``config`` set ``updated_at = now()``; readers (e.g. a worker caching encoder
configurations) compare it to decide whether to reload.  Existing rows get their ``created_at`` (collections)
or the migration time (encoders, which had no timestamp).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "pgsieve_0002"
down_revision: Union[str, Sequence[str], None] = "pgsieve_0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SCHEMA = "pgsieve_catalog"
_NOW = sa.text("now()")


def upgrade() -> None:
    op.add_column("collections", sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=True),
                  schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.collections SET updated_at = created_at")
    op.alter_column("collections", "updated_at", nullable=False, server_default=_NOW, schema=SCHEMA)
    op.add_column("encoders", sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False,
                                        server_default=_NOW), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("encoders", "updated_at", schema=SCHEMA)
    op.drop_column("collections", "updated_at", schema=SCHEMA)
