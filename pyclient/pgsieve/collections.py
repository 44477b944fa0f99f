"""Collections: a table of documents with dense / binary / sparse / multivector fields, searched by pipelines.

::

    from pgsieve.collections import Collection, Field
    from pgsieve.encoders import DenseEncoder, BM25Encoder, LateInteractionEncoder

    coll = Collection.create(conn, "docs", fields=[
        Field.dense("dense", encoder=DenseEncoder()),
        Field.sparse("bm25", encoder=BM25Encoder()),
        Field.binary("bin", source="dense"),
        Field.multivector("colbert", encoder=LateInteractionEncoder(), fmt="int8"),
    ])                                           # mode="auto": pgsieve if the extension is there, else managed
    coll.add([{"id": "a", "text": "...", "metadata": {"lang": "en"}}, ...])
    hits = coll.search("create a directory", k=10, filter={"lang": "en"})   # Pipeline.default(coll)
    print(coll.explain("create a directory"))    # the one SQL statement it runs

A collection is recorded in pgsieve's catalog (``pgsieve_catalog.collections``: mode and field spec;
``pgsieve_catalog.encoders``: each field's encoder config), so :meth:`Collection.open` rebuilds it, encoders
included, in another process.  The table is ``<name>(id text PRIMARY KEY, text text, metadata jsonb, <fields>)``.

Two modes (:mod:`pgsieve.fields` has the storage table): ``pgsieve`` uses the extension's types and access
methods; ``managed`` runs the same pipelines on pgvector alone, for managed PostgreSQL that cannot load C
extensions, and lists what it gives up in :attr:`Collection.limitations` (also emitted as a warning).
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .fields import MANAGED_FDE, Field, FieldError, build_encoder
from .pipeline import Pipeline, PipelineError
from .pipeline_sql import MODES, SPARSE_HNSW_MAX_NNZ, Compiled, compile_pipeline, mv_array_type

__all__ = ["Collection", "Field", "Hit", "StageScore", "CollectionError", "ManagedModeWarning", "detect_mode"]


class CollectionError(ValueError):
    """A bad collection request (unknown collection, wrong mode, bad documents), raised before any SQL runs."""


class ManagedModeWarning(UserWarning):
    """A collection runs in managed mode (pgvector only) and gives something up; the message says what."""


@dataclass
class StageScore:
    """A hit's rank (1-based) and score in one stage of the pipeline."""

    rank: int
    score: float


@dataclass
class Hit:
    """One search result: ``score`` is the last stage's; ``stages`` holds every stage that saw the hit."""

    id: str
    score: float
    stages: dict[str, StageScore]
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def detect_mode(conn: psycopg.Connection[Any]) -> str:
    """``pgsieve`` when the extension is installed in the database, else ``managed`` (pgvector must be there)."""
    exts = {r[0] for r in conn.execute("SELECT extname FROM pg_catalog.pg_extension").fetchall()}
    if "vector" not in exts:
        raise CollectionError("pgvector is not installed in this database: CREATE EXTENSION vector "
                              "(collections need it in both modes)")
    return "pgsieve" if "pgsieve" in exts else "managed"


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


