"""MUVERA FDE (pgsieve FDE spec v1): an independent numpy reference, golden vectors, SQL == Python, quality.

The reference implementation below is written from the spec (README "MUVERA FDE", the comment block of
ext/kernels/pgs_fde.c) and shares no code with the kernel: if the two agree byte for byte on inputs built to
hit every rule (ties at zero, -0.0, order-sensitive sums, fill ties, every dispatch level), the kernel
implements the spec.  tests/data/fde_golden.json then pins the bytes against future drift, for the client
and the server alike.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import psycopg
import pytest

from pgsieve import kernels as K
from pgsieve._kernels import lib
from pgsieve.fde import SPEC, FdeParams, fde_document, fde_documents, fde_queries, fde_query

GOLDEN = Path(__file__).parent / "data" / "fde_golden.json"
LEVELS = K.available_levels()

# ---------------------------------------------------------------------------
# the reference, from the spec
# ---------------------------------------------------------------------------

U64 = np.uint64


def sm64(z: np.ndarray) -> np.ndarray:
    """One SplitMix64 output step on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(z, dtype=U64)
    with np.errstate(over="ignore"):
        z = z + U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


def draw(seed: int, rep: int, stream: int, index: np.ndarray) -> np.ndarray:
    seed_u = np.array([seed & (2**64 - 1)], dtype=U64)
    key = sm64(sm64(sm64(seed_u) ^ U64(rep)) ^ U64(stream))
    return sm64(key ^ np.asarray(index, dtype=U64))


def bucket(u: np.ndarray, n: int) -> np.ndarray:
    return (((u >> U64(32)) * U64(n)) >> U64(32)).astype(np.int64)


def ref_fde(x: np.ndarray, is_query: bool, p: FdeParams) -> np.ndarray:
    """The spec, step by step, with explicit loops wherever summation order matters."""
    n, d = x.shape
    dp = p.dproj or d
    nb = 1 << p.ksim
    fill = p.fill_empty and not is_query
    x64 = x.astype(np.float64)
    coords = np.arange(d, dtype=U64)
    g_all = np.zeros(p.reps * nb * dp)
    for r in range(p.reps):
        # 2. SimHash: Rademacher signs from bits 63, 62, ... of draw(seed, r, 1, i)
        labels = np.zeros(n, dtype=np.int64)
        if p.ksim:
            u = draw(p.seed, r, 1, coords)
            shifts = U64(63) - np.arange(p.ksim, dtype=U64)
            signs = np.where((u[:, None] >> shifts[None, :]) & U64(1), -1.0, 1.0)  # (d, ksim)
            h = np.zeros((n, p.ksim))
            for i in range(d):  # float64, increasing i, from +0.0
                h = h + signs[i][None, :] * x64[:, i : i + 1]
            labels = ((h > 0).astype(np.int64) << np.arange(p.ksim)).sum(axis=1)
        # 3. inner projection
        if p.dproj:
            u = draw(p.seed, r, 2, coords)
            col = bucket(u, p.dproj)
            sgn = np.where(u & U64(1), -1.0, 1.0)
            y = np.zeros((n, dp))
            for i in range(d):
                y[:, col[i]] = y[:, col[i]] + sgn[i] * x64[:, i]
        else:
            y = x64
        # 4. blocks
        v = np.zeros((nb, dp))
        cnt = np.zeros(nb, dtype=np.int64)
        for t in range(n):
            v[labels[t]] = v[labels[t]] + y[t]
            cnt[labels[t]] += 1
        if not is_query:
            for q in range(nb):
                if cnt[q]:
                    v[q] = v[q] / float(cnt[q])
                elif fill:
                    ham = np.array([bin(int(lab) ^ q).count("1") for lab in labels])
                    v[q] = y[int(np.argmin(ham))]  # argmin: the first (lowest t) of the minima
        g_all[r * nb * dp : (r + 1) * nb * dp] = v.reshape(-1)
    if p.final_dim:
        u = draw(p.seed, 0, 3, np.arange(g_all.size, dtype=U64))
        h = bucket(u, p.final_dim)
        signed = np.where(u & U64(1), -g_all, g_all)
        out = np.zeros(p.final_dim)
        for m in range(g_all.size):  # increasing m
            out[h[m]] += signed[m]
        g_all = out
    return g_all.astype(np.float32)


