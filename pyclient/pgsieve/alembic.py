"""Alembic integration: migration operations for the pgsieve extension and its indexes, and autogenerate hooks.

In the user's ``env.py``::

    import pgsieve.alembic                      # registers op.ensure_pgsieve_extension, op.create_pgsieve_index, ...

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=pgsieve.alembic.render_item,        # MULTIVEC / VECTOR / SPARSEVEC ... with their imports
        include_object=pgsieve.alembic.include_object,  # pgsieve indexes: create only; catalog: never
        process_revision_directives=pgsieve.alembic.rewriter,  # op.create_index -> op.create_pgsieve_index
        transaction_per_migration=True,                 # needed by concurrently=True
    )

In a migration::

    def upgrade():
        op.ensure_pgsieve_extension()           # CREATE EXTENSION IF NOT EXISTS ... CASCADE + ALTER EXTENSION UPDATE
        op.add_column("docs", sa.Column("tokens", pgsieve.sqlalchemy.MULTIVEC(dim=128, fmt="int8")))
        op.create_pgsieve_index("docs_tokens_idx", "docs", "tokens", "multivec_fde", concurrently=True, reps=20)

    def downgrade():
        op.drop_pgsieve_index("docs_tokens_idx", concurrently=True)
        op.drop_column("docs", "tokens")

Why separate index operations: Alembic's ``op.create_index`` loses the operator class of expression indexes and
autogenerate keeps proposing to re-create opclass indexes (alembic #1603, #1327, #1285).
``op.create_pgsieve_index`` checks the access method, operator class and reloptions (the same checks as
:func:`pgsieve.sqlalchemy.pgsieve_index`) before any SQL runs, always writes the operator class out, and with
``concurrently=True`` runs ``CREATE INDEX CONCURRENTLY`` in ``autocommit_block()`` (dropping an invalid index
an interrupted earlier attempt left behind first).  Every operation emits plain SQL, so ``alembic upgrade
--sql`` works too.
"""

from __future__ import annotations

from typing import Any, Optional

from alembic.autogenerate import Rewriter, renderers
from alembic.operations import MigrateOperation, Operations, ops
from sqlalchemy import Column, MetaData, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from .catalog import SCHEMA as CATALOG_SCHEMA
from .sqlalchemy import ACCESS_METHODS, MULTIVEC, pgsieve_index

__all__ = [
    "EnsurePgsieveExtensionOp",
    "DropPgsieveExtensionOp",
    "CreatePgsieveIndexOp",
    "DropPgsieveIndexOp",
    "render_item",
    "include_object",
    "rewriter",
]

_DIALECT = postgresql.dialect()


def _quote(name: str) -> str:
    return _DIALECT.identifier_preparer.quote(name)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------------------------
# extension

@Operations.register_operation("ensure_pgsieve_extension")
class EnsurePgsieveExtensionOp(MigrateOperation):
    """``op.ensure_pgsieve_extension(version=None, schema=None)``: create the extension (and pgvector, CASCADE)
    if missing, then ``ALTER EXTENSION pgsieve UPDATE [TO version]`` (a no-op notice when already there).
    Needs a role allowed to create extensions (pgsieve and pgvector are not trusted)."""

    def __init__(self, version: Optional[str] = None, schema: Optional[str] = None) -> None:
        if version is not None and (not isinstance(version, str) or not version):
            raise ValueError(f"version must be a non-empty string such as '0.1.0', got {version!r}")
        self.version = version
        self.schema = schema

    @classmethod
    def ensure_pgsieve_extension(cls, operations: Operations, version: Optional[str] = None,
                                 schema: Optional[str] = None) -> None:
        operations.invoke(cls(version, schema))

    def reverse(self) -> "DropPgsieveExtensionOp":
        return DropPgsieveExtensionOp()

    def statements(self) -> list[str]:
        create = "CREATE EXTENSION IF NOT EXISTS pgsieve"
        if self.schema is not None:
            create += f" WITH SCHEMA {_quote(self.schema)}"
        if self.version is not None:
            create += f" VERSION {_literal(self.version)}"
        update = "ALTER EXTENSION pgsieve UPDATE"
        if self.version is not None:
            update += f" TO {_literal(self.version)}"
        return [create + " CASCADE", update]


