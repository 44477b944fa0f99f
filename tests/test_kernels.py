"""pgsieve.kernels: numpy references, every dispatch level, and byte-identity with the server."""

from __future__ import annotations

import numpy as np
import pytest

from pgsieve import kernels as K

LEVELS = K.available_levels()
DIMS = [1, 3, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 127, 128, 129, 255, 384, 513, 768, 1000, 1024, 1536]


def ref_hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(a ^ b).sum())


def ref_dot_bits(q: np.ndarray, bits: np.ndarray) -> float:
    signs = np.unpackbits(bits)[: q.shape[0]].astype(np.float64) * 2 - 1
    return float(np.dot(q.astype(np.float64), signs))


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest):
    with K.using_level(request.param) as lvl:
        yield lvl


# -- levels -----------------------------------------------------------------

def test_levels_named_and_restored() -> None:
    assert LEVELS[0] == "scalar" and len(LEVELS) == K.max_level() + 1
    before = K.level()
    with K.using_level("scalar") as lvl:
        assert lvl == 0 and K.level() == 0 and K.level_name() == "scalar"
    assert K.level() == before


def test_bad_levels_rejected() -> None:
    with pytest.raises(ValueError, match="unknown kernel level"):
        K.set_level("sse9")
    with pytest.raises(ValueError, match="out of range"):
        K.set_level(7)
    with pytest.raises(TypeError):
        K.set_level(1.5)  # type: ignore[arg-type]
    if K.max_level() < 3:
        with pytest.raises(ValueError, match="supports kernel levels up to"):
            K.set_level("avx512")


# -- quantize ---------------------------------------------------------------

@pytest.mark.parametrize("dim", DIMS)
def test_quantize_matches_packbits(dim: int, level: int) -> None:
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((6, dim)).astype(np.float32)
    x[0, : dim // 2] = 0.0  # exactly-zero components are not > 0
    t = rng.standard_normal(dim).astype(np.float32)
    assert np.array_equal(K.quantize(x), np.packbits(x > 0, axis=-1))
    assert np.array_equal(K.quantize(x, t), np.packbits(x > t, axis=-1))
    assert np.array_equal(K.quantize(x[2]), np.packbits(x[2] > 0))
    h = x.astype(np.float16)
    assert np.array_equal(K.quantize(h), np.packbits(h > 0, axis=-1))
    assert np.array_equal(K.quantize(h, t), np.packbits(h.astype(np.float32) > t, axis=-1))


def test_quantize_shapes_and_pad_bits() -> None:
    codes = K.quantize(np.ones((4, 13), np.float32))
    assert codes.dtype == np.uint8 and codes.shape == (4, 2)
    assert codes[0].tolist() == [0xFF, 0xF8]  # 13 ones, 3 zero pad bits
    assert K.quantize(np.ones(13, np.float32)).shape == (2,)
    assert K.quantize(np.empty((0, 13), np.float32)).shape == (0, 2)


@pytest.mark.parametrize("bad, msg", [
    (np.ones(8, np.float64), "float32 or float16"),
    (np.ones((2, 2, 8), np.float32), "1-D"),
    (np.ones((3, 16), np.float32)[:, ::2], "C-contiguous"),
    (np.array([1, np.nan, 0], np.float32), "NaN"),
    (np.array([1, np.inf, 0], np.float32), "Inf"),
])
def test_quantize_rejects(bad: np.ndarray, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        K.quantize(bad)


def test_quantize_threshold_checks() -> None:
    x = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="thresholds has 7 entries"):
        K.quantize(x, np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="thresholds must have dtype float32"):
        K.quantize(x, np.zeros(8, np.float64))
    with pytest.raises(ValueError, match="thresholds contains NaN"):
        K.quantize(x, np.full(8, np.nan, np.float32))


# -- bits -------------------------------------------------------------------

@pytest.mark.parametrize("nbytes", [0, 1, 2, 5, 7, 8, 9, 15, 16, 31, 32, 33, 48, 63, 64, 65, 96, 127, 128, 192, 257])
def test_hamming_and_batch(nbytes: int, level: int) -> None:
    rng = np.random.default_rng(1000 + nbytes)
    codes = rng.integers(0, 256, size=(37, nbytes), dtype=np.uint8)
    q = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
    expect = np.array([ref_hamming(q, c) for c in codes], dtype=np.uint32)
    got = K.hamming_batch(q, codes)
    assert got.dtype == np.uint32 and np.array_equal(got, expect)
    assert [K.hamming(q, c) for c in codes] == expect.tolist()
    assert K.popcount(q) == int(np.unpackbits(q).sum())
    if nbytes:
        a, b = codes[0], codes[1]
        inter, union = int(np.unpackbits(a & b).sum()), int(np.unpackbits(a | b).sum())
        expect_j = 1.0 if inter == 0 else 1.0 - inter / union
        assert K.jaccard(a, b) == pytest.approx(expect_j, abs=1e-12)


def test_hamming_batch_strided_rows() -> None:
    rng = np.random.default_rng(7)
    wide = rng.integers(0, 256, size=(20, 50), dtype=np.uint8)
    view = wide[:, 5:45]  # rows contiguous, stride 50
    q = rng.integers(0, 256, size=40, dtype=np.uint8)
    assert np.array_equal(K.hamming_batch(q, view), K.hamming_batch(q, np.ascontiguousarray(view)))
    with pytest.raises(ValueError, match="contiguous"):
        K.hamming_batch(q[:25], wide[:, ::2])  # bytes within a row are strided


def test_hamming_identities_and_errors() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, 48, dtype=np.uint8)
    assert K.hamming(a, a) == 0
    assert K.hamming(a, ~a) == 48 * 8
    assert K.hamming(a.tobytes(), bytes(48)) == int(np.unpackbits(a).sum())  # bytes accepted
    assert K.jaccard(np.zeros(4, np.uint8), np.zeros(4, np.uint8)) == 1.0
    assert K.jaccard(a, a) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        K.hamming(a, a[:-1])
    with pytest.raises(ValueError, match="uint8"):
        K.hamming(a.astype(np.int16), a.astype(np.int16))
    with pytest.raises(ValueError, match="codes rows have 47 bytes"):
        K.hamming_batch(a, np.zeros((3, 47), np.uint8))