# ---------------------------------------------------------------------------
# inputs that exercise every rule
# ---------------------------------------------------------------------------

def tricky_tokens(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Gaussian tokens plus rows that create exact ties, -0.0, duplicates and order-sensitive sums."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    if n >= 2:
        x[1] = rng.integers(-1, 2, d).astype(np.float32)  # small integers: SimHash dots are often exactly 0
    if n >= 3:
        x[2] = 0.0
        x[2, :: 2] = -0.0  # a zero token (every bit 0), with negative zeros to carry through copies
    if n >= 4:
        x[3] = x[0]  # duplicate label: fill ties go to the lower index
    if n >= 5 and d >= 3:
        x[4] = 1.0
        x[4, 0], x[4, 1] = 1e20, -1e20  # (1e20 + s) - 1e20 depends on the order of the sum
    if n >= 6:
        x[5] *= np.float32(1e-30)  # tiny magnitudes
    return x


def random_params(rng: np.random.Generator, d: int) -> FdeParams:
    return FdeParams(
        dim=d,
        reps=int(rng.choice([1, 2, 3])),
        ksim=int(rng.choice([0, 1, 2, 3, 5, 7, 9])),
        dproj=int(rng.choice([0, 1, 3, 8, 16, 24, 40])),
        seed=int(rng.integers(-(2**63), 2**63 - 1)),
        final_dim=int(rng.choice([0, 0, 1, 37, 64])),
        fill_empty=bool(rng.integers(0, 2)),
    )


CASES = list(range(48))


def case_inputs(case: int) -> tuple[np.ndarray, FdeParams, bool]:
    rng = np.random.default_rng(1000 + case)
    d = int(rng.choice([1, 3, 8, 16, 24, 33]))
    n = int(rng.choice([1, 2, 5, 7, 16, 17, 40]))
    return tricky_tokens(rng, n, d), random_params(rng, d), bool(rng.integers(0, 2))


def encode(x: np.ndarray, p: FdeParams, is_query: bool) -> np.ndarray:
    return fde_query(x, p) if is_query else fde_document(x, p)


# ---------------------------------------------------------------------------
# kernel == reference
# ---------------------------------------------------------------------------

def test_prng_is_splitmix64() -> None:
    # sm64(0) and sm64(gamma) are the first two outputs of the published SplitMix64 seeded with 0
    assert [int(v) for v in sm64(np.array([0, 0x9E3779B97F4A7C15], dtype=U64))] == [
        0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]
    rng = np.random.default_rng(7)
    for _ in range(200):
        seed, rep, stream, index = (int(v) for v in rng.integers(0, 2**63, 4, dtype=np.int64))
        seed = seed * 2 + int(rng.integers(0, 2))  # full uint64 range
        assert lib.pgs_fde_draw(seed, rep, stream, index) == int(draw(seed, rep, stream, [index])[0])


@pytest.mark.parametrize("case", CASES)
def test_kernel_matches_reference(case: int) -> None:
    x, p, is_query = case_inputs(case)
    want = ref_fde(x, is_query, p)
    for lvl in LEVELS:
        with K.using_level(lvl):
            got = encode(x, p, is_query)
        assert got.tobytes() == want.tobytes(), f"level {lvl}, {p}, query={is_query}"


@pytest.mark.parametrize("ksim", [1, 3, 6, 8, 9, 15])
@pytest.mark.parametrize("dproj", [0, 8, 16])
def test_kernel_matches_reference_paper_shapes(ksim: int, dproj: int) -> None:
    """ColBERT-like shapes: every SimHash group split of every level, with and without AMS."""
    rng = np.random.default_rng(ksim * 100 + dproj)
    q = tricky_tokens(rng, 32, 128)
    doc = tricky_tokens(rng, 45, 128)
    reps = 2 if ksim < 9 else 1
    p = FdeParams(128, reps=reps, ksim=ksim, dproj=dproj, seed=int(rng.integers(0, 2**62)),
                  final_dim=0 if ksim < 9 else 512)
    want_q, want_d = ref_fde(q, True, p), ref_fde(doc, False, p)
    for lvl in LEVELS:
        with K.using_level(lvl):
            assert fde_query(q, p).tobytes() == want_q.tobytes(), lvl
            assert fde_document(doc, p).tobytes() == want_d.tobytes(), lvl


def test_summation_order_is_the_specified_one() -> None:
    """A token whose SimHash dot is 0 only when summed in increasing coordinate order."""
    x = np.array([[1e20, 1.0, -1e20]], dtype=np.float32)
    p = FdeParams(3, reps=16, ksim=1, dproj=0)
    fde = fde_query(x, p)
    assert fde.tobytes() == ref_fde(x, True, p).tobytes()
    # When the signs of coordinates 0 and 2 agree, the sequential sum (s0*1e20 + s1*1) - s0*1e20 is exactly 0
    # (the 1 is lost against 1e20): bit 0, partition 0.  Summing the two big terms first would leave s1 and
    # put the token in partition 1 whenever s1 = +1.  Check that the repetitions with such signs chose 0.
    checked = 0
    for r in range(p.reps):
        s = np.where(draw(p.seed, r, 1, np.arange(3, dtype=U64)) >> U64(63), -1, 1)
        block = fde[r * 2 * 3 : (r + 1) * 2 * 3].reshape(2, 3)
        if s[0] == s[2] and s[1] == 1:
            assert block[0].tolist() == x[0].tolist() and not block[1].any(), r
            checked += 1
    assert checked >= 1


def test_query_document_and_fill_semantics() -> None:
    """Hand-checkable: identity projection, one SimHash bit, tokens on both sides of the hyperplane."""
    p = FdeParams(2, reps=1, ksim=1, dproj=0, seed=5)
    sign = -1.0 if int(draw(5, 0, 1, [0])[0]) >> 63 else 1.0
    sign1 = -1.0 if int(draw(5, 0, 1, [1])[0]) >> 63 else 1.0
    a = np.array([sign * 2.0, 0.0], dtype=np.float32)  # dot 2 > 0: partition 1
    b = np.array([sign * 4.0, 0.0], dtype=np.float32)
    c = np.array([0.0, -sign1 * 1.0], dtype=np.float32)  # dot -1: partition 0
    q = fde_query(np.stack([a, b, c]), p).reshape(2, 2)
    assert q[1].tolist() == (a + b).tolist() and q[0].tolist() == c.tolist()  # SUM
    d = fde_document(np.stack([a, b, c]), p).reshape(2, 2)
    assert d[1].tolist() == ((a + b) / 2).tolist() and d[0].tolist() == c.tolist()  # AVERAGE
    filled = fde_document(np.stack([a, b]), p).reshape(2, 2)
    assert filled[0].tolist() == a.tolist()  # empty partition 0 takes the first of the tied tokens
    unfilled = fde_document(np.stack([a, b]), FdeParams(2, reps=1, ksim=1, dproj=0, seed=5,
                                                        fill_empty=False)).reshape(2, 2)
    assert not unfilled[0].any()
    assert not fde_query(np.stack([a, b]), p).reshape(2, 2)[0].any()  # queries are never filled


def test_batch_helpers_equal_single_calls() -> None:
    rng = np.random.default_rng(3)
    p = FdeParams(16, reps=4, ksim=3, dproj=8)
    mats = [rng.standard_normal((int(k), 16)).astype(np.float32) for k in (1, 9, 30, 4)]
    qs, ds = fde_queries(mats, p), fde_documents(mats, p)
    assert qs.shape == ds.shape == (4, p.output_dim) and qs.dtype == np.float32
    for i, m in enumerate(mats):
        assert qs[i].tobytes() == fde_query(m, p).tobytes()
        assert ds[i].tobytes() == fde_document(m, p).tobytes()
    assert fde_queries([], p).shape == (0, p.output_dim)


# ---------------------------------------------------------------------------
# FdeParams and input validation
# ---------------------------------------------------------------------------

def test_params_defaults_dims_and_dict_round_trip() -> None:
    p = FdeParams(128)
    assert (p.reps, p.ksim, p.dproj, p.seed, p.final_dim, p.fill_empty) == (20, 5, 16, 42, 0, True)
    assert p.output_dim == 20 * 32 * 16 == 10240
    assert FdeParams(128, dproj=0, reps=2, ksim=2).output_dim == 2 * 4 * 128
    assert FdeParams(128, final_dim=999).output_dim == 999
    d = json.loads(json.dumps(FdeParams(64, seed=-5, final_dim=100).to_dict()))
    assert d["spec"] == SPEC and FdeParams.from_dict(d) == FdeParams(64, seed=-5, final_dim=100)
    with pytest.raises(ValueError, match="spec"):
        FdeParams.from_dict({**d, "spec": "pgsieve-fde-0"})
    with pytest.raises(ValueError, match="unknown"):
        FdeParams.from_dict({**d, "colour": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.reps = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"dim": 0}, ValueError, "token dimension"),
        ({"dim": 70000}, ValueError, "token dimension"),
        ({"dim": 8, "reps": 0}, ValueError, "reps"),
        ({"dim": 8, "ksim": -1}, ValueError, "ksim"),
        ({"dim": 8, "ksim": 16}, ValueError, "ksim"),
        ({"dim": 8, "dproj": -2}, ValueError, "dproj"),
        ({"dim": 8, "final_dim": -1}, ValueError, "final_dim"),
        ({"dim": 8, "final_dim": 2**24 + 1}, ValueError, "final_dim"),
        ({"dim": 8, "reps": 4096, "ksim": 15, "dproj": 8}, ValueError, "must not exceed"),
        ({"dim": 8, "seed": 2**63}, ValueError, "bigint"),
        ({"dim": 8, "reps": 2.0}, TypeError, "reps must be an int"),
        ({"dim": True}, TypeError, "dim must be an int"),
        ({"dim": 8, "fill_empty": 1}, TypeError, "fill_empty must be a bool"),
    ],
)
def test_params_rejected(kwargs: dict, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        FdeParams(**kwargs)


def test_token_inputs_rejected() -> None:
    p = FdeParams(4, reps=1, ksim=1, dproj=0)
    good = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="float32"):
        fde_query(good.astype(np.float64), p)
    with pytest.raises(ValueError, match="2-D"):
        fde_query(good[0], p)
    with pytest.raises(ValueError, match="at least one token"):
        fde_query(good[:0], p)
    with pytest.raises(ValueError, match="dimensions but params.dim"):
        fde_query(np.ones((2, 5), dtype=np.float32), p)
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fde_document(bad, p)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="Inf"):
        fde_documents([good, bad], p)
    with pytest.raises(ValueError, match="overflows float32"):
        fde_query(np.full((4, 4), 3e38, dtype=np.float32), p)  # the SUM of 4 such tokens
    with pytest.raises(TypeError, match="FdeParams"):
        fde_query(good, {"dim": 4})  # type: ignore[arg-type]
    # a strided view is fine: it is copied, values unchanged
    wide = np.ones((2, 8), dtype=np.float32)
    assert fde_query(wide[:, ::2], p).tobytes() == fde_query(good, p).tobytes()


