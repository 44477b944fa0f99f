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

``multivec`` (pgsieve's late-interaction type) is adapted both ways:

* **dumping**: a :class:`MultiVector` (tokens + storage format), or a plain 2-D numpy array, is sent as
  ``multivec``: float32 arrays in the float32 wire format, float16 in float16, int8 arrays as int8 codes (scale 1
  per token unless a ``MultiVector`` carries scales).  1-D numpy arrays still go out as pgvector's ``vector``.
  Binary (the default for ``%s``) and text (``%t``) both work, and binary COPY does::

      with cur.copy("COPY docs (id, toks) FROM STDIN WITH (FORMAT BINARY)") as cp:
          cp.set_types(["int4", "multivec"])
          for i, toks in enumerate(token_matrices):        # float32 (ntok, dim) arrays
              cp.write_row((i, toks))                        # or MultiVector(toks, "int8")

  A column ``multivec(dim, int8)`` / ``(dim, float16)`` converts whatever format arrives, so float32 input is
  enough; quantizing on the client (``MultiVector(x, "int8")``, byte-identical to the server) sends 4x fewer
  bytes.  Ragged, empty, NaN/Inf, out-of-range and too large inputs are refused on the client with a
  ``ValueError`` saying what is wrong, before anything is sent.
* **loading**: a ``multivec`` result is a numpy array of shape ``(ntok, dim)``: ``float32`` for the float32
  format, ``float16`` for float16, and for int8 the codes times their per-token scales as ``float32`` (exactly
  the values the server's ``maxsim`` scores).  Text results (psycopg's default, ``binary=False``) are always
  ``float32``: the text form does not say the format, and it prints dequantized values.  To get the int8 codes
  and scales themselves, select ``multivec_send(col)`` (``bytea``) and decode it with
  ``MultiVector.from_binary``.

Adding a type: write a text and a binary ``Dumper``/``Loader`` pair (big-endian wire format, like pgvector's),
then append a ``PgsieveType`` to ``PGSIEVE_TYPES`` (see ``multivec`` below; ``register_extra`` adds adapters
that need the type's oid, such as the numpy dispatch).

Types missing on the server (older extension version) are skipped, as
pgvector-python does for ``halfvec``; a type marked ``required=True`` raises.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import psycopg
from psycopg.adapt import Dumper, Loader, PyFormat
from psycopg.pq import Format
from psycopg.types import TypeInfo
from pgvector.psycopg import register_vector, register_vector_async

__all__ = [
    "MultiVector",
    "MULTIVEC_FORMATS",
    "quantize_int8",
    "PgsieveType",
    "PGSIEVE_TYPES",
    "Registration",
    "ExtensionMissingError",
    "register_pgsieve",
    "register_pgsieve_async",
]


# ---------------------------------------------------------------------------------------------------------------
# multivec: the value class and its wire formats

#: storage formats of ``multivec``, by wire format code
MULTIVEC_FORMATS: tuple[str, ...] = ("float32", "float16", "int8")
MULTIVEC_MAX_TOKENS = 8192
MULTIVEC_MAX_DIM = 16000
_FMT_CODE = {name: i for i, name in enumerate(MULTIVEC_FORMATS)}
_HEADER = struct.Struct("!ihh")
_DTYPE_FORMAT = {np.dtype(np.float16): "float16", np.dtype(np.int8): "int8"}


def _token_rows(data: Any) -> np.ndarray:
    """A (ntok, dim) array from an array or a sequence of tokens; ragged input is a clear error."""
    if isinstance(data, np.ndarray):
        arr = data
    else:
        if isinstance(data, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"multivec tokens must be numbers, not {type(data).__name__}")
        try:
            rows = list(data)
        except TypeError:
            raise TypeError(f"multivec needs a 2-D array or a sequence of tokens, not {type(data).__name__}") \
                from None
        if rows and all(np.ndim(r) == 1 for r in rows):
            lens = [len(r) for r in rows]
            for t, n in enumerate(lens):
                if n != lens[0]:
                    raise ValueError(f"multivec tokens must all have the same dimensions: token 0 has {lens[0]}, "
                                     f"token {t} has {n}")
        try:
            arr = np.asarray(rows)
        except ValueError as exc:  # inhomogeneous nesting
            raise ValueError(f"multivec tokens must all have the same dimensions ({exc})") from None
    if arr.ndim != 2:
        hint = "; for one token use x[None, :]" if arr.ndim == 1 else ""
        raise ValueError(f"multivec needs a 2-D array of shape (ntok, dim), got {arr.ndim}-D shape "
                         f"{tuple(arr.shape)}{hint}")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"multivec elements must be real numbers, got dtype {arr.dtype}")
    ntok, dim = arr.shape
    if ntok < 1:
        raise ValueError("multivec must have at least one token")
    if dim < 1:
        raise ValueError("multivec must have at least 1 dimension")
    if ntok > MULTIVEC_MAX_TOKENS:
        raise ValueError(f"multivec cannot have more than {MULTIVEC_MAX_TOKENS} tokens, got {ntok}")
    if dim > MULTIVEC_MAX_DIM:
        raise ValueError(f"multivec cannot have more than {MULTIVEC_MAX_DIM} dimensions, got {dim}")
    return arr


def _check_finite(x: np.ndarray, what: str) -> None:
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        v = x[tuple(bad)]
        kind = "NaN" if np.isnan(v) else "infinite value"
        raise ValueError(f"{kind} not allowed in multivec ({what} at token {bad[0]}, dimension {bad[1]})")


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and per-token scales of ``x`` (ntok, dim), exactly as the server's ``multivec(dim, int8)`` and
    ``pgsieve.kernels.quantize_i8`` compute them (vectorized numpy): scale = max|x| / 127, code = rint(x / scale)
    clamped to ±127, all in float32; an all-zero token has scale 0."""
    x = np.asarray(x, dtype=np.float32)
    m = np.abs(x).max(axis=1)
    scales = (m / np.float32(127.0)).astype(np.float32)
    safe = np.where(scales == 0, np.float32(1.0), scales).astype(np.float32)
    codes = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int8)
    codes[scales == 0] = 0
    return codes, scales


class MultiVector:
    """A ``multivec`` value: ``ntok`` token vectors of ``dim`` elements in one storage format.

    ``MultiVector(data, format=None, scales=None)``

    * ``data``: a 2-D array (or a sequence of equal-length tokens), or another ``MultiVector``.
    * ``format``: ``"float32"``, ``"float16"`` or ``"int8"``; ``None`` = from the dtype (float16 -> float16, int8
      -> int8, anything else real -> float32).  A float input with ``format="int8"`` is quantized exactly like the
      server does (scale = max|x|/127 per token); ``"float16"`` rounds to nearest even (out of range is an error).
    * ``scales``: for int8 codes only, one float32 scale per token (finite, >= 0); default 1.0 (the codes are the
      values).

    ``.data`` holds the stored elements (float32, float16 or int8 codes), ``.scales`` the int8 scales (else
    ``None``); ``.to_numpy()`` the values (float32, float16, or codes x scales as float32).  Invalid input raises
    ``ValueError``/``TypeError`` here, on the client.
    """

    __slots__ = ("_data", "_scales", "_format")

    def __init__(self, data: Any, format: Optional[str] = None, scales: Any = None) -> None:
        if format is not None and format not in _FMT_CODE:
            raise ValueError(f"unknown multivec format {format!r}; expected one of {MULTIVEC_FORMATS}")
        if isinstance(data, MultiVector):
            if scales is not None:
                raise ValueError("scales cannot be given with a MultiVector")
            if format is None or format == data.format:
                self._data, self._scales, self._format = data._data, data._scales, data._format
                return
            data, scales = (data._data, data._scales)
        arr = _token_rows(data)
        src = "int8" if arr.dtype == np.int8 else _DTYPE_FORMAT.get(arr.dtype, "float32")
        if scales is not None and src != "int8":
            raise ValueError("scales are only for int8 codes (a numpy int8 array)")
        fmt = format or src
        if src == "int8":
            codes = np.ascontiguousarray(arr, dtype=np.int8)
            if (codes == -128).any():
                raise ValueError("multivec int8 codes must be between -127 and 127 (-128 is not allowed)")
            if scales is None:
                sc = np.ones(codes.shape[0], np.float32)
            else:
                sc = np.asarray(scales)
                if sc.dtype.kind not in "fiu":
                    raise TypeError(f"multivec int8 scales must be real numbers, got dtype {sc.dtype}")
                sc = np.ascontiguousarray(sc, dtype=np.float32)
                if sc.shape != (codes.shape[0],):
                    raise ValueError(f"multivec int8 scales must have one entry per token: {codes.shape[0]} "
                                     f"tokens, scales of shape {tuple(np.shape(scales))}")
                if not np.isfinite(sc).all() or (sc < 0).any():
                    raise ValueError("multivec int8 scales must be finite and non-negative")
                sc = np.where(sc == 0, np.float32(0.0), sc).astype(np.float32)   # no -0, as the server
            if fmt == "int8":
                self._data, self._scales, self._format = codes, sc, "int8"
                return
            arr = (codes.astype(np.float32) * sc[:, None]).astype(np.float32)
        if arr.dtype.kind == "f":
            _check_finite(arr, f"{arr.dtype} input")
        if fmt == "float32":
            with np.errstate(over="ignore"):
                x = np.ascontiguousarray(arr, dtype=np.float32)
            if arr.dtype != np.float32:
                _check_finite(x, "out of range for float32")
            self._data, self._scales, self._format = x, None, "float32"
        elif fmt == "float16":
            with np.errstate(over="ignore"):   # via float32, as the server converts what it receives
                h = np.ascontiguousarray(np.asarray(arr, dtype=np.float32), dtype=np.float16)
            if not np.isfinite(h).all():
                bad = np.argwhere(~np.isfinite(h))[0]
                raise ValueError(f"multivec value {float(arr[tuple(bad)])!r} is out of range for float16 "
                                 f"(token {bad[0]}, dimension {bad[1]})")
            self._data, self._scales, self._format = h, None, "float16"
        else:
            with np.errstate(over="ignore"):
                x = np.asarray(arr, dtype=np.float32)
            _check_finite(x, "out of range for float32")
            self._data, self._scales = quantize_int8(x)
            self._format = "int8"

    # -- accessors ----------------------------------------------------------------------------------------------
    @property
    def format(self) -> str:
        return self._format

    @property
    def data(self) -> np.ndarray:
        """The stored elements: float32, float16, or int8 codes (read-only view)."""
        v = self._data.view()
        v.flags.writeable = False
        return v

    @property
    def scales(self) -> Optional[np.ndarray]:
        if self._scales is None:
            return None
        v = self._scales.view()
        v.flags.writeable = False
        return v

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self._data.shape[0]), int(self._data.shape[1]))

    @property
    def ntok(self) -> int:
        return int(self._data.shape[0])

    @property
    def dim(self) -> int:
        return int(self._data.shape[1])

    def __len__(self) -> int:
        return self.ntok

    def to_numpy(self) -> np.ndarray:
        """The values: float32 (float32 and int8 formats; int8 = codes x scales) or float16, a new array."""
        if self._format == "int8":
            return (self._data.astype(np.float32) * self._scales[:, None]).astype(np.float32)
        return self._data.copy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.to_numpy()
        return a if dtype is None else a.astype(dtype)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MultiVector):
            return NotImplemented
        return (self._format == other._format and self.shape == other.shape
                and np.array_equal(self._data, other._data)
                and (self._scales is None or np.array_equal(self._scales, other._scales)))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MultiVector(ntok={self.ntok}, dim={self.dim}, format={self._format!r})"

    # -- wire formats -------------------------------------------------------------------------------------------
    def to_binary(self) -> bytes:
        """multivec_recv's input: int32 ntok, int16 dim, int16 format, [int8: ntok float4 scales], elements;
        network byte order."""
        head = _HEADER.pack(self.ntok, self.dim, _FMT_CODE[self._format])
        if self._format == "float32":
            return head + self._data.astype(">f4", copy=False).tobytes()
        if self._format == "float16":
            return head + self._data.astype(">f2", copy=False).tobytes()
        return head + self._scales.astype(">f4").tobytes() + self._data.tobytes()

    @classmethod
    def from_binary(cls, data: Any) -> "MultiVector":
        """Decode multivec_send's output (binary results, binary COPY, ``multivec_send(col)``)."""
        buf = bytes(data) if not isinstance(data, bytes) else data
        if len(buf) < _HEADER.size:
            raise ValueError(f"invalid binary multivec: {len(buf)} bytes, shorter than the 8-byte header")
        ntok, dim, code = _HEADER.unpack_from(buf)
        if not 0 <= code < len(MULTIVEC_FORMATS):
            raise ValueError(f"invalid binary multivec: unknown format code {code}")
        if ntok < 1 or dim < 1:
            raise ValueError(f"invalid binary multivec: {ntok} tokens of {dim} dimensions")
        fmt = MULTIVEC_FORMATS[code]
        n = ntok * dim
        need = _HEADER.size + {"float32": 4 * n, "float16": 2 * n, "int8": 4 * ntok + n}[fmt]
        if len(buf) != need:
            raise ValueError(f"invalid binary multivec: {ntok} tokens of {dim} dimensions in {fmt} need {need} "
                             f"bytes, got {len(buf)}")
        self = cls.__new__(cls)
        off = _HEADER.size
        if fmt == "float32":
            self._data = np.frombuffer(buf, ">f4", n, off).astype(np.float32).reshape(ntok, dim)
            self._scales = None
        elif fmt == "float16":
            self._data = np.frombuffer(buf, ">f2", n, off).astype(np.float16).reshape(ntok, dim)
            self._scales = None
        else:
            self._scales = np.frombuffer(buf, ">f4", ntok, off).astype(np.float32)
            self._data = np.frombuffer(buf, np.int8, n, off + 4 * ntok).reshape(ntok, dim).copy()
        self._format = fmt
        return self

    def to_text(self) -> str:
        """``[[x,...],...]`` with each value's exact decimal (float16/int8: the values they stand for).  The text
        form has no format: the server reads it as float32 (a typed column converts it)."""
        rows = self.to_numpy().tolist()   # widened to Python floats exactly
        return "[" + ",".join("[" + ",".join(map(repr, r)) + "]" for r in rows) + "]"

    @classmethod
    def from_text(cls, text: str) -> "MultiVector":
        """Parse multivec_out's text (float32)."""
        return cls(_parse_multivec_text(text), "float32")


_WS = re.compile(r"\s+")


def _parse_multivec_text(text: str) -> np.ndarray:
    s = _WS.sub("", text)
    if len(s) < 4 or not (s.startswith("[[") and s.endswith("]]")):
        raise ValueError(f"invalid multivec text: {text[:40]!r}")
    rows = s[2:-2].split("],[")
    try:
        flat = np.array(",".join(rows).split(","), dtype=np.float32)
    except ValueError:
        raise ValueError(f"invalid multivec text: {text[:40]!r}") from None
    ntok = len(rows)
    if flat.size % ntok or any(r.count(",") != rows[0].count(",") for r in rows):
        raise ValueError("invalid multivec text: tokens of different dimensions")
    return flat.reshape(ntok, -1)


def _as_multivector(obj: Any) -> MultiVector:
    return obj if isinstance(obj, MultiVector) else MultiVector(obj)


class MultiVecDumper(Dumper):
    """``MultiVector`` / 2-D array -> multivec text."""

    format = Format.TEXT

    def dump(self, obj: Any) -> bytes:
        return _as_multivector(obj).to_text().encode("ascii")


class MultiVecBinaryDumper(Dumper):
    """``MultiVector`` / 2-D array -> multivec binary (also what binary COPY with ``set_types`` uses)."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return _as_multivector(obj).to_binary()


class MultiVecLoader(Loader):
    """multivec text -> float32 numpy array (ntok, dim)."""

    format = Format.TEXT

    def load(self, data: Any) -> np.ndarray:
        if isinstance(data, memoryview):
            data = data.tobytes()
        return _parse_multivec_text(bytes(data).decode("ascii"))


class MultiVecBinaryLoader(Loader):
    """multivec binary -> numpy array: float32, float16, or (int8) codes x scales as float32."""

    format = Format.BINARY

    def load(self, data: Any) -> np.ndarray:
        return MultiVector.from_binary(data).to_numpy()


_MULTIVEC_KEY = ("pgsieve", "multivec")


def _register_ndarray_dispatch(context: Any, info: TypeInfo) -> None:
    """numpy arrays: 2-D -> multivec; anything else keeps the dumper registered before (pgvector's ``vector``).

    psycopg picks a dumper by Python type, then asks it ``get_key(obj)``; a key other than the type makes it call
    ``upgrade(obj)`` for a dumper specialised to the value (as psycopg does for ints and lists).
    """
    adapters = context.adapters
    for fmt, mv_base in ((PyFormat.TEXT, MultiVecDumper), (PyFormat.BINARY, MultiVecBinaryDumper)):
        try:
            prev = adapters.get_dumper(np.ndarray, fmt)
        except psycopg.ProgrammingError:
            continue
        prev = getattr(prev, "_pgsieve_prev", prev)   # registering twice must not stack dispatchers
        mv_cls = type(mv_base.__name__, (mv_base,), {"oid": info.oid})

        def __init__(self: Any, cls: type, context: Any = None, _prev: type = prev) -> None:
            _prev.__init__(self, cls, context)
            self._context = context

        def get_key(self: Any, obj: Any, format: PyFormat, _prev: type = prev) -> Any:
            if getattr(obj, "ndim", None) == 2:
                return _MULTIVEC_KEY
            return _prev.get_key(self, obj, format)

        def upgrade(self: Any, obj: Any, format: PyFormat, _prev: type = prev, _mv: type = mv_cls) -> Any:
            if getattr(obj, "ndim", None) == 2:
                return _mv(self.cls, self._context)
            return _prev.upgrade(self, obj, format)

        disp = type(f"NdarrayOrMultiVec{mv_base.__name__}", (prev,),
                    {"__init__": __init__, "get_key": get_key, "upgrade": upgrade, "_pgsieve_prev": prev})
        adapters.register_dumper(np.ndarray, disp)


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
    #: called after the standard registration with (context, TypeInfo): adapters that need the oid
    register_extra: Optional[Callable[[Any, TypeInfo], None]] = None


#: pgsieve's own SQL types (pgvector's are registered by pgvector-python).
PGSIEVE_TYPES: tuple[PgsieveType, ...] = (
    PgsieveType(
        name="multivec",
        python_types=(MultiVector,),
        text_dumper=MultiVecDumper, binary_dumper=MultiVecBinaryDumper,
        text_loader=MultiVecLoader, binary_loader=MultiVecBinaryLoader,
        since="0.1.0",
        register_extra=_register_ndarray_dispatch,
    ),
)


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
    if spec.register_extra is not None:
        spec.register_extra(context, info)


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