class Collection:
    """A collection bound to a connection (use :meth:`create` or :meth:`open`, not the constructor)."""

    def __init__(self, conn: psycopg.Connection[Any], name: str, fields: Sequence[Field], mode: str, *,
                 schema: str = "public") -> None:
        if mode not in MODES:
            raise CollectionError(f"mode must be one of {MODES}, got {mode!r}")
        self.conn = conn
        self.name = _check_name(name)
        self.mode = mode
        names = [f.name for f in fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FieldError(f"duplicate field names {dup}")
        if not fields:
            raise FieldError("a collection needs at least one field")
        self.fields: dict[str, Field] = {f.name: f for f in fields}
        for f in fields:
            if f.kind == "binary" and f.source is not None:
                src = self.fields.get(f.source)
                if src is None or src.kind != "dense":
                    raise FieldError(f"binary field {f.name!r}: source {f.source!r} is not a dense field of the "
                                     f"collection")
                if f.dim is not None and f.dim != src.dim:
                    raise FieldError(f"binary field {f.name!r}: dim {f.dim} differs from its source's {src.dim}")
                f.dim = src.dim
        self.schema = schema
        self.table = sql.Identifier(schema, self.name)
        self._fde_params: Any = None
        self._statements: dict[tuple[Any, ...], bytes] = {}  # Compiled.key -> rendered statement (execute)
        self.pgvector_version: tuple[int, ...] = (0, 8)  # read from the server by create() / open()

    # -- modes ----------------------------------------------------------------------
    @property
    def limitations(self) -> list[str]:
        """What managed mode gives up against pgsieve mode, per field (empty in pgsieve mode)."""
        out: list[str] = []
        if self.pgvector_version < (0, 8):
            out.append(f"pgvector {'.'.join(map(str, self.pgvector_version))} has no hnsw.iterative_scan: a filtered "
                       "HNSW gather may return fewer than k rows (pgvector 0.8 or later fixes this)")
        if self.mode != "managed":
            return out
        for f in self.fields.values():
            if f.kind == "binary":
                out.append(f"{f.name}: pgvector HNSW over binary_quantize() bits, then an exact re-rank of "
                           f"{f.oversample}× k rows in SQL; binary_scan's SIMD scan of every code and its asymmetric "
                           "middle stage are not available, and recall depends on hnsw.ef_search (≤ 1000)")
            elif f.kind == "sparse":
                out.append(f"{f.name}: pgvector HNSW indexes sparsevec rows with at most {SPARSE_HNSW_MAX_NNZ} "
                           "non-zeros; larger rows are scored by a sequential pass in every query, and the HNSW "
                           "graph is approximate (sparse_block's block-max pruning is not available)")
            elif f.kind == "multivector":
                out.append(f"{f.name}: tokens stored as {mv_array_type(f)}({f.dim})[] "
                           f"({'int8 codes are not available: half precision, 2 bytes/element' if f.fmt == 'int8' else 'no multivec type'}); "
                           "MaxSim is computed in SQL (unnest + max per query token), several times slower than "
                           "maxsim()/maxsim_rerank" +
                           (f"; the gather uses a {MANAGED_FDE['final_dim']}-d MUVERA FDE column with HNSW "
                            f"(pgvector's 2,000-dimension limit) instead of multivec_fde's 10,240-bit FDE codes"
                            if f.index else ""))
        return out

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(cls, conn: psycopg.Connection[Any], name: str, fields: Sequence[Field], mode: str = "auto", *,
               exist_ok: bool = False) -> "Collection":
        """Create the table and its indexes and record the collection in the catalog.

        ``mode``: ``"auto"`` (pgsieve when ``CREATE EXTENSION pgsieve`` was run in this database, else managed),
        ``"pgsieve"`` or ``"managed"``.  ``exist_ok``: open an existing collection of that name instead of failing.
        """
        if mode not in ("auto",) + MODES:
            raise CollectionError(f"mode must be 'auto', 'pgsieve' or 'managed', got {mode!r}")
        name = _check_name(name)
        from .catalog import SCHEMA, ensure_catalog

        detected = detect_mode(conn)
        if mode == "pgsieve" and detected != "pgsieve":
            raise CollectionError("mode='pgsieve' needs the pgsieve extension in this database "
                                  "(CREATE EXTENSION pgsieve); use mode='managed' for pgvector only")
        real_mode = detected if mode == "auto" else mode
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        if schema is None:
            raise CollectionError("no schema to create the table in (the search_path names no existing schema)")
        coll = cls(conn, name, fields, real_mode, schema=schema)
        ensure_catalog(conn)
        with conn.transaction():
            row = conn.execute(sql.SQL("SELECT mode FROM {} WHERE name = %s FOR UPDATE").format(
                sql.Identifier(SCHEMA, "collections")), (name,)).fetchone()
            if row is not None:
                if exist_ok:
                    return cls.open(conn, name, encoders={f.name: f.encoder for f in fields if f.encoder})
                raise CollectionError(f"collection {name!r} already exists (Collection.open it, or exist_ok=True)")
            coll._create_table()
            try:
                default: Optional[dict[str, Any]] = Pipeline.default(coll).to_dict()
            except PipelineError:  # nothing a gather can read: the SQL function then needs a pipeline
                default = None
            spec = {"version": 1, "schema": schema, "fields": [f.to_dict() for f in coll.fields.values()],
                    "default_pipeline": default}
            conn.execute(sql.SQL("INSERT INTO {} (name, table_name, mode, spec) VALUES (%s, %s, %s, %s)").format(
                sql.Identifier(SCHEMA, "collections")), (name, name, coll.mode, Jsonb(spec)))
            for f in coll.fields.values():
                if f.config is not None:
                    conn.execute(sql.SQL("INSERT INTO {} (collection, field, kind, config) VALUES (%s, %s, %s, %s)"
                                         ).format(sql.Identifier(SCHEMA, "encoders")),
                                 (name, f.name, f.kind, Jsonb({"document": f.config, "query": f.query_config})))
        coll._after_open()
        return coll

    @classmethod
    def open(cls, conn: psycopg.Connection[Any], name: str, *,
             encoders: Optional[Mapping[str, Any]] = None) -> "Collection":
        """The collection ``name`` from the catalog; encoders are rebuilt from their configs unless given in
        ``encoders={field: encoder}`` (needed for encoders the catalog could not describe)."""
        from .catalog import SCHEMA, ensure_catalog

        name = _check_name(name)
        ensure_catalog(conn)
        row = conn.execute(sql.SQL("SELECT mode, spec FROM {} WHERE name = %s").format(
            sql.Identifier(SCHEMA, "collections")), (name,)).fetchone()
        if row is None:
            raise CollectionError(f"no collection {name!r} in this database's catalog")
        mode, spec = row
        if mode == "pgsieve" and detect_mode(conn) != "pgsieve":
            raise CollectionError(f"collection {name!r} was created in pgsieve mode but the pgsieve extension is "
                                  "not installed in this database")
        given = dict(encoders or {})
        fields = []
        for d in spec["fields"]:
            enc = given.get(d["name"])
            if enc is None and d.get("config") is not None:
                enc = build_encoder(d["config"])
            qenc = build_encoder(d["query_config"]) if d.get("query_config") else None
            fields.append(Field.from_dict(d, enc, qenc))
        coll = cls(conn, name, fields, mode, schema=spec.get("schema", "public"))
        coll._after_open()
        return coll

    def _after_open(self) -> None:
        row = self.conn.execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'").fetchone()
        if row is not None:
            self.pgvector_version = tuple(int(x) for x in row[0].split(".") if x.isdigit())
        if self.mode == "managed" and self.limitations:
            warnings.warn(f"collection {self.name!r} runs in managed mode (pgvector only): "
                          + "; ".join(self.limitations), ManagedModeWarning, stacklevel=3)
        self.refresh_stats()

    def refresh_stats(self) -> None:
        """Reload BM25 statistics (other writers' ingests) into the BM25 encoders."""
        from .encoders.bm25 import load_stats

        for f in self.fields.values():
            if _is_bm25(f.encoder):
                f.encoder.stats = load_stats(self.conn, self._stats_name(f))

    def _stats_name(self, f: Field) -> str:
        return f"{self.name}__{f.name}"[:50]

    def drop(self) -> None:
        """Drop the table, its catalog entry and its BM25 statistics."""
        from .catalog import SCHEMA

        with self.conn.transaction():
            self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.table))
            self.conn.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(
                sql.Identifier(SCHEMA, "collections")), (self.name,))
            for f in self.fields.values():
                if _is_bm25(f.encoder) or f.kind == "sparse":
                    from .encoders import bm25

                    drop = getattr(bm25, "drop_stats", None)
                    if drop is not None:
                        drop(self.conn, self._stats_name(f))

    # -- DDL --------------------------------------------------------------------------------
    def _columns(self) -> list[sql.Composable]:
        cols: list[sql.Composable] = [sql.SQL("id text PRIMARY KEY"), sql.SQL("text text NOT NULL"),
                                      sql.SQL("metadata jsonb NOT NULL DEFAULT '{}'::jsonb")]
        for f in self.fields.values():
            c, d = _ident(f.name), sql.Literal(f.dim)
            if f.kind == "dense" or (f.kind == "binary" and f.source is None):
                cols.append(sql.SQL("{} vector({})").format(c, d))
            elif f.kind == "sparse":
                cols.append(sql.SQL("{} sparsevec({})").format(c, d))
                if self.mode == "managed":
                    cols.append(sql.SQL("{} integer").format(_ident(f"{f.name}_nnz")))
            elif f.kind == "multivector":
                if self.mode == "pgsieve":
                    cols.append(sql.SQL("{} multivec({}, {})").format(c, d, sql.SQL(f.fmt)))
                else:
                    cols.append(sql.SQL("{} {}({})[]").format(c, sql.SQL(mv_array_type(f)), d))
                    if f.index:
                        cols.append(sql.SQL("{} vector({})").format(_ident(f"{f.name}_fde"),
                                                                   sql.Literal(MANAGED_FDE["final_dim"])))
        return cols

    def _index_name(self, suffix: str) -> sql.Identifier:
        return _ident(f"{self.name}_{suffix}"[:63])

    def _create_table(self) -> None:
        ex = self.conn.execute
        ex(sql.SQL("CREATE TABLE {} ({})").format(self.table, sql.SQL(", ").join(self._columns())))
        ex(sql.SQL("CREATE INDEX {} ON {} USING gin (metadata jsonb_path_ops)").format(
            self._index_name("metadata_idx"), self.table))
        for f in self.fields.values():
            c = _ident(f.name)
            if f.kind in ("dense", "sparse") or (f.kind == "binary" and f.source is None):
                ex(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STORAGE MAIN").format(self.table, c))
            if f.kind == "dense":
                ex(sql.SQL("CREATE INDEX {} ON {} USING hnsw ({} vector_cosine_ops)").format(
                    self._index_name(f"{f.name}_hnsw"), self.table, c))
            if self.mode != "managed":
                continue  # pgsieve's access methods learn from the data: built by the first add()
            if f.kind == "binary":
                ex(sql.SQL("CREATE INDEX {} ON {} USING hnsw ((binary_quantize({})::bit({})) bit_hamming_ops)").format(
                    self._index_name(f"{f.name}_hnsw"), self.table, _ident(f.source or f.name), sql.Literal(f.dim)))
            elif f.kind == "sparse":
                nnz = _ident(f"{f.name}_nnz")
                lim = sql.Literal(SPARSE_HNSW_MAX_NNZ)
                ex(sql.SQL("CREATE INDEX {} ON {} USING hnsw ({} sparsevec_ip_ops) WHERE {} <= {}").format(
                    self._index_name(f"{f.name}_hnsw"), self.table, c, nnz, lim))
                ex(sql.SQL("CREATE INDEX {} ON {} (id) WHERE {} > {}").format(
                    self._index_name(f"{f.name}_large"), self.table, nnz, lim))
            elif f.kind == "multivector" and f.index:
                ex(sql.SQL("CREATE INDEX {} ON {} USING hnsw ({} vector_ip_ops)").format(
                    self._index_name(f"{f.name}_fde_hnsw"), self.table, _ident(f"{f.name}_fde")))

    def _pgsieve_indexes(self) -> list[tuple[str, sql.Composable]]:
        """(index name, CREATE INDEX) for the pgsieve access-method indexes of this collection."""
        out = []
        for f in self.fields.values():
            if f.kind == "sparse":
                name = f"{self.name}_{f.name}_sblock"[:63]
                out.append((name, sql.SQL("CREATE INDEX {} ON {} USING sparse_block ({})").format(
                    _ident(name), self.table, _ident(f.name))))
            elif f.kind == "binary":
                name = f"{self.name}_{f.name}_bscan"[:63]
                out.append((name, sql.SQL(
                    "CREATE INDEX {} ON {} USING binary_scan (({}::halfvec({})) halfvec_cosine_ops)").format(
                    _ident(name), self.table, _ident(f.source or f.name), sql.Literal(f.dim))))
            elif f.kind == "multivector" and f.index:
                name = f"{self.name}_{f.name}_fde"[:63]
                out.append((name, sql.SQL("CREATE INDEX {} ON {} USING multivec_fde ({})").format(
                    _ident(name), self.table, _ident(f.name))))
        return out

    def _build_missing_indexes(self) -> None:
        if self.mode != "pgsieve":
            return
        for name, ddl in self._pgsieve_indexes():
            qualified = sql.Identifier(self.schema, name).as_string(self.conn)
            if self.conn.execute("SELECT to_regclass(%s)", (qualified,)).fetchone()[0] is None:
                self.conn.execute(ddl)

    def optimize(self) -> None:
        """REINDEX pgsieve's access-method indexes (folds rows added since the build into the clustered / learned
        structures) and ANALYZE; managed-mode HNSW indexes need nothing."""
        for name, _ in self._pgsieve_indexes():
            self.conn.execute(sql.SQL("REINDEX INDEX {}").format(sql.Identifier(self.schema, name)))
        self.conn.execute(sql.SQL("ANALYZE {}").format(self.table))

    # -- ingest ---------------------------------------------------------------------------------
    def add(self, docs: Iterable[Mapping[str, Any]], *, pool: Any = None, batch_size: int = 64,
            progress: bool = True, encode_ahead: int = 2) -> int:
        """Encode ``docs`` (``{"id": str, "text": str, "metadata": dict}``; id optional) and COPY them in.

        ``pool``: an :class:`~pgsieve.workers.EncoderPool` (or ``RemoteEncoder``) for the field whose encoder it
        runs, or ``{field: pool}``; pooled fields are encoded ``encode_ahead`` batches ahead in the worker processes
        while the current batch is copied (binary COPY).  BM25 fields are encoded here, after their batch is added
        to the statistics.  Everything goes in one transaction (a failure leaves the collection as it was); the
        first ``add`` of a pgsieve-mode collection builds the extension's indexes.  Returns documents written.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise CollectionError(f"batch_size must be a positive int, got {batch_size!r}")
        rows = _check_docs(docs)
        pooled = self._assign_pools(pool)
        for f in self.fields.values():
            if f.needs_encoder and f.encoder is None and f.name not in pooled:
                raise CollectionError(f"field {f.name!r} has no encoder: pass it to Collection.open(encoders=...) "
                                      "or pool={field: pool}")
        from tqdm.auto import tqdm

        from .adapters import register_pgsieve

        register_pgsieve(self.conn, require_extension=False)
        columns, types = self._copy_columns()
        copy_stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            self.table, sql.SQL(", ").join(sql.Identifier(c) for c in columns))
        batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        pending: deque[tuple[list[tuple[str, str, dict[str, Any]]], dict[str, Any]]] = deque()
        it = iter(batches)
        written = 0
        bar = tqdm(total=len(rows), disable=not progress, desc=f"add {self.name}", unit="doc")
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                while True:
                    while len(pending) <= encode_ahead:
                        b = next(it, None)
                        if b is None:
                            break
                        texts = [t for _, t, _ in b]
                        pending.append((b, {n: p.submit_documents(texts) for n, p in pooled.items()}))
                    if not pending:
                        break
                    batch, futs = pending.popleft()
                    values = self._encode_batch(batch, futs)
                    with cur.copy(copy_stmt) as cp:
                        cp.set_types(types)
                        for j, (doc_id, text, meta) in enumerate(batch):
                            cp.write_row([doc_id, text, Jsonb(meta)] + [v[j] for v in values])
                    written += len(batch)
                    bar.update(len(batch))
                self._build_missing_indexes()
        finally:
            bar.close()
            for _, futs in pending:
                for fut in futs.values():
                    fut.cancel()
        self.conn.execute(sql.SQL("ANALYZE {}").format(self.table))
        self.refresh_stats()
        return written

    def _assign_pools(self, pool: Any) -> dict[str, Any]:
        if pool is None:
            return {}
        model_fields = [f for f in self.fields.values() if f.needs_encoder and not _is_bm25(f.encoder)]
        if isinstance(pool, Mapping):
            unknown = sorted(set(pool) - {f.name for f in model_fields})
            if unknown:
                raise CollectionError(f"pool given for {unknown}: not model-encoded fields of {self.name!r} "
                                      f"(those are {[f.name for f in model_fields]})")
            return dict(pool)
        if not callable(getattr(pool, "submit_documents", None)):
            raise CollectionError("pool must be an EncoderPool / RemoteEncoder (with submit_documents) or "
                                  "{field: pool}")
        from .fields import encoder_config

        cfg = encoder_config(pool)
        match = [f for f in model_fields if cfg is not None and f.config is not None
                 and f.config.get("factory") == cfg.get("factory")]
        if len(match) != 1:
            match = model_fields if len(model_fields) == 1 else []
        if len(match) != 1:
            raise CollectionError(f"cannot tell which field the pool encodes (model fields: "
                                  f"{[f.name for f in model_fields]}); pass pool={{field: pool}}")
        return {match[0].name: pool}

    def _copy_columns(self) -> tuple[list[str], list[str]]:
        cols, types = ["id", "text", "metadata"], ["text", "text", "jsonb"]
        for f in self.fields.values():
            if f.kind == "dense" or (f.kind == "binary" and f.source is None):
                cols.append(f.name)
                types.append("vector")
            elif f.kind == "sparse":
                cols.append(f.name)
                types.append("sparsevec")
                if self.mode == "managed":
                    cols.append(f"{f.name}_nnz")
                    types.append("int4")
            elif f.kind == "multivector":
                cols.append(f.name)
                if self.mode == "pgsieve":
                    types.append("multivec")
                else:
                    types.append(f"{mv_array_type(f)}[]")
                    if f.index:
                        cols.append(f"{f.name}_fde")
                        types.append("vector")
        return cols, types

    def _encode_batch(self, batch: list[tuple[str, str, dict[str, Any]]], futs: Mapping[str, Any]) -> list[list[Any]]:
        """Column values (one list per COPY column after id/text/metadata) for ``batch``."""
        texts = [t for _, t, _ in batch]
        out: list[list[Any]] = []
        for f in self.fields.values():
            if not f.needs_encoder:
                continue
            if f.name in futs:
                vals = futs[f.name].result()
            elif _is_bm25(f.encoder):
                from .ingest import bm25_encode_with_stats

                vals = bm25_encode_with_stats(self.conn, self._stats_name(f), f.encoder, texts)
            else:
                vals = f.encoder.encode_documents(texts)
            out.extend(self._column_values(f, vals, len(batch)))
        return out

    def _column_values(self, f: Field, vals: Any, n: int) -> list[list[Any]]:
        if len(vals) != n:
            raise CollectionError(f"field {f.name!r}: the encoder returned {len(vals)} values for {n} documents")
        if f.kind in ("dense", "binary"):
            arr = np.asarray(vals, dtype=np.float32)
            if arr.ndim != 2 or arr.shape[1] != f.dim:
                raise CollectionError(f"field {f.name!r}: encoder output has shape {arr.shape}, expected (n, {f.dim})")
            if not np.isfinite(arr).all():
                raise CollectionError(f"field {f.name!r}: encoder output contains NaN or Inf")
            return [list(arr)]
        if f.kind == "sparse":
            for v in vals:
                if v.dimensions() != f.dim:
                    raise CollectionError(f"field {f.name!r}: sparse vector of {v.dimensions()} dimensions, "
                                          f"expected {f.dim}")
            cols = [list(vals)]
            if self.mode == "managed":
                cols.append([len(v.indices()) for v in vals])
            return cols
        toks = [np.asarray(t, dtype=np.float32) for t in vals]
        for t in toks:
            if t.ndim != 2 or t.shape[1] != f.dim:
                raise CollectionError(f"field {f.name!r}: token matrix of shape {t.shape}, expected (ntok, {f.dim})")
        if self.mode == "pgsieve":
            from .adapters import MultiVector

            return [[MultiVector(t, f.fmt) for t in toks]]
        from .fde import fde_documents

        cols = [[_token_list(t, f) for t in toks]]
        if f.index:
            cols.append(list(fde_documents(toks, self._fde()[f.dim])))
        return cols

    def _fde(self) -> dict[int, Any]:
        """Managed mode's MUVERA parameters (:data:`MANAGED_FDE`) per token dimension."""
        if self._fde_params is None:
            from .fde import FdeParams

            dims = {f.dim for f in self.fields.values() if f.kind == "multivector"}
            self._fde_params = {d: FdeParams(dim=d, **MANAGED_FDE) for d in dims}
        return self._fde_params

    # -- search -----------------------------------------------------------------------------------
    def compile(self, query: Union[str, Mapping[str, Any]], pipeline: Optional[Pipeline] = None, *, k: int = 10,
                filter: Optional[Mapping[str, Any]] = None) -> Compiled:
        """Validate the request, encode the query for the stages that need it, and build the statement.

        ``query``: the query text, or ``{field: encoded query}`` (a dense array, a SparseVector, a token matrix)
        to skip encoding.  Every check (fields, dimensions, k, filter) happens before any SQL is built.
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100_000:
            raise PipelineError(f"k must be an int in 1..100000, got {k!r}")
        if filter is not None:
            _json_object(filter, "filter", PipelineError)  # matched with metadata @> filter
        p = (pipeline if pipeline is not None else Pipeline.default(self))
        if not isinstance(p, Pipeline):
            raise PipelineError(f"pipeline must be a Pipeline, got {type(p).__name__}")
        p = p.check(self.fields)
        needed: set[str] = set()
        for g in p.gathers:
            f = self.fields[g.field]
            needed.add(f.source if f.kind == "binary" and f.source else f.name)
        if p.rerank is not None and p.rerank.field is not None:
            needed.add(p.rerank.field)
        queries = self._encode_query(query, needed)
        return compile_pipeline(self.table, self.mode, self.fields, p, k, queries, filter,
                                regclass=".".join('"' + x.replace('"', '""') + '"' for x in (self.schema, self.name)),
                                iterative_scan=self.pgvector_version >= (0, 8))

    def _encode_query(self, query: Union[str, Mapping[str, Any]], needed: set[str]) -> dict[str, Any]:
        if isinstance(query, str):
            if not query.strip():
                raise PipelineError("query text is empty")
            raw = {}
            for n in sorted(needed):
                f = self.fields[n]
                enc = f.query_encoder or f.encoder
                if enc is None:
                    raise PipelineError(f"field {n!r} has no encoder for the query; pass encoded queries "
                                        f"{{field: value}} or open the collection with encoders=")
                raw[n] = enc.encode_queries([query])[0]
        elif isinstance(query, Mapping):
            missing = sorted(needed - set(query))
            if missing:
                raise PipelineError(f"the pipeline reads fields {sorted(needed)}; no query value for {missing}")
            unknown = sorted(set(query) - set(self.fields))
            if unknown:
                raise PipelineError(f"query values for unknown fields {unknown}; the collection has "
                                    f"{sorted(self.fields)}")
            raw = {n: query[n] for n in needed}
        else:
            raise PipelineError(f"query must be a str or {{field: encoded query}}, got {type(query).__name__}")
        return {n: self._query_value(self.fields[n], v) for n, v in raw.items()}

    def _query_value(self, f: Field, v: Any) -> Any:
        from pgvector import SparseVector

        if f.kind in ("dense", "binary"):
            if isinstance(v, SparseVector):
                raise PipelineError(f"field {f.name!r} is {f.kind}: expected a dense vector, got a SparseVector")
            a = np.asarray(v, dtype=np.float32)
            if a.ndim != 1 or a.shape[0] != f.dim:
                raise PipelineError(f"field {f.name!r}: query vector has shape {a.shape}, expected ({f.dim},)")
            if not np.isfinite(a).all():
                raise PipelineError(f"field {f.name!r}: query vector contains NaN or Inf")
            return a
        if f.kind == "sparse":
            if not isinstance(v, SparseVector):
                raise PipelineError(f"field {f.name!r} is sparse: expected a pgvector SparseVector, "
                                    f"got {type(v).__name__}")
            if v.dimensions() != f.dim:
                raise PipelineError(f"field {f.name!r}: query has {v.dimensions()} dimensions, expected {f.dim}")
            return v
        t = np.asarray(v, dtype=np.float32)
        if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] != f.dim:
            raise PipelineError(f"field {f.name!r}: query tokens have shape {t.shape}, expected (ntok, {f.dim})")
        if not np.isfinite(t).all():
            raise PipelineError(f"field {f.name!r}: query tokens contain NaN or Inf")
        if self.mode == "pgsieve":
            return t
        from .fde import fde_query

        fde = fde_query(t, self._fde()[f.dim]) if f.index else None
        return (_token_list(t, f), fde)

    def query_json(self, query: str, pipeline: Optional[Pipeline] = None) -> dict[str, Any]:
        """The ``queries`` argument of the SQL function ``pgsieve_catalog.search`` for ``query``: each field the
        pipeline reads, encoded (dense: a list of floats; sparse: pgvector's text form; multivector: a list of
        token lists, plus ``<field>_fde`` in managed mode)."""
        p = (pipeline if pipeline is not None else Pipeline.default(self)).check(self.fields)
        needed = {self.fields[g.field].source or g.field for g in p.gathers}
        if p.rerank is not None and p.rerank.field is not None:
            needed.add(p.rerank.field)
        out: dict[str, Any] = {}
        for n, v in self._encode_query(query, needed).items():
            f = self.fields[n]
            if f.kind == "sparse":
                out[n] = v.to_text()
            elif f.kind == "multivector" and self.mode == "managed":
                tokens, fde = v
                out[n] = [t.to_list() for t in tokens]
                if fde is not None:
                    out[f"{n}_fde"] = [float(x) for x in fde]
            else:
                out[n] = np.asarray(v, dtype=np.float32).tolist()
        return out

    def search(self, query: Union[str, Mapping[str, Any]], pipeline: Optional[Pipeline] = None, *, k: int = 10,
               filter: Optional[Mapping[str, Any]] = None) -> list[Hit]:
        """Run the pipeline (default :meth:`Pipeline.default`) as one SQL statement; the best ``k`` hits."""
        c = self.compile(query, pipeline, k=k, filter=filter)
        rows = self.execute(c)
        return [Hit(str(r[0]), float(r[1]) if r[1] is not None else float("nan"),
                    {s: StageScore(int(v["rank"]), float(v["score"]) if v["score"] is not None else float("nan"))
                     for s, v in r[2].items()}, r[3], r[4]) for r in rows]

    def execute(self, c: Compiled) -> list[tuple[Any, ...]]:
        """Run a compiled statement with its SET LOCALs in one transaction; the raw rows.

        The statement is a server-side prepared statement (unless the connection turned prepared
        statements off with ``prepare_threshold=None``, e.g. behind a transaction-mode pooler).  Without a
        metadata filter it runs on the generic plan (``plan_cache_mode = force_generic_plan``): the plan
        of a pipeline does not depend on its query vectors, and planning the statement's CTEs anew costs
        about as much as a gather stage.  With a filter each execution is planned for its filter's
        selectivity.  The statement's text is rendered once per ``Compiled.key`` (per pipeline shape) and
        the SET LOCALs go in one round trip.
        """
        from .adapters import register_pgsieve

        if self.conn.adapters.types.get("vector") is None:
            register_pgsieve(self.conn, require_extension=False)
        prepare = self.conn.prepare_threshold is not None
        t0 = time.perf_counter()
        text = self._statements.get(c.key) if c.key is not None else None
        if text is None:
            text = c.statement.as_bytes(self.conn)
            if c.key is not None:
                if len(self._statements) >= 256:
                    self._statements.clear()
                self._statements[c.key] = text
        render_s = time.perf_counter() - t0
        settings = dict(c.settings)
        if prepare and not c.filtered:
            settings["plan_cache_mode"] = "force_generic_plan"
        with self.conn.transaction(), self.conn.cursor() as cur:
            if settings:
                cur.execute(sql.SQL("; ").join(
                    sql.SQL("SET LOCAL {} = {}").format(sql.SQL(name), sql.Literal(value))
                    for name, value in settings.items()))
            t1 = time.perf_counter()
            rows = cur.execute(text, c.params, prepare=prepare).fetchall()
            # the statement's round trip and its rendering (not BEGIN, the SET LOCALs and COMMIT)
            self.last_ms = (time.perf_counter() - t1 + render_s) * 1000.0
        return rows

    def explain(self, query: Union[str, Mapping[str, Any]], pipeline: Optional[Pipeline] = None, *, k: int = 10,
                filter: Optional[Mapping[str, Any]] = None) -> str:
        """The SET LOCALs and the single SQL statement ``search`` runs, with its parameters listed."""
        return self.compile(query, pipeline, k=k, filter=filter).text(self.conn)

    def __len__(self) -> int:
        return int(self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.table)).fetchone()[0])

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, mode={self.mode!r}, fields={list(self.fields)})"


def _token_list(t: np.ndarray, f: Field) -> list[Any]:
    from pgvector import HalfVector, Vector

    return [Vector(row) for row in t] if mv_array_type(f) == "vector" else [HalfVector(row) for row in t]


def _is_bm25(enc: Any) -> bool:
    return type(enc).__name__ == "BM25Encoder" and hasattr(enc, "stats")


def _check_name(name: Any) -> str:
    import re

    if not isinstance(name, str) or not re.match(r"^[a-z_][a-z0-9_]{0,39}$", name):
        raise CollectionError(f"collection name {name!r} must match [a-z_][a-z0-9_]* (at most 40 characters)")
    return name


def _json_object(value: Any, what: str, exc: type[Exception]) -> dict[str, Any]:
    """``value`` as a dict that serializes to a JSON object, else ``exc`` naming ``what``."""
    if not isinstance(value, Mapping):
        raise exc(f"{what} must be a dict, got {type(value).__name__}")
    try:
        json.dumps(dict(value))
    except (TypeError, ValueError) as e:
        raise exc(f"{what} must be JSON-serializable: {e}") from None
    return dict(value)


def _check_docs(docs: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    if isinstance(docs, (str, bytes, Mapping)):
        raise CollectionError("docs must be an iterable of {'id', 'text', 'metadata'} dicts")
    out: list[tuple[str, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for i, d in enumerate(docs):
        if not isinstance(d, Mapping):
            raise CollectionError(f"docs[{i}] is {type(d).__name__}, expected a dict with 'text'")
        extra = sorted(set(d) - {"id", "text", "metadata"})
        if extra:
            raise CollectionError(f"docs[{i}] has unknown keys {extra} (known: id, text, metadata)")
        text = d.get("text")
        if not isinstance(text, str):
            raise CollectionError(f"docs[{i}]['text'] must be a str, got {type(text).__name__}")
        doc_id = d.get("id")
        if doc_id is None:
            doc_id = uuid.uuid4().hex
        elif not isinstance(doc_id, str) or not doc_id:
            raise CollectionError(f"docs[{i}]['id'] must be a non-empty str, got {doc_id!r}")
        if doc_id in seen:
            raise CollectionError(f"docs[{i}]: duplicate id {doc_id!r}")
        seen.add(doc_id)
        meta = _json_object(d.get("metadata") or {}, f"docs[{i}]['metadata']", CollectionError)
        out.append((doc_id, text, meta))
    return out