def test_kernel_rejects_bad_calls_directly() -> None:
    """The C entry point checks what the wrappers check (the SQL side relies on it too)."""
    from pgsieve._kernels import ffi

    p = FdeParams(4, reps=1, ksim=2, dproj=0)._c_params(is_query=False)
    p.fill_empty = 1
    x = np.ones((3, 4), dtype=np.float32)
    out = np.empty(16, dtype=np.float32)
    need = lib.pgs_fde_scratch_bytes(p, 3)
    scratch = np.empty(need, dtype=np.uint8)
    args = (ffi.cast("float *", ffi.from_buffer(x)), 3, ffi.cast("float *", ffi.from_buffer(out)))
    assert lib.pgs_fde_encode(p, 1, *args, ffi.from_buffer(scratch), need) == lib.PGS_FDE_ERR_FILL_QUERY
    assert lib.pgs_fde_encode(p, 0, *args, ffi.from_buffer(scratch), need - 1) == lib.PGS_FDE_ERR_SCRATCH
    assert lib.pgs_fde_encode(p, 0, args[0], 0, args[2], ffi.from_buffer(scratch), need) \
        == lib.PGS_FDE_ERR_NO_TOKENS
    x[2, 3] = np.nan
    assert lib.pgs_fde_encode(p, 0, *args, ffi.from_buffer(scratch), need) == lib.PGS_FDE_ERR_NONFINITE
    assert lib.pgs_fde_scratch_bytes(p, 0) == 0 and lib.pgs_fde_scratch_bytes(p, 2**20 + 1) == 0


