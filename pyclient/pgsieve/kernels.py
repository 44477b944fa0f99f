"""Typed numpy wrappers over pgsieve's shared C kernels (``pgsieve._kernels``).

The same C file (``ext/kernels/pgs_kernels.c``) is compiled into the PostgreSQL
extension and into this package's cffi module, so a binary code computed here
is byte-identical to the one the server computes and stores.  These wrappers
exist to make that C API safe to call from Python:

* every input is validated (dtype, shape, contiguity, NaN/Inf) *before* a
  pointer reaches C, because C has no way to report a bad buffer;
* arrays are passed with ``ffi.from_buffer`` so nothing is copied unless the
  caller's array has the wrong dtype/layout (then we say so instead of copying
  silently, except for the explicit ``np.ascontiguousarray`` helpers);
* the dispatch level (scalar / popcnt / avx2 / avx512) can be pinned, which is
  how the tests prove every level gives the same answer.

Bit order is ``numpy.packbits`` order (MSB first), the same as pgvector's
``binary_quantize``: dimension ``i`` lives in byte ``i // 8``, bit
``7 - i % 8``, and trailing pad bits are zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Union

import numpy as np

from pgsieve._kernels import ffi, lib

__all__ = [
    "LEVEL_NAMES",
    "level",
    "level_name",
    "max_level",
    "available_levels",
    "set_level",
    "using_level",
    "nbytes_for_dim",
    "quantize",
    "popcount",
    "hamming",
    "hamming_batch",
    "jaccard",
    "dot_bits",
    "dot_f32",
    "sparse_dense_estimate",
    "l2sq_f32",
    "cosine_distance_f32",
    "dot_f16",
    "l2sq_f16",
    "dot_i8",
    "f16_to_f32",
    "f32_to_f16",
    "maxsim",
    "maxsim_maxima",
    "maxsim_screen",
    "screen_path",
    "set_amx",
    "quantize_i8",
]

#: Dispatch level names, indexed by the C ``PGS_LEVEL_*`` constants.
LEVEL_NAMES: tuple[str, ...] = ("scalar", "popcnt", "avx2", "avx512")

LevelSpec = Union[int, str]
ArrayLike = Any  # anything np.asarray accepts; validated below

lib.pgs_kernels_init()


# ---------------------------------------------------------------------------
# dispatch levels
# ---------------------------------------------------------------------------

def level() -> int:
    """The dispatch level currently in use (an index into ``LEVEL_NAMES``)."""
    return int(lib.pgs_kernels_level())


def max_level() -> int:
    """The highest dispatch level this CPU supports."""
    return int(lib.pgs_kernels_max_level())


def level_name(lvl: int | None = None) -> str:
    """Name of ``lvl`` (default: the level in use), e.g. ``"avx2"``."""
    lvl = level() if lvl is None else lvl
    return ffi.string(lib.pgs_kernels_level_name(int(lvl))).decode("ascii")


def available_levels() -> list[str]:
    """All level names this CPU can run, lowest first (tests iterate them)."""
    return [LEVEL_NAMES[i] for i in range(max_level() + 1)]


def _parse_level(spec: LevelSpec) -> int:
    """Turn ``"avx2"`` or ``2`` into a checked level number."""
    if isinstance(spec, bool):
        raise TypeError("level must be a level name or int, not bool")
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name not in LEVEL_NAMES:
            raise ValueError(f"unknown kernel level {spec!r}; expected one of {LEVEL_NAMES}")
        lvl = LEVEL_NAMES.index(name)
    elif isinstance(spec, (int, np.integer)):
        lvl = int(spec)
        if not 0 <= lvl < len(LEVEL_NAMES):
            raise ValueError(f"kernel level {lvl} out of range 0..{len(LEVEL_NAMES) - 1}")
    else:
        raise TypeError(f"level must be a name or int, not {type(spec).__name__}")
    if lvl > max_level():
        raise ValueError(
            f"this CPU supports kernel levels up to {level_name(max_level())!r}; "
            f"cannot use {LEVEL_NAMES[lvl]!r}"
        )
    return lvl


def set_level(spec: LevelSpec) -> int:
    """Pin the dispatch level (process-wide) and return it.

    The C library would silently clamp a level above what the CPU supports;
    we raise instead, so a test that asks for AVX-512 on a machine without it
    fails loudly rather than testing the scalar path twice.
    """
    return int(lib.pgs_kernels_set_level(_parse_level(spec)))


@contextlib.contextmanager
def using_level(spec: LevelSpec) -> Iterator[int]:
    """Context manager: run the block at level ``spec``, then restore the old one."""
    previous = level()
    lvl = set_level(spec)
    try:
        yield lvl
    finally:
        lib.pgs_kernels_set_level(previous)


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------

def nbytes_for_dim(dim: int) -> int:
    """Bytes in a packed binary code of ``dim`` dimensions."""
    if dim < 0:
        raise ValueError(f"dim must be non-negative, got {dim}")
    return (int(dim) + 7) // 8


def _as_array(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return np.frombuffer(x, dtype=np.uint8)
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    return x


def _check_finite(x: np.ndarray, name: str) -> None:
    """Reject NaN/Inf: C comparisons treat NaN as false and would hide bad data."""
    if x.size and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x.reshape(-1)))[0])
        kind = "NaN" if np.isnan(x.reshape(-1)[bad]) else "Inf"
        raise ValueError(f"{name} contains {kind} (first at flat index {bad}); values must be finite")


def _check_contiguous(x: np.ndarray, name: str) -> None:
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")


def _float_vector(x: ArrayLike, name: str, dtype: type = np.float32) -> np.ndarray:
    """A 1-D finite C-contiguous array of exactly ``dtype`` (no silent casts)."""
    a = _as_array(x, name)
    if a.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    _check_contiguous(a, name)
    _check_finite(a, name)
    return a


def _code(x: ArrayLike, name: str) -> np.ndarray:
    """A 1-D C-contiguous uint8 packed code (bytes-like objects are accepted)."""
    a = _as_array(x, name)
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be a packed uint8 code, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    _check_contiguous(a, name)
    return a


def _same_len(a: np.ndarray, b: np.ndarray, an: str, bn: str) -> int:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{an} and {bn} differ in length: {a.shape[0]} != {b.shape[0]}")
    return int(a.shape[0])


def _ptr(ctype: str, a: np.ndarray) -> Any:
    """Zero-copy pointer into ``a`` (works for empty arrays too)."""
    return ffi.cast(ctype, ffi.from_buffer(a)) if a.size else ffi.NULL


# ---------------------------------------------------------------------------
# quantizers
# ---------------------------------------------------------------------------

def quantize(x: ArrayLike, thresholds: ArrayLike | None = None) -> np.ndarray:
    """Binary-quantize float vectors: bit ``i`` is ``x[i] > thresholds[i]`` (default 0).

    ``x`` is float32 or float16, shape ``(d,)`` or ``(n, d)``.  Returns uint8 of
    shape ``(ceil(d/8),)`` or ``(n, ceil(d/8))`` equal to
    ``np.packbits(x > t, axis=-1)`` and to the server's ``bit_quantize``.
    ``thresholds`` (float32, shape ``(d,)``) gives per-dimension cut points,
    e.g. the per-dimension mean that ``bit_thresholds`` computes.
    """
    a = _as_array(x, "x")
    if a.dtype not in (np.float32, np.float16):
        raise ValueError(f"x must be float32 or float16, got dtype {a.dtype}")
    if a.ndim not in (1, 2):
        raise ValueError(f"x must be 1-D (d,) or 2-D (n, d), got shape {a.shape}")
    _check_contiguous(a, "x")
    _check_finite(a, "x")
    dim = int(a.shape[-1])
    t_ptr = ffi.NULL
    t_arr = None
    if thresholds is not None:
        t_arr = _float_vector(thresholds, "thresholds")
        if t_arr.shape[0] != dim:
            raise ValueError(f"thresholds has {t_arr.shape[0]} entries but x has {dim} dimensions")
        t_ptr = _ptr("float *", t_arr)

    rows = a.reshape(-1, dim) if dim else a.reshape(-1, 0)
    nb = nbytes_for_dim(dim)
    out = np.zeros((rows.shape[0], nb), dtype=np.uint8)
    if dim and rows.shape[0]:
        is_f16 = a.dtype == np.float16
        src = rows.view(np.uint16) if is_f16 else rows
        src_ptr = ffi.cast("uint16_t *" if is_f16 else "float *", ffi.from_buffer(src))
        dst_ptr = ffi.cast("uint8_t *", ffi.from_buffer(out))
        fn = lib.pgs_quantize_f16 if is_f16 else lib.pgs_quantize_f32
        for i in range(rows.shape[0]):
            fn(src_ptr + i * dim, t_ptr, dim, dst_ptr + i * nb)
    return out[0] if a.ndim == 1 else out


# ---------------------------------------------------------------------------
# bits
# ---------------------------------------------------------------------------

def popcount(a: ArrayLike) -> int:
    """Number of set bits in a packed code."""
    ca = _code(a, "a")
    return int(lib.pgs_popcount(_ptr("uint8_t *", ca), ca.shape[0]))


def hamming(a: ArrayLike, b: ArrayLike) -> int:
    """Hamming distance between two packed codes of the same length."""
    ca, cb = _code(a, "a"), _code(b, "b")
    n = _same_len(ca, cb, "a", "b")
    return int(lib.pgs_hamming(_ptr("uint8_t *", ca), _ptr("uint8_t *", cb), n))


def hamming_batch(q: ArrayLike, codes: ArrayLike) -> np.ndarray:
    """Hamming distance of one code ``q`` against each row of ``codes`` (n, nbytes).

    Rows may be strided (e.g. a column slice of a wider array) as long as each
    row itself is contiguous; the C kernel takes the row stride.
    """
    cq = _code(q, "q")
    c = _as_array(codes, "codes")
    if c.dtype != np.uint8:
        raise ValueError(f"codes must be packed uint8 codes, got dtype {c.dtype}")
    if c.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, nbytes), got shape {c.shape}")
    n, nb = c.shape
    if nb != cq.shape[0]:
        raise ValueError(f"codes rows have {nb} bytes but q has {cq.shape[0]}")
    if (nb > 1 and c.strides[1] != 1) or (n > 1 and c.strides[0] < nb):
        raise ValueError("codes rows must each be contiguous, non-overlapping bytes "
                         "(use np.ascontiguousarray)")
    out = np.empty(n, dtype=np.uint32)
    if n == 0 or nb == 0:
        out[:] = 0
        return out
    # from_buffer needs a buffer covering the whole strided span
    base = c if c.flags.c_contiguous else np.lib.stride_tricks.as_strided(
        c, shape=((n - 1) * c.strides[0] + nb,), strides=(1,))
    stride = int(c.strides[0]) if n > 1 else nb
    lib.pgs_hamming_batch(
        _ptr("uint8_t *", cq), ffi.cast("uint8_t *", ffi.from_buffer(base)),
        nb, stride, n, ffi.cast("uint32_t *", ffi.from_buffer(out)))
    return out


def jaccard(a: ArrayLike, b: ArrayLike) -> float:
    """Jaccard distance ``1 - |a & b| / |a | b|`` between two packed codes.

    Same convention as pgvector's ``jaccard_distance`` (``<%>``): when the codes
    share no set bit (including two all-zero codes) the distance is 1.0.
    """
    ca, cb = _code(a, "a"), _code(b, "b")
    n = _same_len(ca, cb, "a", "b")
    and_c = ffi.new("uint64_t *")
    or_c = ffi.new("uint64_t *")
    lib.pgs_and_or_count(_ptr("uint8_t *", ca), _ptr("uint8_t *", cb), n, and_c, or_c)
    if and_c[0] == 0:
        return 1.0
    return 1.0 - float(and_c[0]) / float(or_c[0])


def dot_bits(q: ArrayLike, bits: ArrayLike, dim: int | None = None) -> float:
    """Asymmetric score ``sum_i q[i] * (2*bit_i - 1)`` of a float32 query vs a code.

    This is the first-stage score ``binary_scan`` uses for ip/cosine: the query
    keeps full precision, only the documents are binary.
    """
    fq = _float_vector(q, "q")
    d = fq.shape[0] if dim is None else int(dim)
    if d != fq.shape[0]:
        raise ValueError(f"dim={d} but q has {fq.shape[0]} dimensions")
    cb = _code(bits, "bits")
    if cb.shape[0] != nbytes_for_dim(d):
        raise ValueError(f"bits has {cb.shape[0]} bytes; a {d}-dim code needs {nbytes_for_dim(d)}")
    return float(lib.pgs_dot_bits(_ptr("float *", fq), _ptr("uint8_t *", cb), d))


# ---------------------------------------------------------------------------
# floats
# ---------------------------------------------------------------------------

def dot_f32(a: ArrayLike, b: ArrayLike) -> float:
    """Inner product of two float32 vectors (SIMD; summation order is level-dependent)."""
    fa, fb = _float_vector(a, "a"), _float_vector(b, "b")
    n = _same_len(fa, fb, "a", "b")
    return float(lib.pgs_dot_f32(_ptr("float *", fa), _ptr("float *", fb), n))


def l2sq_f32(a: ArrayLike, b: ArrayLike) -> float:
    """Squared Euclidean distance of two float32 vectors."""
    fa, fb = _float_vector(a, "a"), _float_vector(b, "b")
    n = _same_len(fa, fb, "a", "b")
    return float(lib.pgs_l2sq_f32(_ptr("float *", fa), _ptr("float *", fb), n))


def cosine_distance_f32(a: ArrayLike, b: ArrayLike) -> float:
    """``1 - cos(a, b)`` like pgvector's ``<=>``; NaN if either vector is zero."""
    fa, fb = _float_vector(a, "a"), _float_vector(b, "b")
    n = _same_len(fa, fb, "a", "b")
    dot, na, nb = ffi.new("float *"), ffi.new("float *"), ffi.new("float *")
    lib.pgs_cosine_parts_f32(_ptr("float *", fa), _ptr("float *", fb), n, dot, na, nb)
    denom = float(np.sqrt(np.float64(na[0]) * np.float64(nb[0])))
    if denom == 0.0:
        return float("nan")
    return 1.0 - max(-1.0, min(1.0, float(dot[0]) / denom))


