"""pgsieve's catalog in the database, and the Alembic lineage that creates and upgrades it.

The catalog lives in schema ``pgsieve_catalog`` (tables ``collections``, ``encoders``, ``bm25_corpus``,
``bm25_df``; see ``pgsieve/migrations/versions/``).  Its migrations are an Alembic lineage of their own, shipped
inside the package (``pgsieve/migrations``) with their own version table,
``pgsieve_catalog.pgsieve_alembic_version``, so they never touch a user's ``alembic_version`` and never create a
second head in a user's Alembic project.

* :func:`ensure_catalog` brings a database to the newest revision; idempotent and safe to call from many
  processes at once (a transaction-level advisory lock serializes the upgraders; the ones that wait find the
  work done).  Call it before reading or writing catalog tables.
* :func:`current_revision` / :func:`head_revision` say where a database is and where the package is.
* :func:`upgrade` / :func:`downgrade` move to any revision (``pgsieve migrate`` on the command line).

Every function that takes a database accepts a URL (``postgresql://...``; the psycopg 3 driver is used), an
SQLAlchemy ``Engine`` or ``Connection``, or a psycopg ``Connection``.  A psycopg connection is used as it is,
inside ``conn.transaction()`` (a savepoint when the caller has a transaction open), so the migration commits or
rolls back with the caller's work; an SQLAlchemy connection already in a transaction is left for the caller to
commit.  Nothing needs the pgsieve extension: the catalog is plain tables, so managed-mode collections (pgvector
only, or no extension at all) use it too.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import psycopg
from psycopg.rows import tuple_row

__all__ = [
    "SCHEMA",
    "VERSION_TABLE",
    "BRANCH_LABEL",
    "LOCK_KEY",
    "CatalogTarget",
    "migrations_dir",
    "alembic_config",
    "sqlalchemy_url",
    "head_revision",
    "current_revision",
    "ensure_catalog",
    "upgrade",
    "downgrade",
    "history",
    "main",
]

#: schema of every catalog table and of the lineage's version table
SCHEMA = "pgsieve_catalog"
#: Alembic version table of pgsieve's lineage (in :data:`SCHEMA`)
VERSION_TABLE = "pgsieve_alembic_version"
#: branch label of the lineage's base revision (for users who add it to their own ``version_locations``)
BRANCH_LABEL = "pgsieve"
#: key of the transaction-level advisory lock held while migrating ('pgsieve' in ASCII)
LOCK_KEY = 0x70677369657665

if TYPE_CHECKING:  # SQLAlchemy is imported only when a function needs it
    import sqlalchemy

CatalogTarget = Union[str, "sqlalchemy.engine.URL", "sqlalchemy.Engine", "sqlalchemy.Connection",
                      psycopg.Connection]


def migrations_dir() -> Path:
    """The lineage's Alembic script directory inside the installed package (``env.py``, ``versions/``)."""
    return Path(__file__).resolve().with_name("migrations")