@Operations.register_operation("drop_pgsieve_extension")
class DropPgsieveExtensionOp(MigrateOperation):
    """``op.drop_pgsieve_extension(cascade=False)``: ``DROP EXTENSION IF EXISTS pgsieve`` (pgvector stays).
    ``cascade=True`` also drops every column, index and function that uses pgsieve's types."""

    def __init__(self, cascade: bool = False) -> None:
        self.cascade = bool(cascade)

    @classmethod
    def drop_pgsieve_extension(cls, operations: Operations, cascade: bool = False) -> None:
        operations.invoke(cls(cascade))

    def reverse(self) -> EnsurePgsieveExtensionOp:
        return EnsurePgsieveExtensionOp()

    def statements(self) -> list[str]:
        return ["DROP EXTENSION IF EXISTS pgsieve" + (" CASCADE" if self.cascade else "")]


@Operations.implementation_for(EnsurePgsieveExtensionOp)
@Operations.implementation_for(DropPgsieveExtensionOp)
def _run_extension_op(operations: Operations, operation: Any) -> None:
    for statement in operation.statements():
        operations.execute(statement)


# ---------------------------------------------------------------------------------------------------------------
# indexes

@Operations.register_operation("create_pgsieve_index")
class CreatePgsieveIndexOp(MigrateOperation):
    """``op.create_pgsieve_index(index_name, table_name, column, method, opclass=None, schema=None,
    concurrently=False, if_not_exists=False, **reloptions)``; ``method``: binary_scan, sparse_block or
    multivec_fde; ``reloptions`` as in :data:`pgsieve.sqlalchemy.RELOPTIONS`."""

    def __init__(self, index_name: str, table_name: str, column: str, method: str, opclass: Optional[str] = None,
                 schema: Optional[str] = None, concurrently: bool = False, if_not_exists: bool = False,
                 **reloptions: Any) -> None:
        self.index_name = index_name
        self.table_name = table_name
        self.column = column
        self.method = method
        self.opclass = opclass
        self.schema = schema
        self.concurrently = bool(concurrently)
        self.if_not_exists = bool(if_not_exists)
        self.reloptions = reloptions
        self.ddl = self._ddl()  # checks method, opclass and reloptions now, before any SQL

    @classmethod
    def create_pgsieve_index(cls, operations: Operations, index_name: str, table_name: str, column: str,
                             method: str, opclass: Optional[str] = None, schema: Optional[str] = None,
                             concurrently: bool = False, if_not_exists: bool = False, **reloptions: Any) -> None:
        operations.invoke(cls(index_name, table_name, column, method, opclass, schema, concurrently,
                              if_not_exists, **reloptions))

    def reverse(self) -> "DropPgsieveIndexOp":
        return DropPgsieveIndexOp(self.index_name, schema=self.schema, concurrently=self.concurrently,
                                  _create=self)

    def _ddl(self) -> str:
        table = Table(self.table_name, MetaData(), Column(self.column), schema=self.schema)
        index = pgsieve_index(self.index_name, table.c[self.column], self.method, self.opclass,
                              concurrently=self.concurrently, **self.reloptions)
        return str(CreateIndex(index, if_not_exists=self.if_not_exists).compile(dialect=_DIALECT))

    def to_args(self) -> str:
        args = [repr(self.index_name), repr(self.table_name), repr(self.column), repr(self.method)]
        for key in ("opclass", "schema"):
            if getattr(self, key) is not None:
                args.append(f"{key}={getattr(self, key)!r}")
        for key in ("concurrently", "if_not_exists"):
            if getattr(self, key):
                args.append(f"{key}=True")
        args += [f"{k}={v!r}" for k, v in self.reloptions.items()]
        return ", ".join(args)