def _f16_bits(x: ArrayLike, name: str) -> np.ndarray:
    return _float_vector(x, name, np.float16).view(np.uint16)


def dot_f16(a: ArrayLike, b: ArrayLike) -> float:
    """Inner product of two float16 vectors (accumulated in float32)."""
    ha, hb = _f16_bits(a, "a"), _f16_bits(b, "b")
    n = _same_len(ha, hb, "a", "b")
    return float(lib.pgs_dot_f16(_ptr("uint16_t *", ha), _ptr("uint16_t *", hb), n))


def l2sq_f16(a: ArrayLike, b: ArrayLike) -> float:
    """Squared Euclidean distance of two float16 vectors (accumulated in float32)."""
    ha, hb = _f16_bits(a, "a"), _f16_bits(b, "b")
    n = _same_len(ha, hb, "a", "b")
    return float(lib.pgs_l2sq_f16(_ptr("uint16_t *", ha), _ptr("uint16_t *", hb), n))


def sparse_dense_estimate(indices: ArrayLike, values: ArrayLike, q: ArrayLike) -> tuple[float, float]:
    """``(sum_i values[i] * q[indices[i]], sum_i |values[i] * q[indices[i]]|)`` in the level's fastest summation
    order: the filter ``sparse_block`` scans use before an exact, sequential sum.  Two summation orders of the same
    rounded products differ by at most about ``2 n 2^-24`` times the second number.

    ``indices`` are int32, or — the index's compact copy of a document — uint16 or uint32 with float16
    ``values`` (each value is widened exactly, then multiplied in float32)."""
    idx = _as_array(indices, "indices")
    if idx.ndim != 1 or idx.dtype not in (np.int32, np.uint16, np.uint32):
        raise ValueError(f"indices must be a 1-D int32, uint16 or uint32 array, got {idx.dtype} {idx.shape}")
    _check_contiguous(idx, "indices")
    compact = idx.dtype != np.int32
    val = _f16_bits(values, "values") if compact else _float_vector(values, "values")
    fq = _float_vector(q, "q")
    n = _same_len(idx, val, "indices", "values")
    if n and (int(idx.min()) < 0 or int(idx.max()) >= fq.shape[0]):
        raise ValueError(f"indices must lie in [0, {fq.shape[0]})")
    out = ffi.new("float[2]")
    if compact:
        lib.pgs_sparse_dense_est_h(_ptr("void *", idx), int(idx.dtype == np.uint32),
                                   _ptr("uint16_t *", val), n, _ptr("float *", fq), out, out + 1)
    else:
        lib.pgs_sparse_dense_est(_ptr("int32_t *", idx), _ptr("float *", val), n, _ptr("float *", fq), out, out + 1)
    return float(out[0]), float(out[1])