def alembic_config(connection: Any = None) -> Any:
    """An ``alembic.config.Config`` for pgsieve's lineage; ``connection`` (SQLAlchemy) is handed to ``env.py``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def sqlalchemy_url(url: Any) -> Any:
    """``url`` with the psycopg 3 driver: ``postgresql://`` / ``postgres://`` -> ``postgresql+psycopg://``."""
    from sqlalchemy.engine import make_url

    u = make_url(str(url) if not hasattr(url, "drivername") else url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif not u.drivername.startswith("postgresql"):
        raise ValueError(f"pgsieve's catalog needs a PostgreSQL URL, got driver {u.drivername!r}")
    return u


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """Newest revision of the lineage shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "pgsieve's migration lineage has no revisions"
    return head


# ---------------------------------------------------------------------------------------------------------------
# connections

class _BorrowedConnection:
    """A psycopg connection lent to SQLAlchemy: transaction control and closing stay with its owner.

    SQLAlchemy commits, rolls back and closes the DBAPI connections of its pool; here those are no-ops, and the
    owner's ``conn.transaction()`` block decides.  Cursors always return tuples (SQLAlchemy's expectation), even
    when the owner set a dict row factory.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("row_factory", tuple_row)
        return self._conn.cursor(*args, **kwargs)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def _engine_connection(url: Any, **kwargs: Any) -> Iterator[Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool, **kwargs)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def _transaction(target: CatalogTarget) -> Iterator[Any]:
    """An SQLAlchemy connection in a transaction on ``target``; committed on success unless the caller owns it."""
    import sqlalchemy

    if isinstance(target, sqlalchemy.Connection):
        if target.in_transaction():
            yield target
        else:
            with target.begin():
                yield target
    elif isinstance(target, sqlalchemy.Engine):
        with target.begin() as conn:
            yield conn
    elif isinstance(target, psycopg.Connection):
        with target.transaction():
            borrowed = _BorrowedConnection(target)
            # no hstore lookup: psycopg's TypeInfo.fetch insists on a real Connection
            with _engine_connection("postgresql+psycopg://", creator=lambda: borrowed,
                                    use_native_hstore=False) as conn:
                yield conn
    elif isinstance(target, str) or hasattr(target, "drivername"):
        with _engine_connection(sqlalchemy_url(target)) as conn:
            yield conn
    else:
        raise TypeError("expected a database URL, an SQLAlchemy Engine or Connection, or a psycopg Connection; "
                        f"got {type(target).__name__}")


def _lock(conn: Any) -> None:
    """Serialize migrations of this database until the end of the transaction."""
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")


_CURRENT_SQL = (f"SELECT to_regclass('{SCHEMA}.{VERSION_TABLE}') IS NOT NULL",
                f"SELECT version_num FROM {SCHEMA}.{VERSION_TABLE}")


def current_revision(target: CatalogTarget) -> Optional[str]:
    """Revision the database's catalog is at; ``None`` when the lineage was never applied (or is at base).

    Read-only: on a psycopg connection it runs two SELECTs on it as it is (inside the caller's transaction, if
    one is open); otherwise it opens and closes its own transaction.
    """
    if isinstance(target, psycopg.Connection):
        with target.cursor(row_factory=tuple_row) as cur:
            return _read_current(lambda q: cur.execute(q).fetchall())
    import sqlalchemy

    if isinstance(target, sqlalchemy.Connection) and target.in_transaction():
        return _read_current(lambda q: target.exec_driver_sql(q).fetchall())
    with _transaction(target) as conn:
        return _read_current(lambda q: conn.exec_driver_sql(q).fetchall())


def _read_current(query: Any) -> Optional[str]:
    exists_sql, version_sql = _CURRENT_SQL
    if not query(exists_sql)[0][0]:
        return None
    rows = query(version_sql)
    if len(rows) > 1:  # only a foreign writer can do this: the lineage is linear
        raise RuntimeError(f"{SCHEMA}.{VERSION_TABLE} holds several revisions: {sorted(r[0] for r in rows)}")
    return rows[0][0] if rows else None


# ---------------------------------------------------------------------------------------------------------------
# upgrade / downgrade

def ensure_catalog(target: CatalogTarget) -> str:
    """Upgrade the catalog to :func:`head_revision` if it is not there yet; returns the head revision.

    Cheap when nothing is to do (one catalog lookup and one SELECT).  Otherwise it takes the advisory lock
    :data:`LOCK_KEY` for the transaction, looks again (another process may have just finished) and upgrades.
    A database whose catalog is *newer* than this package (a later pgsieve migrated it) is left alone with a
    clear error, rather than silently used with an unknown layout.
    """
    head = head_revision()
    current = current_revision(target)
    if current == head:
        return head
    _check_known(current)
    with _transaction(target) as conn:
        _lock(conn)
        current = current_revision(conn)
        if current != head:
            _check_known(current)
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
    return head