def test_kernel_calls_the_interrupt_check() -> None:
    """The extension passes CHECK_FOR_INTERRUPTS as this callback: once per repetition and per 1024 tokens."""
    from pgsieve._kernels import ffi

    p = FdeParams(8, reps=3, ksim=2, dproj=4)
    x = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    cp = p._c_params(is_query=True)
    need = lib.pgs_fde_scratch_bytes(cp, 3000)
    scratch = np.empty(need, dtype=np.uint8)
    out = np.empty(p.output_dim, dtype=np.float32)
    calls = []

    @ffi.callback("void(void *)")
    def check(arg: object) -> None:
        calls.append(1)

    rc = lib.pgs_fde_encode_interruptible(
        cp, 1, ffi.cast("float *", ffi.from_buffer(x)), 3000, ffi.cast("float *", ffi.from_buffer(out)),
        ffi.from_buffer(scratch), need, check, ffi.NULL)
    assert rc == lib.PGS_FDE_OK
    assert len(calls) == 3 * (1 + 2)  # per repetition, and after blocks 1024 and 2048 of each
    assert out.tobytes() == fde_query(x, p).tobytes()


# ---------------------------------------------------------------------------
# golden vectors
# ---------------------------------------------------------------------------

def golden_cases() -> list[dict]:
    with open(GOLDEN, encoding="utf-8") as f:
        data = json.load(f)
    assert data["spec"] == SPEC
    return data["cases"]


