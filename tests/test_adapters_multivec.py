"""psycopg adapters for ``multivec`` (pgsieve.adapters) against the real server.

Each format (float32, float16, int8) round-trips through text parameters, binary parameters, binary COPY in and
binary COPY out; client-side int8 quantization and float16 rounding are byte-identical to the server's; plain
numpy arrays dispatch by shape (2-D -> multivec, 1-D -> pgvector's vector); invalid input is refused on the client
with a clear message.
"""
from __future__ import annotations

import asyncio

import numpy as np
import psycopg
import pytest

from pgsieve import kernels
from pgsieve.adapters import MULTIVEC_FORMATS, MultiVector, register_pgsieve, register_pgsieve_async

DIM = 24


def tokens(seed: int, n: int = 7, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def expected_values(x: np.ndarray, fmt: str) -> np.ndarray:
    """What the server stores for float32 tokens ``x`` in ``fmt``, as the binary loader returns it."""
    if fmt == "float32":
        return x
    if fmt == "float16":
        return x.astype(np.float16)
    codes, scales = kernels.quantize_i8(x)
    return (codes.astype(np.float32) * scales[:, None]).astype(np.float32)


@pytest.fixture(scope="module")
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        reg = register_pgsieve(c)
        assert "multivec" in reg.types and "multivec" not in reg.skipped
        c.execute(f"""CREATE TABLE mv (id int PRIMARY KEY, anyf multivec, f32 multivec({DIM}),
                      f16 multivec({DIM}, float16), i8 multivec({DIM}, int8))""")
        yield c


@pytest.fixture
def clean(conn):
    conn.execute("TRUNCATE mv")
    return conn


def fetch(conn, sql, params=(), binary=True):
    with conn.cursor(binary=binary) as cur:
        return cur.execute(sql, params).fetchall()


# ---------------------------------------------------------------------------------------------------------------
# the value class

@pytest.mark.parametrize("fmt", MULTIVEC_FORMATS)
def test_value_class_wire_round_trip(fmt):
    x = tokens(1)
    m = MultiVector(x, fmt)
    assert m.format == fmt and m.shape == (7, DIM) and len(m) == 7
    assert MultiVector.from_binary(m.to_binary()) == m
    np.testing.assert_array_equal(m.to_numpy(), expected_values(x, fmt))
    back = MultiVector.from_text(m.to_text())
    assert back.format == "float32"
    np.testing.assert_array_equal(back.to_numpy(), m.to_numpy().astype(np.float32))


def test_value_class_formats_from_dtype():
    x = tokens(2)
    assert MultiVector(x).format == "float32"
    assert MultiVector(x.astype(np.float64)).format == "float32"
    assert MultiVector(x.astype(np.float16)).format == "float16"
    codes = np.array([[1, -2, 127], [0, 0, -127]], np.int8)
    m = MultiVector(codes)
    assert m.format == "int8" and m.scales.tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(m.to_numpy(), codes.astype(np.float32))
    m = MultiVector(codes, scales=[0.5, 2.0])
    np.testing.assert_array_equal(m.to_numpy(), codes * np.array([[0.5], [2.0]], np.float32))
    assert MultiVector(m, "float32").format == "float32"
    assert MultiVector([[1, 2], [3, 4]]).to_numpy().dtype == np.float32
    # int8 quantization in the client = pgsieve.kernels.quantize_i8 = the server's (checked below)
    q = MultiVector(x, "int8")
    kc, ks = kernels.quantize_i8(x)
    np.testing.assert_array_equal(q.data, kc)
    np.testing.assert_array_equal(q.scales, ks)
    z = MultiVector(np.zeros((2, 3), np.float32), "int8")
    assert z.scales.tolist() == [0.0, 0.0] and not z.data.any()


@pytest.mark.parametrize("bad, message", [
    ([[1.0, 2.0], [3.0]], "same dimensions: token 0 has 2, token 1 has 1"),
    (np.zeros((0, 4), np.float32), "at least one token"),
    (np.zeros((3, 0), np.float32), "at least 1 dimension"),
    ([], "2-D array"),
    (np.ones(4, np.float32), "2-D array .* for one token use x\\[None, :\\]"),
    (np.ones((2, 2, 2), np.float32), "got 3-D"),
    (np.array([[1.0, np.nan]], np.float32), "NaN not allowed in multivec .*token 0, dimension 1"),
    (np.array([[1.0], [-np.inf]], np.float64), "infinite value not allowed"),
    (np.array([[1e39]], np.float64), "out of range for float32"),
    (np.array([[1, -128]], np.int8), "between -127 and 127"),
    (np.ones((8193, 2), np.float32), "more than 8192 tokens"),
    (np.ones((1, 16001), np.float32), "more than 16000 dimensions"),
])
def test_invalid_input_raises_on_the_client(bad, message):
    with pytest.raises(ValueError, match=message):
        MultiVector(bad)


def test_invalid_arguments():
    x = tokens(3)
    with pytest.raises(ValueError, match="out of range for float16"):
        MultiVector(x * 1e6, "float16")
    with pytest.raises(ValueError, match="unknown multivec format"):
        MultiVector(x, "bfloat16")
    with pytest.raises(ValueError, match="only for int8 codes"):
        MultiVector(x, scales=np.ones(7))
    with pytest.raises(ValueError, match="one entry per token"):
        MultiVector(np.ones((2, 3), np.int8), scales=[1.0])
    with pytest.raises(ValueError, match="finite and non-negative"):
        MultiVector(np.ones((2, 3), np.int8), scales=[1.0, -1.0])
    with pytest.raises(TypeError, match="real numbers"):
        MultiVector(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="not str"):
        MultiVector("[[1,2]]")
    with pytest.raises(ValueError, match="shorter than the 8-byte header"):
        MultiVector.from_binary(b"\x00\x00")
    with pytest.raises(ValueError, match="need 20 bytes, got 19"):
        MultiVector.from_binary(MultiVector(np.ones((1, 3), np.float32)).to_binary()[:-1])


# ---------------------------------------------------------------------------------------------------------------
# parameters and results

@pytest.mark.parametrize("fmt", MULTIVEC_FORMATS)
def test_binary_parameter_round_trip(clean, fmt):
    x = tokens(10)
    clean.execute("INSERT INTO mv (id, anyf, f32, f16, i8) VALUES (1, %b, %b, %b, %b)",
                  (MultiVector(x, fmt), x, x, x))
    (anyf, f32, f16, i8, sfmt), = fetch(clean, "SELECT anyf, f32, f16, i8, multivec_format(anyf) FROM mv")
    assert sfmt == fmt                                  # the wire format is the one asked for
    np.testing.assert_array_equal(anyf, expected_values(x, fmt))
    assert anyf.dtype == (np.float16 if fmt == "float16" else np.float32)
    # typed columns convert on the server exactly as the client does
    for got, f in ((f32, "float32"), (f16, "float16"), (i8, "int8")):
        np.testing.assert_array_equal(got, MultiVector(x, f).to_numpy())
        assert got.dtype == (np.float16 if f == "float16" else np.float32)


@pytest.mark.parametrize("fmt", MULTIVEC_FORMATS)
def test_text_parameter_round_trip(clean, fmt):
    x = tokens(11)
    m = MultiVector(x, fmt)
    clean.execute("INSERT INTO mv (id, anyf, i8) VALUES (1, %t, %t)", (m, m))
    (anyf, sfmt, i8), = fetch(clean, "SELECT anyf, multivec_format(anyf), i8 FROM mv", binary=False)
    assert sfmt == "float32"                            # the text form carries no format
    assert anyf.dtype == np.float32
    np.testing.assert_array_equal(anyf, m.to_numpy().astype(np.float32))
    # text results of typed columns: their (dequantized) values, as float32
    np.testing.assert_array_equal(i8, MultiVector(m.to_numpy().astype(np.float32), "int8").to_numpy())


def test_server_quantization_is_the_clients(clean):
    """int8 codes/scales and float16 bits the server stores equal MultiVector's, byte for byte."""
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((50, DIM)) * rng.uniform(1e-3, 10, (50, 1))).astype(np.float32)
    x[3] = 0.0
    clean.execute("INSERT INTO mv (id, f16, i8) VALUES (1, %b, %b)", (x, x))
    (f16, i8), = fetch(clean, "SELECT multivec_send(f16), multivec_send(i8) FROM mv")
    assert MultiVector.from_binary(f16) == MultiVector(x, "float16")
    assert MultiVector.from_binary(i8) == MultiVector(x, "int8")
    assert bytes(i8) == MultiVector(x, "int8").to_binary()