def dot_i8(a: ArrayLike, b: ArrayLike) -> int:
    """Exact int32 inner product of two int8 vectors."""
    ia, ib = _as_array(a, "a"), _as_array(b, "b")
    for arr, nm in ((ia, "a"), (ib, "b")):
        if arr.dtype != np.int8:
            raise ValueError(f"{nm} must have dtype int8, got {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"{nm} must be 1-D, got shape {arr.shape}")
        _check_contiguous(arr, nm)
    n = _same_len(ia, ib, "a", "b")
    return int(lib.pgs_dot_i8(_ptr("int8_t *", ia), _ptr("int8_t *", ib), n))


def f16_to_f32(x: ArrayLike) -> np.ndarray:
    """Widen float16 values to float32 with the C converter (exact)."""
    a = _as_array(x, "x")
    if a.dtype != np.float16:
        raise ValueError(f"x must have dtype float16, got {a.dtype}")
    bits = np.ascontiguousarray(a).view(np.uint16).reshape(-1)
    out = np.fromiter((lib.pgs_f16_to_f32(int(h)) for h in bits), dtype=np.float32, count=bits.size)
    return out.reshape(a.shape)


def f32_to_f16(x: ArrayLike) -> np.ndarray:
    """Narrow float32 values to float16 with the C converter (round to nearest even).

    Values beyond float16's range become ±Inf, as in IEEE conversion; NaN
    input is rejected so it cannot reach an index unnoticed.
    """
    a = _as_array(x, "x")
    if a.dtype != np.float32:
        raise ValueError(f"x must have dtype float32, got {a.dtype}")
    flat = np.ascontiguousarray(a).reshape(-1)
    if np.isnan(flat).any():
        raise ValueError("x contains NaN; values must be numbers")
    bits = np.fromiter((lib.pgs_f32_to_f16(float(v)) for v in flat), dtype=np.uint16, count=flat.size)
    return bits.view(np.float16).reshape(a.shape)


# ---------------------------------------------------------------------------
# multivectors (late interaction)
# ---------------------------------------------------------------------------

def _token_matrix(x: ArrayLike, name: str, dtypes: tuple[type, ...]) -> np.ndarray:
    """A 2-D (ntok, dim) C-contiguous array of one of ``dtypes`` with ntok, dim >= 1."""
    a = _as_array(x, name)
    if a.dtype not in dtypes:
        names = ", ".join(np.dtype(t).name for t in dtypes)
        raise ValueError(f"{name} must have dtype {names}; got {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (ntok, dim), got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one token of at least one dimension, got shape {a.shape}")
    _check_contiguous(a, name)
    if a.dtype != np.int8:
        _check_finite(a, name)
    return a


def quantize_i8(x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """int8 quantization of tokens, as the ``multivec`` int8 format stores them.

    ``x`` is float32 of shape ``(ntok, dim)``.  Returns ``(codes, scales)``: int8
    ``(ntok, dim)`` and float32 ``(ntok,)`` with ``scale = max|x| / 127`` per token
    and ``code = rint(x / scale)``, so a value reads back as ``code * scale``; an
    all-zero token has scale 0.  Byte-identical to the server's conversion.
    """
    a = _token_matrix(x, "x", (np.float32,))
    ntok, dim = a.shape
    codes = np.empty((ntok, dim), dtype=np.int8)
    scales = np.empty(ntok, dtype=np.float32)
    src = ffi.cast("float *", ffi.from_buffer(a))
    dst = ffi.cast("int8_t *", ffi.from_buffer(codes))
    for t in range(ntok):
        scales[t] = lib.pgs_quantize_i8_token(src + t * dim, dim, dst + t * dim)
    return codes, scales


def _maxsim_operands(doc: np.ndarray, query: np.ndarray,
                     doc_scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated (query float32, doc, int8 scales or None) for the MaxSim kernels."""
    q = _token_matrix(query, "query", (np.float32, np.float16))
    if q.dtype == np.float16:
        q = q.astype(np.float32)
    d = _token_matrix(doc, "doc", (np.float32, np.float16, np.int8))
    if d.shape[1] != q.shape[1]:
        raise ValueError(f"doc has {d.shape[1]} dimensions but query has {q.shape[1]}")
    if d.dtype == np.int8:
        if doc_scale is None:
            raise ValueError("an int8 doc needs doc_scale (one float32 scale per token)")
        sc = _float_vector(doc_scale, "doc_scale")
        if sc.shape[0] != d.shape[0]:
            raise ValueError(f"doc_scale has {sc.shape[0]} entries but doc has {d.shape[0]} tokens")
        if (sc < 0).any():
            raise ValueError("doc_scale must be non-negative")
        return q, d, sc
    if doc_scale is not None:
        raise ValueError("doc_scale is only for int8 docs")
    return q, d, None


def _maxsim_call(kind: str, q: np.ndarray, d: np.ndarray, sc: np.ndarray | None, *extra: Any) -> Any:
    """Call pgs_maxsim_<kind>_{f32,f16,i8} (kind "" for the whole score, "update_" for running maxima)."""
    nq, dim = q.shape
    nd = d.shape[0]
    scratch = ffi.new("char[]", int(lib.pgs_maxsim_scratch_bytes(dim)))
    lib.pgs_maxsim_scratch_init(scratch)
    qp = ffi.cast("float *", ffi.from_buffer(q))
    if sc is not None:
        return getattr(lib, f"pgs_maxsim_{kind}i8")(qp, nq, ffi.cast("int8_t *", ffi.from_buffer(d)),
                                                   ffi.cast("float *", ffi.from_buffer(sc)), nd, dim,
                                                   *extra, scratch)
    if d.dtype == np.float16:
        return getattr(lib, f"pgs_maxsim_{kind}f16")(qp, nq, ffi.cast("uint16_t *", ffi.from_buffer(d.view(np.uint16))),
                                                    nd, dim, *extra, scratch)
    return getattr(lib, f"pgs_maxsim_{kind}f32")(qp, nq, ffi.cast("float *", ffi.from_buffer(d)), nd, dim,
                                                *extra, scratch)


def maxsim(doc: np.ndarray, query: np.ndarray, doc_scale: np.ndarray | None = None) -> float:
    """ColBERT MaxSim: ``sum_i max_j <query_i, doc_j>`` — the server's ``maxsim(doc, query)``.

    ``query`` is float32 (or float16, widened exactly) of shape ``(nq, dim)``.
    ``doc`` is ``(nd, dim)`` float32, float16, or int8 codes with ``doc_scale``
    (float32 ``(nd,)``, as returned by :func:`quantize_i8`).  At a given dispatch
    level the result is bit-identical to the server's for the same tokens;
    float16 and int8 documents score exactly like their dequantized float32 copy.
    Equals numpy's ``(query @ doc.T).max(1).sum()`` up to float32 rounding.
    """
    q, d, sc = _maxsim_operands(doc, query, doc_scale)
    return float(_maxsim_call("", q, d, sc))


def maxsim_maxima(doc: np.ndarray, query: np.ndarray, doc_scale: np.ndarray | None = None) -> np.ndarray:
    """Per-query-token maxima ``max_j <query_i, doc_j>`` (float32, shape ``(nq,)``): the terms MaxSim sums,
    from the same kernels as :func:`maxsim` (``pgs_maxsim_update_*``)."""
    q, d, sc = _maxsim_operands(doc, query, doc_scale)
    out = np.full(q.shape[0], -np.inf, dtype=np.float32)
    _maxsim_call("update_", q, d, sc, ffi.cast("float *", ffi.from_buffer(out)))
    return out


#: the screen paths, indexed by ``pgs_maxsim_screen_path``
SCREEN_PATHS: tuple[str, ...] = ("scalar", "avx2", "vnni", "amx")


def screen_path(dim: int = 384) -> str:
    """The path :func:`maxsim_screen` takes now for ``dim`` dimensions (AMX needs 64 or more, a multiple of 4):
    ``"amx"``, ``"vnni"``, ``"avx2"`` or ``"scalar"`` (a reference below the avx2 level)."""
    return SCREEN_PATHS[int(lib.pgs_maxsim_screen_path(int(dim)))]


def set_amx(on: bool) -> str:
    """Allow (default) or forbid AMX tiles, process-wide (tests compare the paths); returns :func:`screen_path`."""
    lib.pgs_kernels_set_amx(1 if on else 0)
    return screen_path()


def maxsim_screen(doc: np.ndarray, doc_scale: np.ndarray, query: np.ndarray) -> tuple[float, float]:
    """The screen ``maxsim_rerank`` runs before exact MaxSims: ``(estimate, bound)`` for an int8 ``doc``.

    The query is rounded to int16 per token and multiplied with the codes in exact integer arithmetic;
    ``abs(maxsim(doc, query, doc_scale) - estimate) <= bound`` holds for every input at every dispatch level
    (the server's ``pgs_maxsim_screen_i8``; estimate and bound are the same bits on every path).
    ``query`` has 1 to 32 tokens.  ``(nan, nan)`` means the screen refused the doc (scales so large that the
    float kernel could overflow): score it exactly.
    """
    q, d, sc = _maxsim_operands(doc, query, doc_scale)
    if sc is None:
        raise ValueError("maxsim_screen takes an int8 doc with doc_scale")
    nq, dim = q.shape
    screen = ffi.new("char[]", int(lib.pgs_maxsim_screen_bytes(dim)))
    if not lib.pgs_maxsim_screen_prepare(ffi.cast("float *", ffi.from_buffer(q)), nq, dim, screen):
        raise ValueError(f"maxsim_screen takes a query of 1 to 32 tokens, got {nq}")
    bound = ffi.new("double *")
    est = lib.pgs_maxsim_screen_i8(screen, ffi.cast("int8_t *", ffi.from_buffer(d)),
                                   ffi.cast("float *", ffi.from_buffer(sc)), d.shape[0], bound)
    return float(est), float(bound[0])