def golden_inputs(case: dict) -> tuple[np.ndarray, FdeParams, bool, np.ndarray]:
    x = np.frombuffer(bytes.fromhex(case["tokens_f32le"]), dtype="<f4").reshape(case["shape"])
    want = np.frombuffer(bytes.fromhex(case["fde_f32le"]), dtype="<f4")
    return x.astype(np.float32), FdeParams.from_dict(case["params"]), case["is_query"], want


def test_golden_file_is_substantial() -> None:
    cases = golden_cases()
    assert len(cases) >= 8
    assert {c["is_query"] for c in cases} == {True, False}
    kinds = {(c["params"]["dproj"] > 0, c["params"]["final_dim"] > 0, c["params"]["ksim"] > 0) for c in cases}
    assert len(kinds) >= 5


@pytest.mark.parametrize("index", range(len(golden_cases())))
def test_golden_python(index: int) -> None:
    x, p, is_query, want = golden_inputs(golden_cases()[index])
    assert ref_fde(x, is_query, p).tobytes() == want.tobytes(), "the reference drifted from the golden file"
    for lvl in LEVELS:
        with K.using_level(lvl):
            assert encode(x, p, is_query).tobytes() == want.tobytes(), lvl


# ---------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------

def f32_literal(v: float) -> str:
    """Shortest text that float4in reads back as exactly this float32 (keeps -0)."""
    return np.format_float_scientific(np.float32(v), unique=True, trim="-")