@pytest.mark.parametrize("dim", [1, 7, 8, 9, 100, 384, 1000])
def test_dot_bits(dim: int, level: int) -> None:
    rng = np.random.default_rng(dim)
    q = rng.standard_normal(dim).astype(np.float32)
    bits = K.quantize(rng.standard_normal(dim).astype(np.float32))
    assert K.dot_bits(q, bits) == pytest.approx(ref_dot_bits(q, bits), rel=1e-9, abs=1e-9)
    with pytest.raises(ValueError, match="needs"):
        K.dot_bits(q, np.zeros(len(bits) + 1, np.uint8))


# -- floats -----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 3, 8, 15, 16, 17, 64, 100, 384, 1025])
def test_float_kernels(n: int, level: int) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((2, n)).astype(np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert K.dot_f32(a, b) == pytest.approx(np.dot(a64, b64), rel=1e-4, abs=1e-4)
    assert K.l2sq_f32(a, b) == pytest.approx(((a64 - b64) ** 2).sum(), rel=1e-4)
    cos = np.dot(a64, b64) / np.sqrt(np.dot(a64, a64) * np.dot(b64, b64))
    assert K.cosine_distance_f32(a, b) == pytest.approx(1 - cos, abs=1e-5)
    ha, hb = a.astype(np.float16), b.astype(np.float16)
    ha64, hb64 = ha.astype(np.float64), hb.astype(np.float64)
    assert K.dot_f16(ha, hb) == pytest.approx(np.dot(ha64, hb64), rel=1e-3, abs=1e-3)
    assert K.l2sq_f16(ha, hb) == pytest.approx(((ha64 - hb64) ** 2).sum(), rel=1e-3)
    ia = rng.integers(-128, 128, n, dtype=np.int8)
    ib = rng.integers(-128, 128, n, dtype=np.int8)
    assert K.dot_i8(ia, ib) == int(np.dot(ia.astype(np.int64), ib.astype(np.int64)))


def test_levels_agree_exactly_on_bits() -> None:
    """Integer kernels must be bit-for-bit identical at every level (not just close)."""
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, size=(300, 97), dtype=np.uint8)
    q = rng.integers(0, 256, size=97, dtype=np.uint8)
    x = rng.standard_normal((50, 389)).astype(np.float32)
    results = []
    for name in LEVELS:
        with K.using_level(name):
            results.append((K.hamming_batch(q, codes).tobytes(), K.quantize(x).tobytes(),
                            K.jaccard(codes[0], codes[1])))
    assert all(r == results[0] for r in results)