@Operations.register_operation("drop_pgsieve_index")
class DropPgsieveIndexOp(MigrateOperation):
    """``op.drop_pgsieve_index(index_name, schema=None, concurrently=False, if_exists=False)``."""

    def __init__(self, index_name: str, schema: Optional[str] = None, concurrently: bool = False,
                 if_exists: bool = False, _create: Optional[CreatePgsieveIndexOp] = None) -> None:
        self.index_name = index_name
        self.schema = schema
        self.concurrently = bool(concurrently)
        self.if_exists = bool(if_exists)
        self._create = _create

    @classmethod
    def drop_pgsieve_index(cls, operations: Operations, index_name: str, schema: Optional[str] = None,
                           concurrently: bool = False, if_exists: bool = False) -> None:
        operations.invoke(cls(index_name, schema, concurrently, if_exists))

    def reverse(self) -> CreatePgsieveIndexOp:
        if self._create is None:
            raise ValueError(f"drop_pgsieve_index({self.index_name!r}) cannot be reversed: it does not know how "
                             "the index was built; write create_pgsieve_index(...) in the downgrade")
        return self._create

    def qualified_name(self) -> str:
        name = _quote(self.index_name)
        return f"{_quote(self.schema)}.{name}" if self.schema else name

    def ddl(self) -> str:
        return ("DROP INDEX " + ("CONCURRENTLY " if self.concurrently else "")
                + ("IF EXISTS " if self.if_exists else "") + self.qualified_name())

    def to_args(self) -> str:
        args = [repr(self.index_name)]
        if self.schema is not None:
            args.append(f"schema={self.schema!r}")
        args += [f"{k}=True" for k in ("concurrently", "if_exists") if getattr(self, k)]
        return ", ".join(args)


def _invalid_index(operations: Operations, name: str, schema: Optional[str]) -> bool:
    """True when an index ``name`` exists but is invalid (an interrupted CREATE INDEX CONCURRENTLY)."""
    if operations.get_context().as_sql:
        return False  # offline: nothing to look at
    regclass = f"{_quote(schema)}.{_quote(name)}" if schema else _quote(name)
    row = operations.get_bind().exec_driver_sql(
        "SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%(name)s)",
        {"name": regclass}).first()
    return bool(row and row[0])


@Operations.implementation_for(CreatePgsieveIndexOp)
def _create_index(operations: Operations, operation: CreatePgsieveIndexOp) -> None:
    if not operation.concurrently:
        operations.execute(operation.ddl)
        return
    with operations.get_context().autocommit_block():
        if _invalid_index(operations, operation.index_name, operation.schema):
            operations.execute(DropPgsieveIndexOp(operation.index_name, operation.schema, True).ddl())
        operations.execute(operation.ddl)


@Operations.implementation_for(DropPgsieveIndexOp)
def _drop_index(operations: Operations, operation: DropPgsieveIndexOp) -> None:
    if not operation.concurrently:
        operations.execute(operation.ddl())
        return
    with operations.get_context().autocommit_block():
        operations.execute(operation.ddl())


# rendering of the operations, for autogenerate rewriters and comparators that emit them
@renderers.dispatch_for(EnsurePgsieveExtensionOp)
def _render_ensure(autogen_context: Any, op: EnsurePgsieveExtensionOp) -> str:
    autogen_context.imports.add("import pgsieve.alembic")
    args = [f"{k}={getattr(op, k)!r}" for k in ("version", "schema") if getattr(op, k) is not None]
    return f"op.ensure_pgsieve_extension({', '.join(args)})"


@renderers.dispatch_for(DropPgsieveExtensionOp)
def _render_drop_extension(autogen_context: Any, op: DropPgsieveExtensionOp) -> str:
    autogen_context.imports.add("import pgsieve.alembic")
    return f"op.drop_pgsieve_extension({'cascade=True' if op.cascade else ''})"


@renderers.dispatch_for(CreatePgsieveIndexOp)
def _render_create_index(autogen_context: Any, op: CreatePgsieveIndexOp) -> str:
    autogen_context.imports.add("import pgsieve.alembic")
    return f"op.create_pgsieve_index({op.to_args()})"


@renderers.dispatch_for(DropPgsieveIndexOp)
def _render_drop_index(autogen_context: Any, op: DropPgsieveIndexOp) -> str:
    autogen_context.imports.add("import pgsieve.alembic")
    return f"op.drop_pgsieve_index({op.to_args()})"


# ---------------------------------------------------------------------------------------------------------------
# autogenerate hooks

