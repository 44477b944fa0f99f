"""psycopg 3 adapters: one call registers every type pgsieve's SQL uses.

``register_pgsieve(conn)`` registers pgvector-python's adapters (``vector``,
``halfvec``, ``sparsevec``, ``bit``; numpy arrays dump as ``vector``) and then
pgsieve's own types, listed in ``PGSIEVE_TYPES``.  Every dumper gets the
server's ``oid`` so that binary COPY with ``copy.set_types([...])`` can find it
(psycopg matches binary dumpers by oid; pgvector-python uses the same trick).

Connection pools: registration is per connection, so do it in ``configure``::

    from psycopg_pool import ConnectionPool
    from pgsieve.adapters import register_pgsieve

    pool = ConnectionPool(url, configure=register_pgsieve, open=True)
    pool.wait()                       # fail fast if the server is down

    # async
    from psycopg_pool import AsyncConnectionPool
    from pgsieve.adapters import register_pgsieve_async
    apool = AsyncConnectionPool(url, configure=register_pgsieve_async, open=False)
    await apool.open()

Per-query knobs such as ``pgsieve.binary_rerank`` should be set with
``SET LOCAL`` inside a transaction (see ``pgsieve.search``), not in
``configure``, so they do not leak between pool users.

SQLAlchemy (psycopg 3 driver)::

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        register_pgsieve(dbapi_connection)

Adding a type (e.g. ``multivec``, planned): write a text and a binary
``Dumper``/``Loader`` pair (big-endian wire format, like pgvector's), then
append a ``PgsieveType`` to ``PGSIEVE_TYPES``::

    PgsieveType(
        name="multivec",
        python_types=(MultiVec,),            # value class from pgsieve.types
        text_dumper=MultiVecDumper, binary_dumper=MultiVecBinaryDumper,
        text_loader=MultiVecLoader, binary_loader=MultiVecBinaryLoader,
        since="0.2",                          # skipped on older servers
    )

Types missing on the server (older extension version) are skipped, as
pgvector-python does for ``halfvec``; a type marked ``required=True`` raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.types import TypeInfo
from pgvector.psycopg import register_vector, register_vector_async

__all__ = [
    "PgsieveType",
    "PGSIEVE_TYPES",
    "Registration",
    "ExtensionMissingError",
    "register_pgsieve",
    "register_pgsieve_async",
]


class ExtensionMissingError(psycopg.ProgrammingError):
    """Raised when the database lacks an extension pgsieve needs."""


@dataclass(frozen=True)
class PgsieveType:
    """Everything needed to adapt one pgsieve SQL type in psycopg 3."""

    name: str
    python_types: tuple[Any, ...]  # classes (or "module.Class" strings) dumped as this type
    text_dumper: type[Dumper]
    text_loader: type[Loader]
    binary_dumper: Optional[type[Dumper]] = None
    binary_loader: Optional[type[Loader]] = None
    since: Optional[str] = None  # extension version that introduced the type (for messages)
    required: bool = False


#: pgsieve's own SQL types.  Empty for now: the first release only indexes
#: pgvector's types.  ``multivec`` is the next entry (see module docstring).
PGSIEVE_TYPES: tuple[PgsieveType, ...] = ()


@dataclass
class Registration:
    """What ``register_pgsieve`` found and registered on one connection."""

    extension_version: Optional[str]
    vector_version: Optional[str]
    types: dict[str, int] = field(default_factory=dict)  # SQL type name -> oid
    skipped: list[str] = field(default_factory=list)  # pgsieve types absent on the server


_EXT_SQL = (
    "SELECT extname, extversion FROM pg_catalog.pg_extension "
    "WHERE extname IN ('vector', 'pgsieve')"
)


def _check_extensions(versions: dict[str, str], require_extension: bool) -> None:
    """Raise a message that says what to run, rather than a bare 'type not found'."""
    if "vector" not in versions:
        raise ExtensionMissingError(
            "pgvector is not installed in this database: run CREATE EXTENSION vector "
            "(pgsieve requires it)"
        )
    if require_extension and "pgsieve" not in versions:
        raise ExtensionMissingError(
            "the pgsieve extension is not installed in this database: run "
            "CREATE EXTENSION pgsieve (or `pgsieve ext install` first), or pass "
            "require_extension=False to use pgvector types only"
        )


def _register_info(context: Any, spec: PgsieveType, info: TypeInfo) -> None:
    """Register dumpers (with oid, for COPY set_types) and loaders for one type."""
    info.register(context)
    adapters = context.adapters
    for base in (spec.text_dumper, spec.binary_dumper):
        if base is None:
            continue
        dumper = type(base.__name__, (base,), {"oid": info.oid})
        for py_type in spec.python_types:
            adapters.register_dumper(py_type, dumper)
    for loader in (spec.text_loader, spec.binary_loader):
        if loader is not None:
            adapters.register_loader(info.oid, loader)


def _finish(reg: Registration, spec: PgsieveType, info: Optional[TypeInfo], context: Any) -> None:
    if info is None:
        if spec.required:
            raise ExtensionMissingError(
                f"type {spec.name!r} not found; it needs pgsieve {spec.since or 'newer'} "
                f"(installed: {reg.extension_version}); run ALTER EXTENSION pgsieve UPDATE"
            )
        reg.skipped.append(spec.name)
        return
    _register_info(context, spec, info)
    reg.types[spec.name] = info.oid


def _pgvector_oids(context: Any, reg: Registration) -> None:
    for name in ("vector", "halfvec", "sparsevec", "bit"):
        info = context.adapters.types.get(name)
        if info is not None:
            reg.types[name] = info.oid


def register_pgsieve(conn: psycopg.Connection[Any], *, require_extension: bool = True) -> Registration:
    """Register pgvector's and pgsieve's types on ``conn`` (or a cursor).

    With ``require_extension=False`` only pgvector is required, which is the
    "managed Postgres without custom C" deployment: the same client code runs,
    without pgsieve's index methods.
    """
    connection = getattr(conn, "connection", conn)
    # inside transaction(): a pool's configure() must leave the connection idle
    with connection.transaction(), connection.cursor() as cur:
        versions = dict(cur.execute(_EXT_SQL).fetchall())
    _check_extensions(versions, require_extension)
    register_vector(conn)
    reg = Registration(versions.get("pgsieve"), versions.get("vector"))
    _pgvector_oids(conn, reg)
    for spec in PGSIEVE_TYPES:
        _finish(reg, spec, TypeInfo.fetch(connection, spec.name), conn)
    return reg


async def register_pgsieve_async(
    conn: psycopg.AsyncConnection[Any], *, require_extension: bool = True
) -> Registration:
    """Async twin of ``register_pgsieve`` (for ``AsyncConnectionPool(configure=...)``)."""
    connection = getattr(conn, "connection", conn)
    async with connection.transaction(), connection.cursor() as cur:
        await cur.execute(_EXT_SQL)
        versions = dict(await cur.fetchall())
    _check_extensions(versions, require_extension)
    await register_vector_async(conn)
    reg = Registration(versions.get("pgsieve"), versions.get("vector"))
    _pgvector_oids(conn, reg)
    for spec in PGSIEVE_TYPES:
        _finish(reg, spec, await TypeInfo.fetch(connection, spec.name), conn)
    return reg