def real_matrix_literal(x: np.ndarray) -> str:
    return "{" + ",".join("{" + ",".join(f32_literal(v) for v in row) + "}" for row in x) + "}"


def vector_array_literal(x: np.ndarray) -> str:
    return "{" + ",".join('"[' + ",".join(f32_literal(v) for v in row) + ']"' for row in x) + "}"


def sql_params(p: FdeParams) -> dict:
    return {"reps": p.reps, "ksim": p.ksim, "dproj": p.dproj, "seed": p.seed, "final_dim": p.final_dim,
            "fill": p.fill_empty}


SQL_REAL = ("SELECT muvera_fde(%(t)s::real[], %(q)s, reps => %(reps)s, ksim => %(ksim)s, dproj => %(dproj)s, "
            "seed => %(seed)s, fill_empty => %(fill)s, final_dim => %(final_dim)s)::real[]")
SQL_VECTOR = SQL_REAL.replace("::real[], %(q)s", "::vector[], %(q)s")


def sql_fde(db: psycopg.Connection, x: np.ndarray, p: FdeParams, is_query: bool, *, as_vectors: bool = False
            ) -> np.ndarray:
    args = {**sql_params(p), "q": is_query,
            "t": vector_array_literal(x) if as_vectors else real_matrix_literal(x)}
    if is_query:
        args["fill"] = None  # the default: false for queries (true would be an error)
    row = db.execute(SQL_VECTOR if as_vectors else SQL_REAL, args).fetchone()
    return np.array(row[0], dtype=np.float32)


@pytest.mark.parametrize("index", range(len(golden_cases())))
def test_golden_sql(db: psycopg.Connection, index: int) -> None:
    x, p, is_query, want = golden_inputs(golden_cases()[index])
    assert sql_fde(db, x, p, is_query).tobytes() == want.tobytes()
    assert sql_fde(db, x, p, is_query, as_vectors=True).tobytes() == want.tobytes()


@pytest.mark.parametrize("case", CASES[:24])
def test_sql_equals_python(db: psycopg.Connection, case: int) -> None:
    x, p, is_query = case_inputs(case)
    if p.output_dim > 16000:  # longer than a vector: the SQL function needs a final count-sketch
        p = dataclasses.replace(p, final_dim=1000)
    want = encode(x, p, is_query)
    assert sql_fde(db, x, p, is_query).tobytes() == want.tobytes()
    assert sql_fde(db, x, p, is_query, as_vectors=True).tobytes() == want.tobytes()


def test_sql_defaults_equal_python_defaults(db: psycopg.Connection) -> None:
    rng = np.random.default_rng(11)
    q = rng.standard_normal((32, 128)).astype(np.float32)
    doc = rng.standard_normal((70, 128)).astype(np.float32)
    p = FdeParams(128)
    got_q = db.execute("SELECT muvera_fde(%s::real[], true)::real[]", (real_matrix_literal(q),)).fetchone()[0]
    got_d = db.execute("SELECT muvera_fde(%s::vector[], false)::real[]", (vector_array_literal(doc),)).fetchone()[0]
    assert np.array(got_q, dtype=np.float32).tobytes() == fde_query(q, p).tobytes()
    assert np.array(got_d, dtype=np.float32).tobytes() == fde_document(doc, p).tobytes()
    # and the documented shape of the default: vector(10240)
    assert db.execute("SELECT vector_dims(muvera_fde(%s::real[], true))", (real_matrix_literal(q),)
                      ).fetchone()[0] == 10240