def test_f16_conversions() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(500).astype(np.float32) * 1000,
                        np.array([0.0, -0.0, 65504.0, 70000.0, 1e-8, -np.inf], np.float32)])
    h = K.f32_to_f16(x)
    assert h.dtype == np.float16
    with np.errstate(over="ignore"):  # 70000 -> inf is the point
        expect = x.astype(np.float16)
    assert np.array_equal(h.view(np.uint16), expect.view(np.uint16))  # IEEE round-to-nearest-even
    assert np.array_equal(K.f16_to_f32(h), h.astype(np.float32))
    with pytest.raises(ValueError, match="NaN"):
        K.f32_to_f16(np.array([np.nan], np.float32))
    with pytest.raises(ValueError, match="float16"):
        K.f16_to_f32(x)


# -- server byte-identity -----------------------------------------------------

def _bits_to_bytes(bitstr: str) -> np.ndarray:
    """PostgreSQL bit text ('0101...') to MSB-first packed bytes, pad bits zero."""
    return np.packbits(np.frombuffer(bitstr.encode(), np.uint8) - ord("0"))


@pytest.mark.parametrize("dim", [1, 7, 8, 13, 64, 100, 384])
def test_server_bit_quantize_identical(db, dim: int) -> None:
    rng = np.random.default_rng(500 + dim)
    x = rng.standard_normal((5, dim)).astype(np.float32)
    t = rng.standard_normal(dim).astype(np.float32) * 0.5
    for row in x:
        vec = "[" + ",".join(repr(float(v)) for v in row) + "]"
        ours, pgv, thr = db.execute(
            "SELECT bit_quantize(%s::vector)::text, binary_quantize(%s::vector)::text, "
            "bit_quantize(%s::vector, %s::real[])::text",
            (vec, vec, vec, [float(v) for v in t])).fetchone()
        assert len(ours) == dim
        assert np.array_equal(_bits_to_bytes(ours), K.quantize(row))
        assert ours == pgv
        assert np.array_equal(_bits_to_bytes(thr), K.quantize(row, t))


def test_server_hamming_jaccard_identical(db) -> None:
    rng = np.random.default_rng(99)
    for dim in (5, 64, 200, 1000):
        a, b = (rng.random((2, dim)) > 0.5)
        sa = "".join("1" if v else "0" for v in a)
        sb = "".join("1" if v else "0" for v in b)
        ham, jac, pgv_ham, pgv_jac = db.execute(
            "SELECT hamming(a, b), jaccard(a, b), a <~> b, a <%%> b "
            "FROM (SELECT %s::varbit AS a, %s::varbit AS b) s", (sa, sb)).fetchone()
        pa, pb = np.packbits(a), np.packbits(b)
        assert ham == K.hamming(pa, pb) == pgv_ham
        assert jac == pytest.approx(K.jaccard(pa, pb), abs=1e-12)
        assert jac == pytest.approx(pgv_jac, abs=1e-12)


def test_server_bit_ip(db) -> None:
    rng = np.random.default_rng(42)
    q = rng.standard_normal(77).astype(np.float32)
    bits = K.quantize(rng.standard_normal(77).astype(np.float32))
    bitstr = "".join(map(str, np.unpackbits(bits)[:77]))
    vec = "[" + ",".join(repr(float(v)) for v in q) + "]"
    got = db.execute("SELECT bit_ip(%s::vector, %s::bit(77))", (vec, bitstr)).fetchone()[0]
    assert got == pytest.approx(K.dot_bits(q, bits), rel=1e-6, abs=1e-6)


# -- sparse x dense estimate (sparse_block's filter) ---------------------------------