def test_numpy_arrays_dispatch_by_shape(conn):
    q, d = tokens(20, 4), tokens(21, 9)
    # 2-D arrays are multivec parameters, binary and text
    (s_bin,), = fetch(conn, "SELECT maxsim(%s, %s)", (d, q))
    (s_txt,), = fetch(conn, "SELECT maxsim(%t, %t)", (d, q))
    ref = float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())
    assert s_bin == pytest.approx(ref, abs=1e-5) and s_txt == pytest.approx(ref, abs=1e-5)
    (t16, t8), = fetch(conn, "SELECT multivec_format(%s), multivec_format(%s)",
                       (d.astype(np.float16), np.ones((2, 3), np.int8)))
    assert (t16, t8) == ("float16", "int8")
    # 1-D arrays are still pgvector vectors
    (typ, txt), = fetch(conn, "SELECT pg_typeof(%s)::text, %s::text", (q[0], np.array([1.0, 2.0], np.float32)))
    assert typ == "vector" and txt == "[1,2]"
    (typ,), = fetch(conn, "SELECT pg_typeof(%t)::text", (q[0],))
    assert typ == "vector"
    # and the operator works with a numpy query
    conn.execute("TRUNCATE mv")
    conn.execute("INSERT INTO mv (id, f32) VALUES (1, %s), (2, %s)", (d, q))
    ids = [r[0] for r in fetch(conn, "SELECT id FROM mv ORDER BY f32 @# %s LIMIT 2", (q,))]
    assert ids == [2, 1]


