"""Alembic environment of pgsieve's catalog lineage (schema ``pgsieve_catalog``, own version table).

Driven by :mod:`pgsieve.catalog` (``ensure_catalog``, ``pgsieve migrate``), which hands in an SQLAlchemy
connection already in a transaction and holding the advisory lock.  Also usable from the ``alembic`` command
with the top-level ``migrations/alembic.ini`` of the source tree (``sqlalchemy.url``, or ``-x dsn=URL``), and
offline (``alembic ... upgrade head --sql``).
"""

from __future__ import annotations

from typing import Any

from alembic import context

from pgsieve.catalog import LOCK_KEY, SCHEMA, VERSION_TABLE, sqlalchemy_url

config = context.config
_OPTIONS: dict[str, Any] = {
    "version_table": VERSION_TABLE,
    "version_table_schema": SCHEMA,
    "target_metadata": None,
}


def _bootstrap(connection: Any) -> None:
    """The version table lives in the catalog schema, so the schema must exist before Alembic looks for it."""
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
    connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")


def _run(connection: Any) -> None:
    _bootstrap(connection)
    context.configure(connection=connection, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("dsn") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x dsn=postgresql://... or set sqlalchemy.url")
    return url


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # pgsieve.catalog: the caller owns the transaction
        _run(connection)
        return
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(sqlalchemy_url(_url()), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


def run_offline() -> None:
    context.configure(url=sqlalchemy_url(_url()), literal_binds=True, **_OPTIONS)
    context.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