@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 33, 153, 1000])
def test_sparse_dense_estimate_within_bound(level: int, n: int) -> None:
    rng = np.random.default_rng(n)
    dim = 30522
    q = np.zeros(dim, np.float32)
    qi = rng.choice(dim, 40, replace=False)
    q[qi] = rng.standard_normal(40).astype(np.float32)
    # about a third of the document's terms are query terms, the rest score 0
    shared = rng.choice(qi, min(n // 3, 40), replace=False)
    rest = rng.choice(np.setdiff1d(np.arange(dim), qi), n - shared.shape[0], replace=False)
    idx = np.sort(np.concatenate([shared, rest])).astype(np.int32)
    val = rng.uniform(-2, 2, idx.shape[0]).astype(np.float32)
    s, m = K.sparse_dense_estimate(idx, val, q)
    prods = (val * q[idx]).astype(np.float32)
    exact = float(np.sum(prods.astype(np.float64)))
    seq = np.float32(0)
    for p in prods:  # the order sparse_block's exact score (and pgvector's <#>) adds them
        seq = np.float32(seq + p)
    assert m == pytest.approx(float(np.abs(prods.astype(np.float64)).sum()), rel=1e-5, abs=1e-30)
    bound = 4.0 * (idx.shape[0] + 4) * 5.97e-8 * m
    assert abs(s - exact) <= bound / 2 + 1e-30
    assert abs(s - float(seq)) <= bound + 1e-30


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 17, 33, 153, 1000])
def test_sparse_dense_estimate_compact(level: int, n: int, wide: bool) -> None:
    """uint16/uint32 components with float16 values: the widened products, summed within the same bound."""
    rng = np.random.default_rng(100 + n)
    dim = 70000 if wide else 30522
    q = rng.standard_normal(dim).astype(np.float32)
    idx = np.sort(rng.choice(dim, n, replace=False)).astype(np.uint32 if wide else np.uint16)
    val16 = rng.uniform(-3, 3, n).astype(np.float16)
    if n > 2:
        val16[1] = np.float16(3e-7)  # a subnormal float16 is widened exactly too
    s, m = K.sparse_dense_estimate(idx, val16, q)
    prods = (val16.astype(np.float32) * q[idx.astype(np.int64)]).astype(np.float32)
    exact = float(np.sum(prods.astype(np.float64)))
    assert m == pytest.approx(float(np.abs(prods.astype(np.float64)).sum()), rel=1e-5, abs=1e-30)
    assert abs(s - exact) <= 2.0 * (n + 4) * 5.97e-8 * m + 1e-30


def _estimate_levels_agree(idx: np.ndarray, val: np.ndarray, q: np.ndarray) -> None:
    """Every level's estimate equals the float64 dot product (to float32 rounding)."""
    ref = float(np.dot(val.astype(np.float64), q[idx.astype(np.int64)].astype(np.float64)))
    for lvl in LEVELS:
        with K.using_level(lvl):
            s, _ = K.sparse_dense_estimate(idx, val, q)
        assert s == pytest.approx(ref, rel=1e-5, abs=1e-5), lvl


def test_sparse_dense_estimate_levels_agree_and_check_input() -> None:
    rng = np.random.default_rng(5)
    q = rng.standard_normal(1000).astype(np.float32)
    idx = np.arange(0, 1000, 7, dtype=np.int32)
    val = rng.standard_normal(idx.shape[0]).astype(np.float32)
    _estimate_levels_agree(idx, val, q)
    with pytest.raises(ValueError, match="indices must lie"):
        K.sparse_dense_estimate(np.array([1000], np.int32), np.array([1.0], np.float32), q)
    with pytest.raises(ValueError, match="int32, uint16 or uint32"):
        K.sparse_dense_estimate(np.array([1], np.int64), np.array([1.0], np.float32), q)
    with pytest.raises(ValueError, match="indices must lie"):
        K.sparse_dense_estimate(np.array([1000], np.uint16), np.array([1.0], np.float16), q)
    _estimate_levels_agree(idx.astype(np.uint16), val.astype(np.float16), q)
    with pytest.raises(ValueError):
        K.sparse_dense_estimate(np.array([1, 2], np.int32), np.array([1.0], np.float32), q)