def test_sql_null_handling(db: psycopg.Connection) -> None:
    assert db.execute("SELECT muvera_fde(NULL::real[], true)").fetchone()[0] is None
    assert db.execute("SELECT muvera_fde(NULL::vector[], false)").fetchone()[0] is None
    # fill_empty NULL = the default for the side; explicit false on a document differs when a partition is empty
    t = "'{{1,0},{2,0}}'::real[]"
    default, explicit = db.execute(
        f"SELECT muvera_fde({t}, false, reps => 1, ksim => 1, dproj => 0, fill_empty => NULL)::text,"
        f"       muvera_fde({t}, false, reps => 1, ksim => 1, dproj => 0, fill_empty => true)::text").fetchone()
    assert default == explicit


SQL_ERRORS = [
    # (tokens, extra arguments, sqlstate, message pattern)
    ("'{{1,2},{3,4}}'::real[]", ", reps => 0", "22023", r"muvera_fde: reps must be between 1 and 4096"),
    ("'{{1,2},{3,4}}'::real[]", ", ksim => 16", "22023", r"muvera_fde: ksim must be between 0 and 15"),
    ("'{{1,2},{3,4}}'::real[]", ", dproj => -1", "22023", r"muvera_fde: dproj must be between"),
    ("'{{1,2},{3,4}}'::real[]", ", final_dim => -3", "22023", r"muvera_fde: final_dim must be between"),
    ("'{{1,2},{3,4}}'::real[]", ", fill_empty => true", "22023", r"muvera_fde: fill_empty applies to documents only"),
    ("'{{1,2},{3,4}}'::real[]", ", reps => NULL", "22004", r"muvera_fde: reps must not be NULL"),
    ("'{{1,2},{3,4}}'::real[]", ", seed => NULL", "22004", r"muvera_fde: seed must not be NULL"),
    ("'{1,2,3}'::real[]", "", "22000", r"muvera_fde: tokens must be a two-dimensional real\[\]"),
    ("'{}'::real[]", "", "22000", r"muvera_fde: tokens must not be empty"),
    ("'{{1,NULL},{3,4}}'::real[]", "", "22004", r"muvera_fde: tokens must not contain NULLs"),
    ("'{{1,2},{3,NaN}}'::real[]", "", "22000", r"muvera_fde: token 2 contains NaN at dimension 2"),
    ("'{{1,2},{Infinity,4}}'::real[]", "", "22000", r"muvera_fde: token 2 contains Infinity at dimension 1"),
    ("'{{3e38,3e38},{3e38,3e38}}'::real[]", ", ksim => 0, dproj => 0", "22003", r"muvera_fde: the encoding overflows"),
    ("'{{1,2},{3,4}}'::real[]", ", dproj => 0, ksim => 7, reps => 100", "54000",
     r"muvera_fde: the encoding would have 25600 dimensions, more than vector's 16000"),
    ("'{\"[1,2]\",\"[1,2,3]\"}'::vector[]", "", "22000", r"muvera_fde: tokens have different dimensions 2 and 3"),
    ("'{\"[1,2]\",NULL}'::vector[]", "", "22004", r"muvera_fde: tokens must not contain NULLs \(token 2 is NULL\)"),
    ("'{}'::vector[]", "", "22000", r"muvera_fde: tokens must not be empty"),
    ("'{{\"[1,2]\"}}'::vector[]", "", "22000", r"muvera_fde: tokens must be a one-dimensional vector\[\]"),
]


@pytest.mark.parametrize(("tokens", "extra", "sqlstate", "pattern"), SQL_ERRORS)
def test_sql_errors(db: psycopg.Connection, tokens: str, extra: str, sqlstate: str, pattern: str) -> None:
    with pytest.raises(psycopg.Error) as info:
        db.execute(f"SELECT muvera_fde({tokens}, true{extra})")
    assert info.value.sqlstate == sqlstate, info.value
    assert re.search(pattern, str(info.value)), str(info.value)
    assert db.execute("SELECT 1").fetchone() == (1,)  # the backend survived