def render_item(type_: str, obj: Any, autogen_context: Any) -> Any:
    """``render_item`` hook: pgsieve's and pgvector's column types rendered with the import they need.

    ``MULTIVEC(dim=128, fmt='int8')`` -> ``pgsieve.sqlalchemy.MULTIVEC(dim=128, fmt='int8')`` plus ``import
    pgsieve.sqlalchemy``; pgvector's ``VECTOR`` / ``HALFVEC`` / ``SPARSEVEC`` / ``BIT`` ->
    ``pgvector.sqlalchemy.VECTOR(dim=384)`` plus ``import pgvector.sqlalchemy`` (without this, generated
    migrations fail with a NameError: Flask-Migrate #518).  Anything else: ``False`` (Alembic's default).
    Chain it from your own hook if you have one.
    """
    if type_ != "type":
        return False
    if isinstance(obj, MULTIVEC):
        autogen_context.imports.add("import pgsieve.sqlalchemy")
        return f"pgsieve.sqlalchemy.{obj!r}"
    cls = type(obj)
    if cls.__module__.startswith("pgvector.sqlalchemy"):
        import pgvector.sqlalchemy

        if getattr(pgvector.sqlalchemy, cls.__name__, None) is cls:
            autogen_context.imports.add("import pgvector.sqlalchemy")
            return f"pgvector.sqlalchemy.{obj!r}"
    return False


def include_object(obj: Any, name: Optional[str], type_: str, reflected: bool, compare_to: Any) -> bool:
    """``include_object`` hook: how autogenerate treats pgsieve's objects.

    * An index of the model using a pgsieve access method that the database lacks is **created** (with
      :data:`rewriter` as ``process_revision_directives`` it is written as ``op.create_pgsieve_index``).
    * One the database has is never compared (Alembic cannot compare their operator classes: alembic #1327)
      and never dropped when the model lacks it (pgsieve or another tool may have built it); drop it with
      ``op.drop_pgsieve_index``.
    * pgsieve's catalog (schema ``pgsieve_catalog``, migrated by ``pgsieve migrate``) is left alone.
    """
    if type_ == "index" and _index_method(obj) in ACCESS_METHODS:
        return not reflected and compare_to is None
    if type_ == "table" and getattr(obj, "schema", None) == CATALOG_SCHEMA:
        return False
    return True


def _index_method(index: Any) -> Optional[str]:
    options = getattr(index, "dialect_options", None)
    if options is None:
        return None
    return options["postgresql"].get("using")


def _index_kw(kw: dict[str, Any]) -> Optional[tuple[str, Any]]:
    method = kw.get("postgresql_using")
    return (method, kw) if method in ACCESS_METHODS else None


def _column_name(columns: Any) -> Optional[str]:
    if len(columns) != 1:
        return None
    col = columns[0]
    if isinstance(col, str):
        return col
    name = getattr(col, "name", None)
    return name if isinstance(name, str) and isinstance(col, Column) else None


#: ``process_revision_directives`` for autogenerate: ``op.create_index`` / ``op.drop_index`` of single-column
#: indexes using a pgsieve access method become ``op.create_pgsieve_index`` / ``op.drop_pgsieve_index`` (the
#: operator class written out, reloptions checked).  Chain with yours: ``rewriter.chain(your_rewriter)``.
rewriter = Rewriter()


@rewriter.rewrites(ops.CreateIndexOp)
def _rewrite_create_index(context: Any, revision: Any, op: ops.CreateIndexOp) -> Any:
    found = _index_kw(op.kw)
    column = _column_name(op.columns)
    if found is None or column is None or op.unique:
        return op
    method, kw = found
    opclass = (kw.get("postgresql_ops") or {}).get(column)
    return CreatePgsieveIndexOp(op.index_name, op.table_name, column, method, opclass, schema=op.schema,
                                concurrently=bool(kw.get("postgresql_concurrently")),
                                if_not_exists=bool(op.if_not_exists), **dict(kw.get("postgresql_with") or {}))


@rewriter.rewrites(ops.DropIndexOp)
def _rewrite_drop_index(context: Any, revision: Any, op: ops.DropIndexOp) -> Any:
    if _index_kw(op.kw) is None:
        return op
    create = op.reverse()
    rewritten = _rewrite_create_index(context, revision, create)
    if not isinstance(rewritten, CreatePgsieveIndexOp):
        return op
    return rewritten.reverse()