def test_registering_twice_keeps_one_dispatcher(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        register_pgsieve(c)
        register_pgsieve(c)
        (typ, fmt), = c.execute("SELECT pg_typeof(%s)::text, multivec_format(%s)",
                                (np.ones(3, np.float32), np.ones((2, 3), np.float32))).fetchall()
        assert (typ, fmt) == ("vector", "float32")


def test_bad_parameter_fails_before_the_server(conn):
    """A dumper error is the client's ValueError (nothing was sent), and the connection stays usable."""
    with pytest.raises(ValueError, match="NaN not allowed"):
        conn.execute("SELECT %s", (np.array([[1.0, np.nan]], np.float32),))
    with pytest.raises(ValueError, match="at least one token"):
        conn.execute("SELECT %t", (np.zeros((0, 3), np.float32),))
    assert conn.execute("SELECT 1").fetchone() == (1,)


# ---------------------------------------------------------------------------------------------------------------
# binary COPY

def copy_rows(conn, rows, column="anyf"):
    with conn.cursor() as cur:
        with cur.copy(f"COPY mv (id, {column}) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "multivec"])
            for r in rows:
                cp.write_row(r)


def copy_out(conn, column="anyf"):
    with conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT id, {column}, multivec_format({column}) FROM mv ORDER BY id) "
                      "TO STDOUT WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "multivec", "text"])
            return list(cp.rows())


def test_binary_copy_round_trip_every_format(clean):
    x = tokens(30, 11)
    codes, scales = kernels.quantize_i8(x)
    rows = [(1, MultiVector(x)), (2, MultiVector(x, "float16")), (3, MultiVector(x, "int8")),
            (4, x), (5, x.astype(np.float16)), (6, np.array([[5, -7, 127]], np.int8)),
            (7, MultiVector(codes, scales=scales)), (8, None)]
    copy_rows(clean, rows)
    out = copy_out(clean)
    assert [r[0] for r in out] == list(range(1, 9))
    want_fmt = ["float32", "float16", "int8", "float32", "float16", "int8", "int8", None]
    assert [r[2] for r in out] == want_fmt
    np.testing.assert_array_equal(out[0][1], x)
    np.testing.assert_array_equal(out[1][1], x.astype(np.float16))
    assert out[1][1].dtype == np.float16
    np.testing.assert_array_equal(out[2][1], expected_values(x, "int8"))
    np.testing.assert_array_equal(out[3][1], x)
    np.testing.assert_array_equal(out[4][1], x.astype(np.float16))
    np.testing.assert_array_equal(out[5][1], np.array([[5, -7, 127]], np.float32))
    np.testing.assert_array_equal(out[6][1], expected_values(x, "int8"))
    assert out[7][1] is None


@pytest.mark.parametrize("column, fmt", [("f32", "float32"), ("f16", "float16"), ("i8", "int8")])
def test_binary_copy_into_typed_columns(clean, column, fmt):
    xs = [tokens(40 + i, 3 + 5 * i) for i in range(20)]
    copy_rows(clean, [(i, x) for i, x in enumerate(xs)], column)
    out = copy_out(clean, column)
    assert len(out) == 20 and all(r[2] == fmt for r in out)
    for (_, got, _), x in zip(out, xs):
        np.testing.assert_array_equal(got, MultiVector(x, fmt).to_numpy())
    # typmod mismatch is the server's error
    with pytest.raises(psycopg.errors.DataException, match="expected 24 dimensions"):
        copy_rows(clean, [(100, np.ones((2, 5), np.float32))], column)


@pytest.mark.parametrize("bad, message", [
    (np.array([[np.inf, 1.0]], np.float32), "infinite value"),
    ([[1.0, 2.0], [3.0]], "same dimensions: token 0 has 2, token 1 has 1"),   # lists too, with set_types
    ([], "2-D array"),
])
def test_binary_copy_refuses_bad_rows_on_the_client(clean, bad, message):
    with pytest.raises(ValueError, match=message):
        copy_rows(clean, [(1, tokens(50)), (2, bad)])
    assert clean.execute("SELECT count(*) FROM mv").fetchone() == (0,)   # the COPY was aborted
    copy_rows(clean, [(3, [[1.0, 2.0], [3.0, 4.0]])])                    # a list of equal tokens is fine
    assert clean.execute("SELECT anyf::text FROM mv").fetchone() == ("[[1,2],[3,4]]",)


def test_async_registration(db_url):
    async def main():
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
            reg = await register_pgsieve_async(c)
            assert "multivec" in reg.types
            x = tokens(60)
            async with c.cursor(binary=True) as cur:
                await cur.execute("SELECT %s::multivec(24, float16)", (MultiVector(x),))
                (got,) = await cur.fetchone()
            np.testing.assert_array_equal(got, x.astype(np.float16))
    asyncio.run(main())