def test_sql_too_long_hint_and_final_dim_way_out(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error) as info:
        db.execute("SELECT muvera_fde('{{1,2}}'::real[], false, dproj => 0, ksim => 7, reps => 100)")
    assert "final_dim" in (info.value.diag.message_hint or "")
    dims = db.execute("SELECT vector_dims(muvera_fde('{{1,2}}'::real[], false, dproj => 0, ksim => 7, "
                      "reps => 100, final_dim => 2000))").fetchone()[0]
    assert dims == 2000


def test_sql_function_properties(db: psycopg.Connection) -> None:
    rows = db.execute(
        "SELECT p.provolatile, p.proisstrict, p.proparallel, pg_get_function_arguments(p.oid) "
        "FROM pg_proc p WHERE p.proname = 'muvera_fde' ORDER BY 4").fetchall()
    assert [args.split(",")[0] for *_, args in rows] == ["tokens multivec", "tokens real[]", "tokens vector[]"]
    for vol, strict, par, args in rows:
        assert (vol, strict, par) == ("i", False, "s")
        assert "fill_empty boolean DEFAULT NULL::boolean" in args and "seed bigint DEFAULT 42" in args


# ---------------------------------------------------------------------------
# quality: FDE inner products rank like MaxSim
# ---------------------------------------------------------------------------

def clustered_corpus(rng: np.random.Generator, n_docs: int, n_queries: int, dim: int = 128
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Unit-vector tokens around topic centres; a query mixes topics of one document plus noise."""
    topics = rng.standard_normal((200, dim))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)

    def tokens(topic_ids: np.ndarray, n: int, spread: float) -> np.ndarray:
        centres = topics[rng.choice(topic_ids, n)]
        t = centres + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
        return (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32)

    doc_topics = [rng.choice(200, 6, replace=False) for _ in range(n_docs)]
    docs = [tokens(tt, int(rng.integers(50, 151)), 0.8) for tt in doc_topics]
    queries = []
    for j in range(n_queries):
        src = doc_topics[int(rng.integers(n_docs))]
        mix = np.concatenate([rng.choice(src, 3, replace=False), rng.choice(200, 1)])
        queries.append(tokens(mix, 32, 1.0))
    return docs, queries


def maxsim(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    allt = np.concatenate(docs).astype(np.float64)
    sims = q.astype(np.float64) @ allt.T
    starts = np.cumsum([0] + [len(d) for d in docs[:-1]])
    return np.maximum.reduceat(sims, starts, axis=1).sum(axis=0)


def test_fde_ranking_recalls_maxsim_top10() -> None:
    rng = np.random.default_rng(2024)
    docs, queries = clustered_corpus(rng, n_docs=600, n_queries=20)
    p = FdeParams(128)  # the paper's main setting: R=20, ksim=5, dproj=16
    dfde = fde_documents(docs, p).astype(np.float64)
    qfde = fde_queries(queries, p).astype(np.float64)
    in_top100, in_top10, random_top100 = [], [], []
    for q, fq in zip(queries, qfde):
        truth = set(np.argsort(-maxsim(q, docs))[:10].tolist())
        by_fde = np.argsort(-(dfde @ fq))
        in_top100.append(len(truth & set(by_fde[:100].tolist())) / 10)
        in_top10.append(len(truth & set(by_fde[:10].tolist())) / 10)
        random_top100.append(len(truth & set(rng.choice(len(docs), 100, replace=False).tolist())) / 10)
    # Measured on this corpus (README): recall of the MaxSim top-10 in the FDE top-100 = 1.00 (0.96-0.99 with
    # smaller or final-projected FDEs), in the FDE top-10 = 0.60; a random top-100 of 600 holds 0.17 of them.
    assert float(np.mean(in_top100)) >= 0.9, in_top100
    assert float(np.mean(in_top10)) >= 0.45, in_top10
    assert float(np.mean(in_top100)) >= float(np.mean(random_top100)) + 0.6