def _check_known(revision: Optional[str]) -> None:
    if revision is None:
        return
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        raise RuntimeError(f"the database's pgsieve catalog is at revision {revision!r}, which this pgsieve "
                           f"(head {head_revision()!r}) does not know: it was migrated by a newer pgsieve; "
                           "upgrade the pgsieve package") from None


def upgrade(target: CatalogTarget, revision: str = "head") -> Optional[str]:
    """Upgrade the catalog to ``revision`` (default ``head``) under the advisory lock; returns the new revision."""
    return _migrate(target, "upgrade", revision)


def downgrade(target: CatalogTarget, revision: str) -> Optional[str]:
    """Downgrade the catalog to ``revision`` (``base`` drops every catalog table); returns the new revision.

    Downgrading below a revision drops what it added, data included (``base``: collections, encoder configs and
    BM25 statistics).  The schema and the version table stay.
    """
    return _migrate(target, "downgrade", revision)


def _migrate(target: CatalogTarget, direction: str, revision: str) -> Optional[str]:
    from alembic import command

    if not isinstance(revision, str) or not revision:
        raise ValueError(f"revision must be a non-empty string such as 'head', 'base' or '-1', got {revision!r}")
    with _transaction(target) as conn:
        _lock(conn)
        getattr(command, direction)(alembic_config(conn), revision)
        return current_revision(conn)


def history() -> list[tuple[Optional[str], str, str]]:
    """The lineage, oldest first: ``(down_revision, revision, message)`` per revision."""
    from alembic.script import ScriptDirectory

    scripts = list(ScriptDirectory.from_config(alembic_config()).walk_revisions("base", "heads"))
    return [(s.down_revision if isinstance(s.down_revision, (str, type(None))) else ",".join(s.down_revision),
             s.revision, s.doc) for s in reversed(scripts)]


# ---------------------------------------------------------------------------------------------------------------
# command line: pgsieve migrate

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgsieve migrate",
                                description="Create and upgrade pgsieve's catalog (schema pgsieve_catalog).")
    p.add_argument("action", nargs="?", default="upgrade", choices=["upgrade", "downgrade", "current", "history"],
                   help="default: upgrade")
    p.add_argument("revision", nargs="?",
                   help="target revision: upgrade default 'head'; downgrade needs one ('base', '-1', an id)")
    p.add_argument("--dsn", help="database URL (default: the embedded server's, see `pgsieve server url`)")
    p.add_argument("--data-dir", help="embedded server data directory, when --dsn is not given")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``pgsieve migrate [upgrade|downgrade|current|history] [REV] [--dsn URL]``; returns the exit status."""
    ns = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if ns.action == "history":
        head = head_revision()
        for down, rev, doc in history():
            print(f"{down or '<base>'} -> {rev}{' (head)' if rev == head else ''}, {doc}")
        return 0
    if ns.action == "downgrade" and not ns.revision:
        print("pgsieve migrate downgrade: give the target revision ('base', '-1' or an id)", file=sys.stderr)
        return 2
    if ns.action == "current" and ns.revision:
        print("pgsieve migrate current: takes no revision", file=sys.stderr)
        return 2
    dsn = ns.dsn
    if dsn is None:
        from . import server

        try:
            dsn = server.url(ns.data_dir)
        except server.ServerError as exc:
            print(f"pgsieve migrate: {exc} (or pass --dsn)", file=sys.stderr)
            return 1
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError

    try:
        if ns.action == "current":
            rev = current_revision(dsn)
            print(f"{rev or '<base>'}{' (head)' if rev == head_revision() else ''}")
            return 0
        if ns.action == "upgrade":
            rev = upgrade(dsn, ns.revision or "head")
        else:
            rev = downgrade(dsn, ns.revision)
    except (CommandError, RuntimeError, OperationalError, psycopg.OperationalError) as exc:
        print(f"pgsieve migrate {ns.action}: {exc}", file=sys.stderr)
        return 1
    print(f"pgsieve catalog at {rev or '<base>'}{' (head)' if rev == head_revision() else ''}")
    return 0
