"""Robustness of the binary SQL surface: bad input gives clean errors naming the type, fuzzing crashes nothing.

Covers ``hamming``, ``jaccard``, ``bit_quantize``, ``bit_thresholds``, ``bit_ip`` (ext/bitfuncs.c) and the
``binary_scan`` index access method (ext/binary_scan/) with property-based inputs (hypothesis, derandomized so CI
is deterministic):

* random bit strings (0..5000 bits, equal and unequal lengths) checked bit-exactly against pgvector's ``<~>`` /
  ``<%>`` and a Python reference;
* random float vectors with NaN / +-Inf / huge / tiny / subnormal values, through pgvector's input and then
  ``bit_quantize`` with random (often wrong) threshold arrays, and the ``bit_thresholds`` aggregate;
* malformed text literals of vector / halfvec / bit / real[] in casts and in INSERTs into indexed tables;
* binary COPY into indexed tables: ``write_row`` of bad values and raw streams truncated or with flipped bytes;
* dimension mismatches, empty and huge values, mismatched query dimensions, the ``pgsieve.binary_rerank`` GUC;
* random INSERT / UPDATE / DELETE / VACUUM / REINDEX sequences, random index queries (wild values, filters, tiny
  re-rank), LATERAL re-scans, two interleaved sessions: index scans equal sequential scans throughout;
* index definitions binary_scan cannot serve (multicolumn, INCLUDE, CLUSTER, bad reloptions, foreign types).

``test_unqualified_index_scan_keeps_null_rows`` guards a fixed bug: binary_scan once dropped NULL rows from scans
without ORDER BY; it now keeps their TIDs on null pages and returns them last.

Many inputs go to the server in one round trip: ``fz_try`` (a PL/pgSQL helper created in the module's database)
runs one statement in a subtransaction and returns ``OK:<value>`` or ``ERR:<sqlstate>:<message>``, and a batch is
one ``SELECT fz_try(...) FROM unnest(...)``.  A C-level crash cannot be caught that way: it kills the backend (the
batch then raises ``OperationalError``) and makes the postmaster restart every backend.  After every batch the
guard opens a fresh connection, and checks that a sentinel connection opened at the start of the module is still
the same backend (a crash restart terminates it) and that ``pg_postmaster_start_time()`` is unchanged (on its own
that is not enough: PostgreSQL 18 keeps the start time across a crash restart).
"""

from __future__ import annotations

import collections
import math
import random
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# ---------------------------------------------------------------------------------------------------------------
# bookkeeping

#: inputs sent to the server, per category (printed by the last test)
COUNTS: collections.Counter[str] = collections.Counter()
T_START = time.monotonic()


def fuzz_settings(n: int) -> settings:
    """Deterministic hypothesis settings: fixed derandomized seed, no example database, no deadline."""
    return settings(max_examples=n, derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=list(HealthCheck))


#: SQLSTATE classes that are never a clean user-facing error: internal error / corruption, system error,
#: connection exceptions, operator intervention (crash shutdown).  08P01 (protocol violation) is the clean
#: "insufficient data left in message" of a binary input function reading a short value, so it is allowed.
BAD_SQLSTATE_CLASSES = ("XX", "58", "08", "57")


def unclean_state(state: str | None) -> bool:
    return state is None or (state.startswith(BAD_SQLSTATE_CLASSES) and state != "08P01")


def connection_lost(e: psycopg.Error, c: psycopg.Connection | None = None) -> bool:
    """A lost backend shows as an error without SQLSTATE ("server closed the connection unexpectedly").
    (psycopg maps some clean SQL errors, e.g. class 54 program_limit_exceeded, to OperationalError too.)"""
    return e.sqlstate is None or (c is not None and c.broken)


@dataclass
class Guard:
    """Crash detector: fresh-connection liveness, sentinel backend identity and postmaster start time."""

    url: str
    sentinel: psycopg.Connection
    start_time: object
    sentinel_pid: int
    checks: int = 0

    def check(self, what: str = "") -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as fresh:
                assert fresh.execute("SELECT 1").fetchone() == (1,)
                now = fresh.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
            pid = self.sentinel.execute("SELECT pg_backend_pid()").fetchone()[0]
        except psycopg.OperationalError as e:  # pragma: no cover - only on a crash
            pytest.fail(f"server crashed or connection lost ({what}): {e}")
        assert now == self.start_time, f"postmaster restarted ({what})"
        assert pid == self.sentinel_pid, f"sentinel backend replaced: crash restart ({what})"
        self.checks += 1


@pytest.fixture(scope="module")
def guard(db_url: str) -> Iterator[Guard]:
    sentinel = psycopg.connect(db_url, autocommit=True)
    start = sentinel.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    pid = sentinel.execute("SELECT pg_backend_pid()").fetchone()[0]
    g = Guard(db_url, sentinel, start, pid)
    try:
        yield g
        g.check("end of module")
    finally:
        sentinel.close()


FZ_TRY = """
CREATE OR REPLACE FUNCTION fz_try(q text, a text, b text, c text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
    EXECUTE q INTO r USING a, b, c;
    RETURN 'OK:' || coalesce(r, '<NULL>');
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERR:' || SQLSTATE || ':' || SQLERRM;
END $$;
"""


@pytest.fixture(scope="module")
def conn(db: psycopg.Connection, guard: Guard) -> psycopg.Connection:
    """The module's autocommit connection with the fz_try helper and the extension library loaded."""
    # no server-side prepared statements: a cached generic plan would ignore the enable_* settings that the
    # index-vs-seq-scan comparisons switch between
    db.prepare_threshold = None
    db.execute(FZ_TRY)
    # load pgsieve.so in this session so that its GUCs are real (not placeholders)
    db.execute("SELECT hamming(B'1', B'1')")
    return db


@dataclass
class Res:
    ok: bool
    value: str | None = None  # OK: the statement's single text value ('<NULL>' for NULL)
    state: str | None = None  # ERR: SQLSTATE
    msg: str | None = None  # ERR: message


Item = tuple[str, str | None, str | None, str | None]


def run_batch(conn: psycopg.Connection, guard: Guard, items: Sequence[Item], category: str) -> list[Res]:
    """Evaluate many statements (q, $1, $2, $3) in one round trip; each runs in its own subtransaction."""
    if not items:
        return []
    cols = list(zip(*items))
    try:
        rows = conn.execute(
            "SELECT fz_try(q, a, b, c) FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
            "WITH ORDINALITY AS u(q, a, b, c, n) ORDER BY n",
            [list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3])]).fetchall()
    except psycopg.Error as e:  # pragma: no cover - only on a crash
        if not connection_lost(e, conn):
            raise
        sample = "\n".join(repr(tuple(s if s is None or len(s) < 200 else s[:200] + "...") for s in it)
                           for it in items[:20])
        pytest.fail(f"backend lost during a {category} batch: {e}\nfirst items:\n{sample}")
    guard.check(category)
    COUNTS[category] += len(items)
    COUNTS[f"{category} (errors)"] += sum(1 for (r,) in rows if r.startswith("ERR:"))
    out = []
    for (r,), item in zip(rows, items):
        if r.startswith("OK:"):
            out.append(Res(True, value=r[3:]))
        else:
            _, state, msg = r.split(":", 2)
            assert not unclean_state(state), \
                f"unclean error {state} {msg!r} for {item[0]!r} args {[a if a is None else a[:200] for a in item[1:]]}"
            out.append(Res(False, state=state, msg=msg))
    return out


def assert_names(res: Res, keywords: Sequence[str], item: Item | str = "") -> None:
    """An error's message must name at least one of the keywords (a type, function or the index AM)."""
    assert not res.ok, f"expected an error for {str(item)[:300]}, got {res.value!r:.200}"
    assert any(k.lower() in res.msg.lower() for k in keywords), \
        f"error {res.state} {res.msg!r} names none of {list(keywords)} for {str(item)[:300]}"


# ---------------------------------------------------------------------------------------------------------------
# value generators (hypothesis draws the shape and a seed; a seeded PRNG expands it, so big inputs stay cheap)

EDGE_BIT_LENGTHS = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257,
                    511, 512, 513, 1023, 1024, 1025, 4095, 4096, 4097, 4999, 5000]
bit_lengths = st.one_of(st.sampled_from(EDGE_BIT_LENGTHS), st.integers(0, 40), st.integers(0, 5000))


def rand_bits(rng: random.Random, n: int, density: float) -> str:
    if n == 0:
        return ""
    if density == 0.5:
        return format(rng.getrandbits(n), f"0{n}b")
    return "".join("1" if rng.random() < density else "0" for _ in range(n))


def popcount(x: int) -> int:
    return bin(x).count("1")


FLOAT_PROFILES = ["normal", "huge", "tiny", "mixed", "zeros", "ints", "half_range"]


def rand_f32(rng: random.Random, n: int, profile: str) -> np.ndarray:
    """n finite float32 values of a profile: normal, huge (near FLT_MAX), tiny/subnormal, zeros, mixed..."""
    g = np.random.default_rng(rng.getrandbits(64))

    def gen(p: str, m: int) -> np.ndarray:
        sign = np.where(g.random(m) < 0.5, -1.0, 1.0)
        if p == "normal":
            return g.standard_normal(m)
        if p == "huge":
            return sign * g.uniform(1e30, 3.4e38, m)
        if p == "tiny":  # mostly float32 subnormals
            return sign * np.where(g.random(m) < 0.7, g.uniform(1.4e-45, 1.2e-38, m), g.uniform(1e-38, 1e-30, m))
        if p == "zeros":
            return sign * 0.0
        if p == "ints":
            return g.integers(-5, 6, m).astype(np.float64)
        if p == "half_range":  # around the halfvec limit 65504 and its subnormals
            opts = np.stack([g.uniform(6e4, 7e4, m), g.uniform(0, 1e-4, m), g.uniform(1e-8, 6.2e-5, m),
                             np.full(m, 65504.0), np.full(m, 65519.0), np.full(m, 65520.0), g.uniform(0, 10, m)])
            return sign * opts[g.integers(0, len(opts), m), np.arange(m)]
        raise AssertionError(p)

    if profile == "mixed":
        kinds = ["normal", "huge", "tiny", "zeros", "ints", "half_range"]
        pick = g.integers(0, len(kinds), n)
        out = np.empty(n, dtype=np.float64)
        for i, k in enumerate(kinds):
            mask = pick == i
            out[mask] = gen(k, int(mask.sum()))
    else:
        out = gen(profile, n)
    with np.errstate(over="ignore"):
        return out.astype(np.float32)


def f32_text(v: np.ndarray) -> list[str]:
    """Decimal texts that parse (strtof) back to exactly these float32 values."""
    return [repr(x) for x in np.asarray(v, dtype=np.float32).tolist()]


def vec_literal(parts: Sequence[str], rng: random.Random | None = None) -> str:
    sep = ", " if rng is not None and rng.random() < 0.3 else ","
    return "[" + sep.join(parts) + "]"


def to_half(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return v.astype(np.float16)


def quantize(x: np.ndarray, t: np.ndarray | None) -> str:
    """bit i = x_i > t_i (t = 0 for sign quantization), compared in float32."""
    x = x.astype(np.float32)
    thr = np.zeros_like(x) if t is None else t.astype(np.float32)
    return "".join("1" if a > b else "0" for a, b in zip(x.tolist(), thr.tolist()))


def dot_bits(x: np.ndarray, bits: str) -> float:
    """Reference of bit_ip: sum q_i * (2 b_i - 1), accumulated in double as 2 * pos - all."""
    pos = 0.0
    total = 0.0
    for q, b in zip(x.astype(np.float32).tolist(), bits):
        total += q
        if b == "1":
            pos += q
    return 2.0 * pos - total


BAD_TOKENS = {
    "nan": ["NaN", "nan", "-NaN", "NAN"],
    "inf": ["Infinity", "-Infinity", "inf", "-inf", "+Infinity"],
    "overflow": ["1e39", "-3.5e38", "1e400", "3.4028236e38"],
    "half_overflow": ["65520", "-70000", "1e5"],  # valid for vector, out of range for halfvec
}


# ---------------------------------------------------------------------------------------------------------------
# 1. bit strings: hamming / jaccard against pgvector and a reference; bit_ip against a reference

bit_pair = st.tuples(bit_lengths, st.sampled_from(["same", "same", "same", "other", "off_by_one"]), bit_lengths,
                     st.sampled_from([0.5, 0.5, 0.0, 1.0, 0.03, 0.97]), st.integers(0, 2**32 - 1),
                     st.sampled_from([None, None, "vector", "halfvec"]),
                     st.sampled_from(["normal", "mixed", "huge", "tiny", "ints"]))


@fuzz_settings(120)
@given(pairs=st.lists(bit_pair, min_size=1, max_size=30))
def test_bit_functions_random_bits(conn, guard, pairs) -> None:
    items: list[Item] = []
    checks = []
    for la, rel, lb, density, seed, iptype, profile in pairs:
        rng = random.Random(seed)
        lb = la if rel == "same" else (la + rng.choice([-1, 1]) if rel == "off_by_one" and la > 0 else lb)
        lb = max(lb, 0)
        a, b = rand_bits(rng, la, density), rand_bits(rng, lb, 0.5 if density == 0.5 else 1 - density)
        if la == lb:
            items.append(("SELECT concat_ws('|', hamming($1::varbit, $2::varbit), $1::varbit <~> $2::varbit, "
                          "jaccard($1::varbit, $2::varbit), $1::varbit <%> $2::varbit)", a, b, None))
            checks.append(("equal", a, b))
        else:
            for fn in ("hamming", "jaccard"):
                items.append((f"SELECT {fn}($1::varbit, $2::varbit)::text", a, b, None))
                checks.append(("unequal", fn, (la, lb)))
        if iptype:
            dim = la if rng.random() < 0.7 else max(1, la + rng.randint(-3, 3))
            dim = max(dim, 1)
            x = rand_f32(rng, dim, profile)
            if iptype == "halfvec":
                x = to_half(np.clip(x, -65504, 65504)).astype(np.float32)
            items.append((f"SELECT bit_ip($1::{iptype}, $2::varbit)::text", vec_literal(f32_text(x)), a, None))
            checks.append(("ip", x, a, iptype))

    results = run_batch(conn, guard, items, "bit functions")
    for res, chk, item in zip(results, checks, items):
        if chk[0] == "equal":
            _, a, b = chk
            assert res.ok, f"{res.msg} for equal lengths {len(a)}"
            ham, vham, jac, vjac = res.value.split("|")
            ia, ib = int(a or "0", 2), int(b or "0", 2)
            ref_ham = popcount(ia ^ ib)
            inter, union = popcount(ia & ib), popcount(ia | ib)
            ref_jac = 1.0 if inter == 0 else 1.0 - inter / union
            assert int(ham) == ref_ham == float(vham), (len(a), ham, vham, ref_ham)
            assert abs(float(jac) - float(vjac)) <= 1e-12, (len(a), jac, vjac)
            assert abs(float(jac) - ref_jac) <= 1e-12, (len(a), jac, ref_jac)
        elif chk[0] == "unequal":
            _, fn, (la, lb) = chk
            assert_names(res, [fn], item)
            assert "bit" in res.msg and res.state == "22000", res
        else:
            _, x, a, iptype = chk
            if len(x) == len(a):
                assert res.ok, f"{res.msg} for bit_ip dims {len(x)}"
                assert float(res.value) == dot_bits(x, a), (len(a), res.value, dot_bits(x, a))
            else:
                assert_names(res, ["bit_ip"], item)


# ---------------------------------------------------------------------------------------------------------------
# 2. floats with NaN/Inf/huge/tiny through pgvector input, then bit_quantize with random thresholds

THRESHOLD_MODES = ["none", "right", "right", "short", "long", "null_elem", "nan", "inf", "multi", "empty",
                   "null_array", "bounds", "overflow", "malformed", "subnormal"]

vec_case = st.tuples(
    st.sampled_from(["vector", "halfvec"]),
    st.one_of(st.integers(1, 40), st.integers(0, 300),
              st.sampled_from([0, 1, 2, 3, 7, 8, 9, 16, 31, 33, 64, 100, 257, 1000, 16000, 16001])),
    st.sampled_from(FLOAT_PROFILES),
    st.sampled_from([None, None, None, "nan", "inf", "overflow", "half_overflow"]),
    st.sampled_from(THRESHOLD_MODES),
    st.integers(0, 2**32 - 1),
)


def threshold_literal(rng: random.Random, mode: str, dim: int) -> tuple[str | None, np.ndarray | None, bool]:
    """(real[] literal, thresholds if valid, whether bit_quantize must fail because of them)."""
    def vals(n: int) -> np.ndarray:
        return rand_f32(rng, n, rng.choice(["normal", "ints", "tiny", "huge", "mixed"]))

    if mode == "null_array":
        return None, None, False
    if mode in ("right", "subnormal", "bounds"):
        t = vals(dim) if mode != "subnormal" else rand_f32(rng, dim, "tiny")
        body = "{" + ",".join(f32_text(t)) + "}"
        if mode == "bounds":
            lo = rng.randint(-5, 5)
            body = f"[{lo}:{lo + dim - 1}]={body}" if dim > 0 else body
        return body, t, False
    if mode in ("short", "long"):
        n = max(0, dim - rng.randint(1, 3)) if mode == "short" else dim + rng.randint(1, 3)
        if n == dim:
            n = dim + 1
        return "{" + ",".join(f32_text(vals(n))) + "}", None, True
    if mode == "empty":
        return "{}", None, True
    if mode in ("null_elem", "nan", "inf", "overflow"):
        parts = f32_text(vals(max(dim, 1)))
        tok = {"null_elem": "NULL", "nan": "NaN", "inf": rng.choice(["Infinity", "-Infinity"]),
               "overflow": "1e39"}[mode]
        parts[rng.randrange(len(parts))] = tok
        return "{" + ",".join(parts) + "}", None, True
    if mode == "multi":
        m = max(1, (dim + 1) // 2)
        rows = [",".join(f32_text(vals(m))) for _ in range(2)]
        return "{" + ",".join("{" + r + "}" for r in rows) + "}", None, True
    if mode == "malformed":
        body = "{" + ",".join(f32_text(vals(max(dim, 1))))
        return rng.choice([body, body + "}}", body + ",,}", "{1,2", "1,2}", "{[1]}"]), None, True
    raise AssertionError(mode)


@fuzz_settings(80)
@given(cases=st.lists(vec_case, min_size=1, max_size=25))
def test_float_input_and_bit_quantize(conn, guard, cases) -> None:
    items: list[Item] = []
    checks = []
    for typ, dim, profile, bad, tmode, seed in cases:
        rng = random.Random(seed)
        x = rand_f32(rng, dim, profile)
        parts = f32_text(x)
        if bad and dim > 0:
            for _ in range(rng.randint(1, 3)):
                parts[rng.randrange(dim)] = rng.choice(BAD_TOKENS[bad])
        lit = vec_literal(parts, rng)
        # what pgvector must do with the literal
        valid = 1 <= dim <= 16000 and (bad is None or (bad == "half_overflow" and typ == "vector"))
        xv = x if typ == "vector" else to_half(x).astype(np.float32)
        if typ == "halfvec" and valid and not np.all(np.isfinite(xv)):
            valid = False  # finite float32 beyond 65504 overflows halfvec
        if bad == "half_overflow" and typ == "vector":
            xv = np.array([float(p) for p in parts], dtype=np.float32)

        items.append((f"SELECT $1::{typ}::text", lit, None, None))
        checks.append(("cast", typ, valid, None, False))
        items.append((f"SELECT bit_quantize($1::{typ})::text", lit, None, None))
        checks.append(("sign", typ, valid, xv, False))
        if tmode != "none":
            tlit, t, tbad = threshold_literal(rng, tmode, dim)
            items.append((f"SELECT bit_quantize($1::{typ}, $2::real[])::text", lit, tlit, None))
            checks.append(("thr", typ, valid, (xv, t, tlit), tbad))

    results = run_batch(conn, guard, items, "float input / bit_quantize")
    for res, chk, item in zip(results, checks, items):
        kind, typ, valid, payload, tbad = chk
        if not valid:
            assert_names(res, [typ], item)
            continue
        if kind == "cast":
            assert res.ok, (res.msg, item[1][:200])
        elif kind == "sign":
            assert res.ok, (res.msg, item[1][:200])
            assert res.value == quantize(payload, None), item[1][:200]
        else:
            xv, t, tlit = payload
            if tlit is None:
                assert res.ok and res.value == "<NULL>", res
            elif tbad:
                # the thresholds' own input (real[]) or bit_quantize's checks
                assert_names(res, ["bit_quantize", "real", "array"], item)
            else:
                assert res.ok, (res.msg, tlit[:200])
                assert res.value == quantize(xv, t)


agg_case = st.tuples(st.sampled_from(["vector", "halfvec"]), st.integers(1, 64), st.integers(1, 8),
                     st.sampled_from(["same", "same", "mismatch"]), st.sampled_from(["normal", "huge", "tiny",
                                                                                      "mixed", "ints"]),
                     st.integers(0, 2**32 - 1))


@fuzz_settings(40)
@given(cases=st.lists(agg_case, min_size=1, max_size=20))
def test_bit_thresholds_aggregate(conn, guard, cases) -> None:
    items: list[Item] = []
    checks = []
    for typ, dim, nrows, mode, profile, seed in cases:
        rng = random.Random(seed)
        rows = []
        for i in range(nrows):
            d = dim if mode == "same" or i != nrows - 1 else dim + rng.choice([-1, 1]) * rng.randint(1, 3)
            d = max(d, 1) if d != dim else d
            x = rand_f32(rng, d, profile)
            if typ == "halfvec":
                x = to_half(np.clip(x, -65504, 65504)).astype(np.float32)
            rows.append(x)
        lits = ";".join(vec_literal(f32_text(r)) for r in rows)
        items.append((f"SELECT bit_thresholds(x::{typ})::text FROM unnest(string_to_array($1, ';')) x",
                      lits, None, None))
        checks.append(rows)
    results = run_batch(conn, guard, items, "bit_thresholds")
    for res, rows, item in zip(results, checks, items):
        dims = {len(r) for r in rows}
        if len(dims) > 1:
            assert_names(res, ["bit_thresholds"], item)
            continue
        assert res.ok, res.msg
        sums = [0.0] * len(rows[0])
        for r in rows:
            for i, v in enumerate(r.tolist()):
                sums[i] += v
        expect = np.array([s / len(rows) for s in sums], dtype=np.float64).astype(np.float32)
        got = [float(v) for v in res.value.strip("{}").split(",")]
        assert len(got) == len(expect)
        for g, e in zip(got, expect.tolist()):
            assert math.isclose(g, e, rel_tol=1e-6, abs_tol=1e-44), (g, e)


def state_literal(rng: random.Random, dim: int) -> str:
    """A random float8[] for the aggregate's support functions, which SQL can call directly: half of them
    well-formed states ({count, sum_1 .. sum_dim}), the rest of random shape and content."""
    if rng.random() < 0.5:
        vals = [str(rng.choice([0, 1, 2, 7, 1000]))] + [repr(rng.gauss(0, 1e3)) for _ in range(dim)]
    else:
        n = rng.choice([0, 1, 2, 3, 5, 9, dim + 1, rng.randint(0, 300)])
        vals = [rng.choice(["0", "1", "2", "-1", "NaN", "Infinity", "-Infinity", "1e308", "5e-324", "NULL", "-0",
                            repr(rng.gauss(0, 1e3)), str(rng.randint(0, 10))]) for _ in range(n)]
    n = len(vals)
    lit = "{" + ",".join(vals) + "}"
    r = rng.random()
    if r < 0.1 and n >= 2:
        lit = "{{" + ",".join(vals[: n // 2]) + "},{" + ",".join(vals[n // 2: 2 * (n // 2)]) + "}}"
    elif r < 0.2 and n >= 1:
        lo = rng.randint(-3, 3)
        lit = f"[{lo}:{lo + n - 1}]=" + lit
    return lit


@fuzz_settings(30)
@given(seeds=st.lists(st.integers(0, 2**32 - 1), min_size=5, max_size=40))
def test_bit_thresholds_state_functions(conn, guard, seeds) -> None:
    """bit_thresholds_accum / _combine / _final are plain SQL functions: random states never crash them."""
    items: list[Item] = []
    for seed in seeds:
        rng = random.Random(seed)
        dim = rng.choice([1, 2, 4, 8])
        a, b = state_literal(rng, dim), state_literal(rng, dim)
        v = vec_literal(f32_text(rand_f32(rng, dim, "normal")))
        items.append(("SELECT bit_thresholds_final($1::float8[])::text", a, None, None))
        items.append(("SELECT bit_thresholds_accum($1::float8[], $3::vector)::text", a, None, v))
        items.append(("SELECT bit_thresholds_accum($1::float8[], $3::halfvec)::text", a, None, v))
        items.append(("SELECT bit_thresholds_combine($1::float8[], $2::float8[])::text", a, b, None))
        items.append(("SELECT bit_thresholds_final(bit_thresholds_combine($1::float8[], "
                      "bit_thresholds_accum($2::float8[], $3::vector)))::text", a, b, v))
    for res, item in zip(run_batch(conn, guard, items, "bit_thresholds states"), items):
        if not res.ok:
            assert_names(res, ["bit_thresholds", "array", "double precision"], item)


# ---------------------------------------------------------------------------------------------------------------
# 3. malformed text literals: casts, function arguments and INSERTs into indexed tables

GARBAGE_ALPHABET = "[]{}(),.;:-+eE0123456789 \t\nnaNiIfFx\\\"'01bBX_=@\u00e9\u0661\u2212\u00a0\U0001F600"
VALID_SEEDS = {
    "vector": ["[1,2,3]", "[1.5e-3, -2, 3e38]", "[0]", "[-0.0,1e-45,7]"],
    "halfvec": ["[1,2,3]", "[65504,-65504,6e-8]", "[0.5]"],
    "varbit": ["101", "x1F", "X00ff", "B101", "", "1" * 70],
    "real[]": ["{1,2,3}", "{{1,2},{3,4}}", "[0:1]={1,2}", "{}", "{NULL}", '{"1.5"}'],
}
TEXT_TARGETS = {
    # target: (statement, keywords an error must contain)
    "vector": ("SELECT $1::vector::text", ["vector"]),
    "halfvec": ("SELECT $1::halfvec::text", ["halfvec"]),
    "varbit": ("SELECT $1::varbit::text", ["bit", "binary digit", "hexadecimal digit"]),
    "bit8": ("SELECT $1::bit(8)::text", ["bit", "binary digit", "hexadecimal digit"]),
    "real[]": ("SELECT $1::real[]::text", ["real", "array", "bound", "dimension", "integer"]),
    "quantize": ("SELECT bit_quantize($1::vector)::text", ["vector", "bit_quantize"]),
    "quantize_half": ("SELECT bit_quantize($1::halfvec, '{1,2,3}')::text", ["halfvec", "bit_quantize"]),
    "hamming": ("SELECT hamming($1::varbit, B'101')::text", ["bit", "binary digit", "hexadecimal digit", "hamming"]),
    "bit_ip": ("SELECT bit_ip($1::vector, B'101')::text", ["vector", "bit_ip"]),
    "thresholds": ("SELECT bit_quantize('[1,2,3]'::vector, $1::real[])::text",
                   ["real", "array", "bound", "dimension", "integer", "bit_quantize"]),
    # inserts into tables with a binary_scan index (created by the fixture below)
    "ins_vec3": ("INSERT INTO txt_v3 (emb) VALUES ($1::vector) RETURNING 'ins'",
                 ["vector", "binary_scan", "dimensions"]),
    "ins_vec": ("INSERT INTO txt_vu (emb) VALUES ($1::vector) RETURNING 'ins'", ["vector", "binary_scan"]),
    "ins_half": ("INSERT INTO txt_h (emb) VALUES ($1::halfvec) RETURNING 'ins'", ["halfvec", "binary_scan"]),
    "ins_bit": ("INSERT INTO txt_b (emb) VALUES ($1::varbit) RETURNING 'ins'",
                ["bit", "binary digit", "hexadecimal digit", "binary_scan"]),
}
SEED_FOR_TARGET = {"vector": "vector", "halfvec": "halfvec", "varbit": "varbit", "bit8": "varbit",
                   "real[]": "real[]", "quantize": "vector", "quantize_half": "halfvec", "hamming": "varbit",
                   "bit_ip": "vector", "thresholds": "real[]", "ins_vec3": "vector", "ins_vec": "vector",
                   "ins_half": "halfvec", "ins_bit": "varbit"}


def mutate(rng: random.Random, s: str, nops: int) -> str:
    for _ in range(nops):
        op = rng.randrange(7)
        i = rng.randint(0, len(s))
        c = rng.choice(GARBAGE_ALPHABET)
        if op == 0:
            s = s[:i]  # truncate
        elif op == 1:
            s = s[:i] + c + s[i:]
        elif op == 2 and s:
            s = s[:i] + s[i + 1:]
        elif op == 3 and s:
            s = s[:i] + c + s[i + 1:]
        elif op == 4:
            s = s[:i] + s[i:i + 5] * 2 + s[i + 5:]
        elif op == 5:
            s = s.replace(rng.choice("[]{},"), "", 1)
        else:
            s = s[:i] + rng.choice(["NaN", "Infinity", "1e39", "-", "e", ".", "\u0661", "\U0001F600", " "]) + s[i:]
    return s


@pytest.fixture(scope="module")
def text_tables(conn: psycopg.Connection) -> None:
    conn.execute("""
        CREATE TABLE txt_v3 (id serial, emb vector(3));
        CREATE INDEX ON txt_v3 USING binary_scan (emb vector_l2_ops);
        CREATE TABLE txt_vu (id serial, emb vector);
        CREATE INDEX ON txt_vu USING binary_scan (emb vector_cosine_ops);
        INSERT INTO txt_vu (emb) VALUES ('[1,2,3]');
        CREATE TABLE txt_h (id serial, emb halfvec);
        CREATE INDEX ON txt_h USING binary_scan (emb halfvec_ip_ops);
        INSERT INTO txt_h (emb) VALUES ('[1,2,3]');
        CREATE TABLE txt_b (id serial, emb varbit);
        CREATE INDEX ON txt_b USING binary_scan (emb bit_hamming_ops);
        INSERT INTO txt_b (emb) VALUES (B'101');
    """)


text_case = st.tuples(st.sampled_from(sorted(TEXT_TARGETS)),
                      st.one_of(st.text(alphabet=GARBAGE_ALPHABET, max_size=30),
                                st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                        max_size=20),
                                st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 4))))


@fuzz_settings(120)
@given(cases=st.lists(text_case, min_size=10, max_size=40))
def test_malformed_text_literals(conn, guard, text_tables, cases) -> None:
    items: list[Item] = []
    for target, src in cases:
        if isinstance(src, tuple):  # a mutated valid literal (truncated, spliced, bracket removed...)
            rng = random.Random(src[0])
            src = mutate(rng, rng.choice(VALID_SEEDS[SEED_FOR_TARGET[target]]), src[1])
        items.append((TEXT_TARGETS[target][0], src, None, None))
    results = run_batch(conn, guard, items, "malformed text")
    for res, item, (target, _) in zip(results, items, cases):
        if not res.ok:
            assert_names(res, TEXT_TARGETS[target][1], item)


def test_malformed_text_client_errors(conn, guard, text_tables) -> None:
    """The same kind of input straight from the client: psycopg raises a DataError subclass, never loses the
    connection, and the connection stays usable."""
    rng = random.Random(7)
    n = 0
    for target in ("ins_vec3", "ins_vec", "ins_half", "ins_bit", "quantize", "thresholds", "hamming"):
        stmt, keywords = TEXT_TARGETS[target]
        for _ in range(25):
            s = mutate(rng, rng.choice(VALID_SEEDS[SEED_FOR_TARGET[target]]), rng.randint(1, 3))
            try:
                conn.execute(stmt.replace("$1", "%s"), [s])
            except psycopg.Error as e:
                assert not connection_lost(e, conn), f"connection lost on {stmt} with {s!r}: {e}"
                assert isinstance(e, (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded)), \
                    (type(e), str(e), s)
                assert any(k.lower() in e.diag.message_primary.lower() for k in keywords), (str(e), s)
            n += 1
    COUNTS["malformed text (client)"] += n
    guard.check("malformed text client")


# ---------------------------------------------------------------------------------------------------------------
# helpers: index scan vs sequential scan

def knn(conn: psycopg.Connection, table: str, col: str, op: str, q: str | None, qtype: str, k: int,
        index: bool, where: str = "") -> list[tuple[int, float | None]]:
    conn.execute("SET enable_seqscan = " + ("off" if index else "on"))
    conn.execute("SET enable_indexscan = " + ("on" if index else "off"))
    conn.execute("SET enable_bitmapscan = off")
    try:
        cond = f"WHERE {col} IS NOT NULL" + (f" AND {where}" if where else "")
        stmt = (f"SELECT id, ({col} {op} %s::{qtype})::float8 FROM {table} {cond} "
                f"ORDER BY {col} {op} %s::{qtype} LIMIT {k}")
        return [(r[0], r[1]) for r in conn.execute(stmt, [q, q]).fetchall()]
    finally:
        conn.execute("RESET enable_seqscan")
        conn.execute("RESET enable_indexscan")
        conn.execute("RESET enable_bitmapscan")


def uses_index(conn: psycopg.Connection, table: str, col: str, op: str, q: str, qtype: str) -> bool:
    conn.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN SELECT id FROM {table} ORDER BY {col} {op} %s::{qtype} LIMIT 5", [q]).fetchall())
    finally:
        conn.execute("RESET enable_seqscan")
    return "Index Scan" in plan


def _key(d: float | None) -> tuple:
    if d is None:
        return (2, 0.0)
    if math.isnan(d):
        return (1, 0.0)
    return (0, d)


def assert_same_knn(got: list, want: list, ctx: str, ids: bool = True) -> None:
    """Equal distances in order; with ids, equal id sets among rows strictly closer than the last distance
    (ties at the cut may be broken differently)."""
    assert [_key(d) for _, d in got] == [_key(d) for _, d in want], f"{ctx}: distances differ\n{got}\n{want}"
    if ids and got:
        last = _key(got[-1][1])
        assert {i for i, d in got if _key(d) < last} == {i for i, d in want if _key(d) < last}, \
            f"{ctx}: ids differ\n{got}\n{want}"


def assert_index_returns_all_rows_once(conn, table: str, col: str, op: str, q: str | None, qtype: str,
                                       rerank: int) -> None:
    """With any re-rank size an ORDER BY scan through the index eventually returns every row with a non-NULL key,
    each exactly once (by ctid: ids need not be unique)."""
    conn.execute(f"SET pgsieve.binary_rerank = {rerank}")
    conn.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN SELECT ctid FROM {table} WHERE {col} IS NOT NULL ORDER BY {col} {op} %s::{qtype} "
            f"LIMIT 1000000", [q]).fetchall())
        assert "Index Scan" in plan, plan
        got = conn.execute(f"SELECT count(*), count(DISTINCT c) FROM (SELECT ctid c FROM {table} "
                           f"WHERE {col} IS NOT NULL ORDER BY {col} {op} %s::{qtype} LIMIT 1000000) s",
                           [q]).fetchone()
    finally:
        conn.execute("RESET pgsieve.binary_rerank")
        conn.execute("RESET enable_seqscan")
    total = conn.execute(f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL").fetchone()[0]
    assert got == (total, total), (table, col, op, rerank, got, total)


def check_index_equals_seq(conn, table: str, col: str, op: str, qtype: str, queries: Sequence[str],
                           k: int = 5, ids: bool = True, where: str = "") -> int:
    conn.execute("SET pgsieve.binary_rerank = 100000")
    try:
        for q in queries:
            got = knn(conn, table, col, op, q, qtype, k, index=True, where=where)
            want = knn(conn, table, col, op, q, qtype, k, index=False, where=where)
            assert_same_knn(got, want, f"{table}.{col} {op} {q[:60]}", ids=ids)
    finally:
        conn.execute("RESET pgsieve.binary_rerank")
    return len(queries)


# ---------------------------------------------------------------------------------------------------------------
# 4. binary COPY: bad values via write_row, and truncated / garbled raw streams

COPY_DIM = 8
COPY_BITS = 64
COPY_TABLES = {
    # name: (column type, opclass, payload kind, distance op, query type)
    "cp_v": ("vector(8)", "vector_l2_ops", "vector", "<->", "vector"),
    "cp_vu": ("vector", "vector_ip_ops", "vector", "<#>", "vector"),
    "cp_h": ("halfvec(8)", "halfvec_cosine_ops", "halfvec", "<=>", "halfvec"),
    "cp_b": ("bit(64)", "bit_hamming_ops", "bit", "<~>", "bit(64)"),
    "cp_bu": ("varbit", "bit_hamming_ops", "bit", "<~>", "varbit"),
}


def payload(kind: str, rng: random.Random, dim: int | None = None) -> bytes:
    if kind == "bit":
        n = COPY_BITS if dim is None else dim
        bits = rand_bits(rng, n, 0.5)
        return struct.pack(">i", n) + (int(bits, 2) << ((-n) % 8)).to_bytes((n + 7) // 8, "big") if n else \
            struct.pack(">i", 0)
    n = COPY_DIM if dim is None else dim
    x = rand_f32(rng, n, "normal")
    body = x.astype(">f4").tobytes() if kind == "vector" else x.astype(">f2").tobytes()
    return struct.pack(">hh", n, 0) + body


def copy_stream(rows: Sequence[tuple[int, bytes | None]]) -> bytes:
    out = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    for rid, p in rows:
        out += struct.pack(">hii", 2, 4, rid)
        out += struct.pack(">i", -1) if p is None else struct.pack(">i", len(p)) + p
    out += struct.pack(">h", -1)
    return bytes(out)


def query_literal(kind: str, rng: random.Random) -> str:
    if kind == "bit":
        return rand_bits(rng, COPY_BITS, 0.5)
    return vec_literal(f32_text(rand_f32(rng, COPY_DIM, "normal")))


@pytest.fixture(scope="module")
def copy_tables(conn: psycopg.Connection) -> dict[str, int]:
    rng = random.Random(11)
    next_id = {}
    for name, (ctype, opclass, kind, _, _) in COPY_TABLES.items():
        conn.execute(f"CREATE TABLE {name} (id int, emb {ctype})")
        conn.execute(f"CREATE INDEX {name}_idx ON {name} USING binary_scan (emb {opclass})")
        with conn.cursor().copy(f"COPY {name} (id, emb) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(copy_stream([(i, payload(kind, rng)) for i in range(1, 41)]))
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 40
        next_id[name] = 1000
    return next_id


#: what the primary message of a failed binary COPY may name: the column's type (pgvector / core input
#: functions), the index, or the COPY format itself (core); the CONTEXT line then names table, line and column
COPY_ERROR_WORDS = ["vector", "halfvec", "bit string", "binary_scan", "dimensions", "COPY", "field",
                    "insufficient data left in message", "incorrect binary data format", "expected unused to be 0",
                    "string buffer exceeds maximum allowed length"]

copy_mut = st.tuples(st.sampled_from(sorted(COPY_TABLES)), st.integers(1, 6), st.integers(0, 2**32 - 1),
                     st.sampled_from(["truncate", "truncate", "flip", "flip", "flips", "insert", "delete",
                                      "swap_types", "zero_tail"]),
                     st.integers(1, 4))


def garble(rng: random.Random, data: bytes, how: str, n: int, other: bytes) -> bytes:
    b = bytearray(data)
    if how == "truncate":
        return bytes(b[:rng.randrange(len(b))])
    if how in ("flip", "flips"):
        for _ in range(1 if how == "flip" else n * 3):
            i = rng.randrange(len(b))
            b[i] ^= rng.choice([1, 0x80, 0xFF, rng.randrange(1, 256)])
        return bytes(b)
    if how == "insert":
        for _ in range(n):
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        return bytes(b)
    if how == "delete":
        for _ in range(n):
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 4)]
        return bytes(b)
    if how == "swap_types":  # a valid stream of another table's payloads
        return other
    if how == "zero_tail":
        i = rng.randrange(len(b))
        return bytes(b[:i]) + bytes(len(b) - i)
    raise AssertionError(how)


@fuzz_settings(400)
@given(case=copy_mut)
def test_binary_copy_garbled_streams(conn, guard, copy_tables, case) -> None:
    name, nrows, seed, how, n = case
    kind = COPY_TABLES[name][2]
    rng = random.Random(seed)
    rid = copy_tables[name]
    copy_tables[name] += nrows
    rows = [(rid + i, None if rng.random() < 0.1 else payload(kind, rng)) for i in range(nrows)]
    other_kind = rng.choice([k for k in ("vector", "halfvec", "bit") if k != kind])
    data = garble(rng, copy_stream(rows), how, n, copy_stream([(rid, payload(other_kind, rng))]))
    try:
        with conn.cursor().copy(f"COPY {name} (id, emb) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(data)
    except psycopg.Error as e:
        assert not connection_lost(e, conn), f"connection lost on garbled COPY into {name} ({how}): {e}\n{data.hex()}"
        state = e.sqlstate
        assert not unclean_state(state), (state, str(e), how, data.hex())
        primary = e.diag.message_primary or ""
        assert any(w.lower() in primary.lower() for w in COPY_ERROR_WORDS), (state, str(e), how)
        if not primary.startswith(("COPY file signature", "invalid COPY file header", "unrecognized critical")):
            assert f"COPY {name}" in (e.diag.context or ""), (str(e), e.diag.context)
        COUNTS["binary COPY streams (errors)"] += 1
    assert conn.execute("SELECT 1").fetchone() == (1,)
    guard.check("garbled COPY")
    # whatever got in, the index still agrees with a sequential scan
    check_index_equals_seq(conn, name, "emb", COPY_TABLES[name][3], COPY_TABLES[name][4],
                           [query_literal(kind, rng)], k=5, ids=kind != "bit")
    COUNTS["binary COPY streams"] += 1


write_row_case = st.tuples(
    st.sampled_from(sorted(COPY_TABLES)),
    st.lists(st.tuples(st.sampled_from(["ok", "ok", "ok", "ok", "nan", "inf", "-inf", "dim+", "dim-", "empty",
                                        "null", "huge", "tiny"]),
                       st.integers(0, 2**32 - 1)), min_size=1, max_size=12))


@pytest.fixture(scope="module")
def vconn(db_url: str) -> Iterator[psycopg.Connection]:
    """A connection with pgvector's psycopg adapters (binary dumpers for vector, halfvec, bit)."""
    from pgvector.psycopg import register_vector

    with psycopg.connect(db_url, autocommit=True) as c:
        c.prepare_threshold = None
        register_vector(c)
        yield c


@fuzz_settings(150)
@given(case=write_row_case)
def test_binary_copy_write_row(vconn, guard, copy_tables, case) -> None:
    from pgvector import Bit, HalfVector, Vector

    name, specs = case
    kind = COPY_TABLES[name][2]
    typed = "(" in COPY_TABLES[name][0]
    rid = copy_tables[name]
    copy_tables[name] += len(specs)
    rows = []
    bad = False
    for i, (spec, seed) in enumerate(specs):
        rng = random.Random(seed)
        dim = {"dim+": COPY_DIM + rng.randint(1, 3), "dim-": COPY_DIM - rng.randint(1, 3), "empty": 0}.get(spec,
                                                                                                         COPY_DIM)
        if kind == "bit":
            nb = {"dim+": COPY_BITS + rng.randint(1, 9), "dim-": COPY_BITS - rng.randint(1, 9), "empty": 0}.get(
                spec, COPY_BITS)
            val = None if spec == "null" else Bit(np.array([rng.random() < 0.5 for _ in range(nb)], dtype=bool))
            bad |= spec in ("dim+", "dim-", "empty")
        else:
            x = rand_f32(rng, dim, {"huge": "huge", "tiny": "tiny"}.get(spec, "normal"))
            if kind == "halfvec":
                x = to_half(np.clip(x, -65504, 65504)).astype(np.float32)
            if spec in ("nan", "inf", "-inf"):
                x[rng.randrange(dim)] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[spec]
            val = None if spec == "null" else (Vector(x) if kind == "vector" else HalfVector(x))
            bad |= spec in ("nan", "inf", "-inf", "dim+", "dim-", "empty")
        rows.append((rid + i, val))
    before = vconn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    err = None
    try:
        with vconn.cursor().copy(f"COPY {name} (id, emb) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "bit" if kind == "bit" else kind])
            for r in rows:
                cp.write_row(r)
    except psycopg.Error as e:
        assert not connection_lost(e, vconn), f"connection lost on COPY write_row into {name}: {e}\n{rows}"
        err = e
    after = vconn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    if bad:
        assert err is not None, f"bad rows accepted by {name}: {specs}"
        assert isinstance(err, psycopg.errors.DataError) or isinstance(err, psycopg.errors.ProgramLimitExceeded) \
            or isinstance(err, psycopg.errors.InvalidBinaryRepresentation), (type(err), str(err))
        words = [kind, "binary_scan"] + (["bit string", "dimensions"] if typed or kind == "bit" else [])
        primary = err.diag.message_primary or ""
        assert any(w in primary for w in words), (str(err), specs)
        wrong_dims_only = all(sp in ("ok", "null", "huge", "tiny", "dim+", "dim-") for sp, _ in specs)
        if not typed and wrong_dims_only:
            assert "binary_scan" in primary, str(err)  # untyped column: the index enforces the dimensions
        assert after == before
    else:
        assert err is None, (str(err), specs)
        assert after == before + len(rows)
    guard.check("COPY write_row")
    COUNTS["binary COPY write_row rows"] += len(rows)


def test_copy_tables_index_equals_seqscan(conn, guard, copy_tables) -> None:
    """After all the garbled COPYs the tables and their indexes are intact: index scans equal seq scans."""
    rng = random.Random(5)
    for name, (ctype, opclass, kind, op, qtype) in COPY_TABLES.items():
        q = [query_literal(kind, rng) for _ in range(4)]
        assert uses_index(conn, name, "emb", op, q[0], qtype), name
        check_index_equals_seq(conn, name, "emb", op, qtype, q, k=5, ids=kind != "bit")
        # every non-NULL row is reachable through the index exactly once, in one batch or in many
        for rerank in (100000, 7):
            assert_index_returns_all_rows_once(conn, name, "emb", op, q[1], qtype, rerank)
        conn.execute(f"REINDEX INDEX {name}_idx")
        check_index_equals_seq(conn, name, "emb", op, qtype, q, k=5, ids=kind != "bit")
    guard.check("copy tables")


# ---------------------------------------------------------------------------------------------------------------
# 5. dimension mismatches into untyped indexed columns, and queries with the wrong dimensions

@pytest.fixture(scope="module")
def dim_tables(conn: psycopg.Connection) -> None:
    conn.execute("""
        CREATE TABLE dm_v (id serial, emb vector);
        CREATE INDEX ON dm_v USING binary_scan (emb vector_l2_ops);
        CREATE TABLE dm_h (id serial, emb halfvec);
        CREATE INDEX ON dm_h USING binary_scan (emb halfvec_cosine_ops);
        CREATE TABLE dm_b (id serial, emb varbit);
        CREATE INDEX ON dm_b USING binary_scan (emb bit_hamming_ops);
        CREATE TABLE dm_v6 (id serial, emb vector(6));
        CREATE INDEX ON dm_v6 USING binary_scan (emb vector_ip_ops) WITH (quantizer = sign);
        INSERT INTO dm_v6 (emb) SELECT ('[' || i || ',1,2,3,4,5]')::vector FROM generate_series(1, 20) i;
    """)
    # dims of the untyped ones are fixed by their first row (index built on an empty table)
    conn.execute("INSERT INTO dm_v (emb) VALUES ('[1,2,3,4,5]')")
    conn.execute("INSERT INTO dm_h (emb) VALUES ('[1,2,3,4,5,6,7]')")
    conn.execute("INSERT INTO dm_b (emb) VALUES (B'1010101010')")


DIMS_OF = {"dm_v": 5, "dm_h": 7, "dm_b": 10, "dm_v6": 6}
TYPE_OF = {"dm_v": "vector", "dm_h": "halfvec", "dm_b": "varbit", "dm_v6": "vector"}
OP_OF = {"dm_v": "<->", "dm_h": "<=>", "dm_b": "<~>", "dm_v6": "<#>"}

dim_case = st.tuples(st.sampled_from(sorted(DIMS_OF)), st.sampled_from(["insert", "query"]),
                     st.one_of(st.integers(0, 20), st.integers(4, 11),
                               st.sampled_from([16000, 16001, 64000, 64001, 70000])),
                     st.integers(0, 2**32 - 1))


@fuzz_settings(40)
@given(cases=st.lists(dim_case, min_size=5, max_size=40))
def test_dimension_mismatch(conn, guard, dim_tables, cases) -> None:
    items: list[Item] = []
    for table, what, dim, seed in cases:
        rng = random.Random(seed)
        typ = TYPE_OF[table]
        if typ == "varbit":
            lit = rand_bits(rng, dim, 0.5)
        else:
            dim = dim if dim <= 16001 else 16000 + seed % 2
            x = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
            lit = vec_literal(f32_text(x))
        if what == "insert":
            items.append((f"INSERT INTO {table} (emb) VALUES ($1::{typ}) RETURNING 'ins'", lit, None, None))
        else:
            items.append((f"SELECT string_agg(id::text, ',') FROM (SELECT id FROM {table} "
                          f"ORDER BY emb {OP_OF[table]} $1::{typ} LIMIT 3) s", lit, None, None))
    conn.execute("SET enable_seqscan = off")
    try:
        results = run_batch(conn, guard, items, "dimension mismatch")
    finally:
        conn.execute("RESET enable_seqscan")
    for res, item, (table, what, dim, seed) in zip(results, items, cases):
        want = DIMS_OF[table]
        typ = TYPE_OF[table]
        if typ != "varbit":
            dim = dim if dim <= 16001 else 16000 + seed % 2
        if dim == want:
            assert res.ok, (res.msg, table, what)
            continue
        if typ != "varbit" and (dim == 0 or dim > 16000):
            assert_names(res, [typ], item)  # pgvector's own input limits
        elif table == "dm_v6" and what == "insert":
            assert_names(res, ["dimensions"], item)  # pgvector's typmod check: "expected 6 dimensions, not 5"
        else:
            assert_names(res, ["binary_scan"], item)
            if dim > 64000:
                assert "64000" in res.msg, res.msg
    # the failed inserts left nothing behind: every index still equals the seq scan
    rng = random.Random(3)
    for table in DIMS_OF:
        typ = TYPE_OF[table]
        qs = [rand_bits(rng, DIMS_OF[table], 0.5) if typ == "varbit"
              else vec_literal(f32_text(rand_f32(rng, DIMS_OF[table], "normal"))) for _ in range(2)]
        check_index_equals_seq(conn, table, "emb", OP_OF[table], typ, qs, k=5, ids=typ != "varbit")


# ---------------------------------------------------------------------------------------------------------------
# 6. empty and huge values, 7. the GUC

def expect_error(conn: psycopg.Connection, stmt: str, words: Sequence[str], params=None,
                 cls: type[Exception] = psycopg.DatabaseError) -> str:
    try:
        conn.execute(stmt, params)
    except psycopg.Error as e:
        assert not connection_lost(e, conn), f"connection lost on {stmt[:100]}: {e}"
        assert isinstance(e, cls), (type(e), str(e))
        assert not unclean_state(e.sqlstate), (e.sqlstate, str(e))
        assert all(w.lower() in (e.diag.message_primary or "").lower() for w in words), (str(e), words)
        COUNTS["edge cases"] += 1
        return str(e)
    pytest.fail(f"no error for {stmt[:200]}")


def test_empty_and_huge_values(conn, guard) -> None:
    E = psycopg.errors
    # empty values: pgvector rejects empty vectors itself; binary_scan rejects empty bit strings
    expect_error(conn, "SELECT '[]'::vector", ["vector", "at least 1 dimension"], cls=E.DataError)
    expect_error(conn, "SELECT '[]'::halfvec", ["halfvec", "at least 1 dimension"], cls=E.DataError)
    conn.execute("CREATE TABLE ev_b (id int, b varbit)")
    conn.execute("CREATE INDEX ev_b_idx ON ev_b USING binary_scan (b bit_hamming_ops)")
    expect_error(conn, "INSERT INTO ev_b VALUES (1, B'')", ["binary_scan", "empty bit string"], cls=E.DataError)
    conn.execute("INSERT INTO ev_b VALUES (2, B'0110')")
    expect_error(conn, "INSERT INTO ev_b VALUES (3, B'')", ["binary_scan"], cls=E.DataError)
    conn.execute("SET enable_seqscan = off")
    expect_error(conn, "SELECT id FROM ev_b ORDER BY b <~> B'' LIMIT 1", ["binary_scan"], cls=E.DataError)
    conn.execute("RESET enable_seqscan")
    # an index built over a table that already holds an empty bit string
    conn.execute("CREATE TABLE ev_b2 (id int, b varbit)")
    conn.execute("INSERT INTO ev_b2 VALUES (1, B'101'), (2, B'')")
    expect_error(conn, "CREATE INDEX ON ev_b2 USING binary_scan (b bit_hamming_ops)", ["binary_scan", "empty"])
    # hamming/jaccard of two empty strings agree with pgvector
    assert conn.execute("SELECT hamming(B'', B''), B'' <~> B'', jaccard(B'', B''), B'' <%> B''").fetchone() \
        == (0, 0.0, 1.0, 1.0)
    # bit_ip / bit_quantize never see an empty vector (pgvector refuses it), thresholds of length 0 fail
    expect_error(conn, "SELECT bit_quantize('[1]'::vector, '{}'::real[])", ["bit_quantize"], cls=E.DataError)

    # huge: 16000-dim vectors are indexed and searched correctly
    conn.execute("CREATE TABLE hv (id int, emb vector(16000))")
    conn.execute("INSERT INTO hv SELECT i, (SELECT array_agg(sin(i * j)::real) FROM generate_series(1, 16000) j)"
                 "::vector FROM generate_series(1, 12) i")
    conn.execute("CREATE INDEX ON hv USING binary_scan (emb vector_cosine_ops)")
    conn.execute("INSERT INTO hv SELECT i, (SELECT array_agg(cos(i * j)::real) FROM generate_series(1, 16000) j)"
                 "::vector FROM generate_series(13, 20) i")
    q = vec_literal(f32_text(rand_f32(random.Random(1), 16000, "normal")))
    assert uses_index(conn, "hv", "emb", "<=>", q, "vector")
    check_index_equals_seq(conn, "hv", "emb", "<=>", "vector", [q], k=5)
    assert len(conn.execute("SELECT bit_quantize(emb) FROM hv").fetchall()) == 20
    # 16000-dim halfvec with bit_ip
    v = conn.execute("SELECT bit_ip(emb::halfvec, bit_quantize(emb)) FROM hv WHERE id = 1").fetchone()[0]
    assert v > 0
    expect_error(conn, "SELECT bit_quantize(array_fill(1::real, ARRAY[16001])::vector)", ["vector", "16000"])

    # bits: the index limit is 64000 bits, whether from the typmod or from a value
    expect_error(conn, "CREATE TABLE hb70 (id int, b bit(70000)); "
                       "CREATE INDEX ON hb70 USING binary_scan (b bit_hamming_ops)",
                 ["binary_scan", "64000"], cls=E.ProgramLimitExceeded)
    expect_error(conn, "INSERT INTO ev_b VALUES (4, repeat('1', 70000)::varbit)", ["binary_scan", "64000"],
                 cls=E.ProgramLimitExceeded)
    conn.execute("CREATE TABLE hb (id int, b varbit)")
    conn.execute("CREATE INDEX ON hb USING binary_scan (b bit_hamming_ops)")
    expect_error(conn, "INSERT INTO hb VALUES (1, repeat('1', 70000)::varbit)", ["binary_scan", "64000"],
                 cls=E.ProgramLimitExceeded)
    expect_error(conn, "INSERT INTO hb VALUES (1, repeat('1', 64001)::varbit)", ["binary_scan", "64000"],
                 cls=E.ProgramLimitExceeded)
    conn.execute("INSERT INTO hb SELECT i, (SELECT string_agg(((i * j) % 3 = 0)::int::text, '') "
                 "FROM generate_series(1, 64000) j)::varbit FROM generate_series(1, 6) i")
    qb = rand_bits(random.Random(2), 64000, 0.5)
    check_index_equals_seq(conn, "hb", "b", "<~>", "varbit", [qb], k=4, ids=False)
    # hamming / jaccard / bit_ip on 64000 and 70000 bits are fine outside the index
    assert conn.execute("SELECT hamming(repeat('1', 70000)::varbit, repeat('0', 70000)::varbit)").fetchone()[0] \
        == 70000
    # building over a table that holds a 70000-bit value
    conn.execute("CREATE TABLE hb2 (id int, b varbit)")
    conn.execute("INSERT INTO hb2 VALUES (1, repeat('1', 70000)::varbit)")
    expect_error(conn, "CREATE INDEX ON hb2 USING binary_scan (b bit_hamming_ops)", ["binary_scan", "64000"])
    guard.check("empty and huge")


def test_ddl_misuse(conn, guard) -> None:
    """Index definitions binary_scan cannot serve fail cleanly; the ones it can (partial, expression, unlogged,
    CONCURRENTLY) answer like a sequential scan."""
    E = psycopg.errors
    conn.execute("CREATE TABLE dd (id int, v vector(4), s sparsevec(4), t text)")
    conn.execute("INSERT INTO dd SELECT i, ARRAY[i % 7, 1, (i * 3) % 5, -2]::real[]::vector, "
                 "'{1:1}/4'::sparsevec, 'x' FROM generate_series(1, 60) i")
    expect_error(conn, "CREATE INDEX ON dd USING binary_scan (v, id)", ["binary_scan", "multicolumn"],
                 cls=E.FeatureNotSupported)
    expect_error(conn, "CREATE INDEX ON dd USING binary_scan (v) INCLUDE (id)", ["binary_scan", "included"],
                 cls=E.FeatureNotSupported)
    expect_error(conn, "CREATE INDEX ON dd USING binary_scan (s)", ["binary_scan", "operator class"])
    expect_error(conn, "CREATE INDEX ON dd USING binary_scan (t)", ["binary_scan", "operator class"])
    expect_error(conn, "CREATE INDEX ON dd USING binary_scan (v) WITH (quantizer = 'median')", ["quantizer"],
                 cls=E.InvalidParameterValue)
    expect_error(conn, "CREATE INDEX ON dd USING binary_scan (v) WITH (rerank = 5)", ["rerank"],
                 cls=E.InvalidParameterValue)
    expect_error(conn, "CREATE INDEX ON dd USING binary_scan (v vector_ip_ops) WITH (quantizer = 1)",
                 ["quantizer"], cls=E.InvalidParameterValue)
    conn.execute("CREATE INDEX CONCURRENTLY dd_cos ON dd USING binary_scan (v vector_cosine_ops)")
    expect_error(conn, "CLUSTER dd USING dd_cos", ["cluster"], cls=E.FeatureNotSupported)
    conn.execute("REINDEX INDEX CONCURRENTLY dd_cos")
    conn.execute("CREATE INDEX dd_part ON dd USING binary_scan (v) WHERE id > 20")
    conn.execute("CREATE INDEX dd_half ON dd USING binary_scan ((v::halfvec(4)) halfvec_ip_ops)")
    conn.execute("CREATE INDEX dd_bits ON dd USING binary_scan ((bit_quantize(v)) bit_hamming_ops)")
    conn.execute("INSERT INTO dd SELECT i, ARRAY[i % 5, -1, i % 3, 2]::real[]::vector FROM generate_series(61, 90) i")
    q = ["[1,2,0,-1]", "[0,0,0,1]", "[3,1,4,-2]"]
    check_index_equals_seq(conn, "dd", "v", "<=>", "vector", q, k=7)
    check_index_equals_seq(conn, "dd", "v", "<->", "vector", q, k=7, where="id > 20")
    check_index_equals_seq(conn, "dd", "v::halfvec(4)", "<#>", "halfvec(4)", q, k=7)
    check_index_equals_seq(conn, "dd", "bit_quantize(v)", "<~>", "varbit", ["1010", "0001"], k=7, ids=False)
    for col, op, qt in [("v", "<=>", "vector"), ("v::halfvec(4)", "<#>", "halfvec(4)")]:
        assert uses_index(conn, "dd", col, op, q[0], qt), col
    conn.execute("CREATE UNLOGGED TABLE du (id int, v halfvec(5))")
    conn.execute("CREATE INDEX ON du USING binary_scan (v halfvec_l2_ops)")
    conn.execute("INSERT INTO du SELECT i, ARRAY[i, 1, -i, 0.5, i % 3]::real[]::halfvec FROM generate_series(1, 40) i")
    check_index_equals_seq(conn, "du", "v", "<->", "halfvec", ["[3,1,-3,0.5,0]", "[0,0,0,0,0]"], k=5)
    guard.check("ddl misuse")


def test_concurrent_sessions(conn, guard, db_url) -> None:
    """Two sessions interleave inserts (one rolls back, one fails on dimensions while the other's first row
    is uncommitted) into an untyped indexed column; the index then equals the seq scan."""
    conn.execute("CREATE TABLE cs (id int, v vector)")
    conn.execute("CREATE INDEX cs_idx ON cs USING binary_scan (v vector_l2_ops)")
    rng = random.Random(41)
    with psycopg.connect(db_url, autocommit=True) as a, psycopg.connect(db_url, autocommit=True) as b:
        a.prepare_threshold = b.prepare_threshold = None
        a.execute("BEGIN")
        a.execute("INSERT INTO cs VALUES (0, '[1,2,3]')")  # fixes the index's dimensions, not yet committed
        with pytest.raises(psycopg.errors.DataError, match="binary_scan index expects 3 dimensions, got 4"):
            b.execute("INSERT INTO cs VALUES (1, '[1,2,3,4]')")
        a.execute("COMMIT")
        next_id = 2
        for step in range(60):
            who = a if step % 2 else b
            who.execute("BEGIN")
            for _ in range(rng.randint(1, 4)):
                who.execute("INSERT INTO cs VALUES (%s, %s::vector)",
                            [next_id, vec_literal(f32_text(rand_f32(rng, 3, "normal")))])
                next_id += 1
            if rng.random() < 0.2:
                who.execute(f"DELETE FROM cs WHERE mod(id, 5) = {rng.randrange(5)}")
            who.execute("ROLLBACK" if rng.random() < 0.3 else "COMMIT")
            if step % 15 == 14:
                who.execute("VACUUM cs")
    qs = [vec_literal(f32_text(rand_f32(rng, 3, "normal"))) for _ in range(4)]
    check_index_equals_seq(conn, "cs", "v", "<->", "vector", qs, k=6)
    assert_index_returns_all_rows_once(conn, "cs", "v", "<->", qs[0], "vector", 2)
    COUNTS["concurrent session statements"] += 60
    guard.check("concurrent sessions")


def test_binary_rerank_guc(conn, guard) -> None:
    E = psycopg.errors
    default = conn.execute("SHOW pgsieve.binary_rerank").fetchone()[0]
    for bad in ["0", "-1", "1000000000", "1000001", "'abc'", "''", "'1e3x'", "-2147483649", "99999999999999999999"]:
        expect_error(conn, f"SET pgsieve.binary_rerank = {bad}", ["pgsieve.binary_rerank"],
                     cls=E.InvalidParameterValue)
        assert conn.execute("SHOW pgsieve.binary_rerank").fetchone()[0] == default
    for good in ["1", "1000000", "100000"]:
        conn.execute(f"SET pgsieve.binary_rerank = {good}")
        assert conn.execute("SHOW pgsieve.binary_rerank").fetchone()[0] == good
    conn.execute("RESET pgsieve.binary_rerank")
    # set_config() and SET LOCAL take the same path
    expect_error(conn, "SELECT set_config('pgsieve.binary_rerank', '0', false)", ["pgsieve.binary_rerank"],
                 cls=E.InvalidParameterValue)
    # before the library is loaded a session holds a placeholder, which accepts anything; loading the library
    # then rejects the bad value with a WARNING and keeps the default (core PostgreSQL behaviour)
    with psycopg.connect(guard.url, autocommit=True) as fresh:
        notices = []
        fresh.add_notice_handler(lambda d: notices.append(d.message_primary))
        fresh.execute("SET pgsieve.binary_rerank = 'abc'")
        fresh.execute("SELECT hamming(B'1', B'1')")
        assert fresh.execute("SHOW pgsieve.binary_rerank").fetchone()[0] == default
        assert any("pgsieve.binary_rerank" in n for n in notices), notices
    COUNTS["edge cases"] += 1
    guard.check("guc")


# ---------------------------------------------------------------------------------------------------------------
# 8. random index queries (dims right, values wild, filters, tiny re-rank) and random operations

@pytest.fixture(scope="module")
def query_tables(conn: psycopg.Connection) -> None:
    rng = random.Random(21)
    conn.execute("CREATE TABLE qv (id int, v vector(16), h halfvec(16), b bit(48))")
    rows = []
    for i in range(1, 401):
        x = rand_f32(rng, 16, rng.choice(["normal", "normal", "ints", "zeros", "mixed"]))
        if rng.random() < 0.05 and rows:
            x = np.array(rows[rng.randrange(len(rows))][0], dtype=np.float32)  # duplicates
        xh = to_half(np.clip(x, -65504, 65504)).astype(np.float32)
        rows.append((x.tolist(), xh.tolist(), rand_bits(rng, 48, rng.choice([0.5, 0.1, 0.9]))))
    with conn.cursor().copy("COPY qv (id, v, h, b) FROM STDIN") as cp:
        for i, (x, xh, b) in enumerate(rows, 1):
            null = rng.random() < 0.04
            cp.write_row((i, None if null else vec_literal(f32_text(np.array(x, dtype=np.float32))),
                          vec_literal(f32_text(np.array(xh, dtype=np.float32))), b))
    conn.execute("""
        CREATE INDEX qv_v_l2 ON qv USING binary_scan (v vector_l2_ops);
        CREATE INDEX qv_v_ip ON qv USING binary_scan (v vector_ip_ops) WITH (quantizer = sign);
        CREATE INDEX qv_v_cos ON qv USING binary_scan (v vector_cosine_ops);
        CREATE INDEX qv_h_l2 ON qv USING binary_scan (h halfvec_l2_ops) WITH (quantizer = mean);
        CREATE INDEX qv_h_ip ON qv USING binary_scan (h halfvec_ip_ops);
        CREATE INDEX qv_h_cos ON qv USING binary_scan (h halfvec_cosine_ops);
        CREATE INDEX qv_b ON qv USING binary_scan (b bit_hamming_ops);
        ANALYZE qv;
    """)


QCOLS = [("v", "<->", "vector"), ("v", "<#>", "vector"), ("v", "<=>", "vector"), ("h", "<->", "halfvec"),
         ("h", "<#>", "halfvec"), ("h", "<=>", "halfvec"), ("b", "<~>", "bit(48)")]

query_case = st.tuples(st.sampled_from(range(len(QCOLS))), st.sampled_from(["normal", "huge", "tiny", "zeros",
                                                                            "mixed", "ints"]),
                       st.sampled_from([1, 5, 37, 1000]), st.sampled_from(["", "mod(id, 3) = 0", "id > 390"]),
                       st.sampled_from([1, 2, 7, 400, 100000]), st.booleans(), st.integers(0, 2**32 - 1))


@fuzz_settings(100)
@given(cases=st.lists(query_case, min_size=4, max_size=12))
def test_index_query_fuzz(conn, guard, query_tables, cases) -> None:
    """Wild query values against every opclass: never a crash; with re-rank covering the table the index
    order equals the seq scan; with a tiny re-rank the scan still returns every matching row exactly once."""
    for ci, profile, k, where, rerank, nullq, seed in cases:
        col, op, qtype = QCOLS[ci]
        rng = random.Random(seed)
        if qtype.startswith("bit"):
            q = rand_bits(rng, 48, rng.choice([0.5, 0.0, 1.0]))
        else:
            x = rand_f32(rng, 16, profile)
            if qtype == "halfvec":
                x = to_half(np.clip(x, -65504, 65504)).astype(np.float32)
            q = vec_literal(f32_text(x))
        if nullq and rng.random() < 0.2:
            q = None
        conn.execute(f"SET pgsieve.binary_rerank = {rerank}")
        try:
            got = knn(conn, "qv", col, op, q, qtype, k, index=True, where=where)
        except psycopg.Error as e:
            assert not connection_lost(e, conn), f"connection lost on query {col} {op} {q} rerank {rerank}: {e}"
            raise
        finally:
            conn.execute("RESET pgsieve.binary_rerank")
        want = knn(conn, "qv", col, op, q, qtype, k, index=False, where=where)
        COUNTS["index queries"] += 1
        assert len(got) == len(want), (col, op, q, k, where, rerank)
        assert len({i for i, _ in got}) == len(got), "duplicate rows from the index"
        if q is not None and rerank >= 400:
            assert_same_knn(got, want, f"qv.{col} {op}", ids=not qtype.startswith("bit"))
        elif q is not None and qtype.startswith("bit"):
            assert_same_knn(got, want, f"qv.{col} {op}", ids=False)  # bit order is exact at any re-rank
    guard.check("index query fuzz")


def test_lateral_rescans(conn, guard, query_tables) -> None:
    """One statement re-scans each index once per outer row (amrescan with a new query, NULL queries among them):
    every per-query result equals the seq scan's."""
    rng = random.Random(31)
    conn.execute("CREATE TABLE lat_q (qid int, v vector(16), h halfvec(16), b bit(48))")
    with conn.cursor().copy("COPY lat_q (qid, v, h, b) FROM STDIN") as cp:
        for i in range(60):
            x = rand_f32(rng, 16, rng.choice(["normal", "ints", "mixed", "zeros"]))
            xh = to_half(np.clip(x, -65504, 65504)).astype(np.float32)
            null = i % 13 == 5
            cp.write_row((i, None if null else vec_literal(f32_text(x)), None if null else vec_literal(f32_text(xh)),
                          None if null else rand_bits(rng, 48, 0.5)))
    for col, op, qtype in QCOLS:
        stmt = (f"SELECT qq.qid, s.ids, s.ds FROM lat_q qq CROSS JOIN LATERAL (SELECT array_agg(id) ids, "
                f"array_agg(d) ds FROM (SELECT id, ({col} {op} qq.{col})::float8 d FROM qv WHERE {col} IS NOT NULL "
                f"ORDER BY {col} {op} qq.{col} LIMIT 5) x) s ORDER BY qq.qid")
        conn.execute("SET pgsieve.binary_rerank = 100000")
        try:
            conn.execute("SET enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + stmt).fetchall())
            assert "Index Scan using qv_" in plan, plan
            got = conn.execute(stmt).fetchall()
            conn.execute("SET enable_seqscan = on")
            conn.execute("SET enable_indexscan = off")
            want = conn.execute(stmt).fetchall()
        finally:
            for g in ("pgsieve.binary_rerank", "enable_seqscan", "enable_indexscan"):
                conn.execute(f"RESET {g}")
        assert len(got) == len(want) == 60
        for (qid, gi, gd), (_, wi, wd) in zip(got, want):
            assert_same_knn(list(zip(gi, gd)), list(zip(wi, wd)), f"lateral {col} {op} q{qid}",
                            ids=not qtype.startswith("bit"))
        COUNTS["index queries (lateral rescans)"] += 60
    guard.check("lateral rescans")


def test_unqualified_index_scan_keeps_null_rows(conn, guard) -> None:
    conn.execute("CREATE TABLE nullcnt (id int, v vector(3))")
    conn.execute("INSERT INTO nullcnt SELECT i, CASE WHEN i % 4 = 0 THEN NULL ELSE '[1,2,3]'::vector END "
                 "FROM generate_series(1, 100) i")
    conn.execute("CREATE INDEX ON nullcnt USING binary_scan (v)")
    conn.execute("ANALYZE nullcnt")
    conn.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT count(*) FROM nullcnt").fetchall())
        n = conn.execute("SELECT count(*) FROM nullcnt").fetchone()[0]
    finally:
        conn.execute("RESET enable_seqscan")
    guard.check("null rows")
    assert n == 100, f"count(*) = {n} with plan:\n{plan}"


OPS_COLS = [("v", "<->", "vector"), ("v", "<#>", "vector"), ("v", "<=>", "vector"), ("h", "<=>", "halfvec"),
            ("h", "<#>", "halfvec"), ("b", "<~>", "bit(24)")]


def _ops_row(rng: random.Random) -> tuple:
    p = rng.random()
    x = rand_f32(rng, 12, "zeros" if p < 0.05 else rng.choice(["normal", "ints", "mixed"]))
    xh = to_half(np.clip(x, -65504, 65504)).astype(np.float32)
    v = None if rng.random() < 0.05 else vec_literal(f32_text(x))
    h = None if rng.random() < 0.05 else vec_literal(f32_text(xh))
    b = None if rng.random() < 0.05 else rand_bits(rng, 24, rng.choice([0.5, 0.2]))
    return v, h, b


@pytest.mark.parametrize("seed", [1, 2])
def test_random_operations(conn, guard, seed) -> None:
    """Seeded random INSERT/UPDATE/DELETE/VACUUM/REINDEX (and rolled-back inserts) on a table with seven
    binary_scan indexes; every 40 steps and at the end, index scans (re-rank covering all rows) equal seq scans."""
    rng = random.Random(seed)
    t = f"ops{seed}"
    conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v vector(12), h halfvec(12), b bit(24), note text)")
    quant = "sign" if seed == 1 else "mean"
    conn.execute(f"""
        CREATE INDEX {t}_v_l2 ON {t} USING binary_scan (v vector_l2_ops) WITH (quantizer = {quant});
        CREATE INDEX {t}_v_ip ON {t} USING binary_scan (v vector_ip_ops);
        CREATE INDEX {t}_v_cos ON {t} USING binary_scan (v vector_cosine_ops);
        CREATE INDEX {t}_h_cos ON {t} USING binary_scan (h halfvec_cosine_ops) WITH (quantizer = {quant});
        CREATE INDEX {t}_h_ip ON {t} USING binary_scan (h halfvec_ip_ops);
        CREATE INDEX {t}_b ON {t} USING binary_scan (b bit_hamming_ops);
    """)
    next_id = 1
    steps = 200
    ops_done = collections.Counter()

    def check(label: str) -> None:
        n_rows = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for col, op, qtype in OPS_COLS:
            qs = []
            for _ in range(2):
                if qtype.startswith("bit"):
                    qs.append(rand_bits(rng, 24, 0.5))
                else:
                    qs.append(vec_literal(f32_text(rand_f32(rng, 12, rng.choice(["normal", "ints"])))))
            existing = conn.execute(f"SELECT {col}::text FROM {t} WHERE {col} IS NOT NULL LIMIT 1").fetchone()
            if existing:
                qs.append(existing[0])
            check_index_equals_seq(conn, t, col, op, qtype, qs, k=5, ids=not qtype.startswith("bit"))
            # all non-NULL rows, each exactly once, even with a tiny re-rank (many batches)
            assert_index_returns_all_rows_once(conn, t, col, op, qs[0], qtype, 3)
        COUNTS["random-ops checks"] += 1
        guard.check(f"random ops {label} ({n_rows} rows)")

    for step in range(steps):
        r = rng.random()
        ids = [row[0] for row in conn.execute(f"SELECT id FROM {t}").fetchall()]
        if r < 0.40 or len(ids) < 10:
            k = rng.randint(1, 8)
            rows = [(next_id + i, *_ops_row(rng)) for i in range(k)]
            next_id += k
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {t} (id, v, h, b) VALUES (%s, %s::vector, %s::halfvec, %s::bit(24))",
                                rows)
            ops_done["insert"] += k
        elif r < 0.55:
            victims = rng.sample(ids, min(len(ids), rng.randint(1, 6)))
            conn.execute(f"DELETE FROM {t} WHERE id = ANY(%s)", [victims])
            ops_done["delete"] += len(victims)
        elif r < 0.72:
            for rid in rng.sample(ids, min(len(ids), rng.randint(1, 4))):
                v, h, b = _ops_row(rng)
                which = rng.choice(["v", "h", "b", "all", "note"])
                if which == "note":  # HOT-able update of a non-indexed column
                    conn.execute(f"UPDATE {t} SET note = %s WHERE id = %s", [str(step), rid])
                elif which == "all":
                    conn.execute(f"UPDATE {t} SET v = %s::vector, h = %s::halfvec, b = %s::bit(24) WHERE id = %s",
                                 [v, h, b, rid])
                else:
                    val = {"v": v, "h": h, "b": b}[which]
                    cast = {"v": "vector", "h": "halfvec", "b": "bit(24)"}[which]
                    conn.execute(f"UPDATE {t} SET {which} = %s::{cast} WHERE id = %s", [val, rid])
                ops_done["update"] += 1
        elif r < 0.80:
            try:
                with conn.transaction():
                    rows = [(next_id + i, *_ops_row(rng)) for i in range(rng.randint(1, 5))]
                    next_id += len(rows)
                    with conn.cursor() as cur:
                        cur.executemany(f"INSERT INTO {t} (id, v, h, b) VALUES "
                                        f"(%s, %s::vector, %s::halfvec, %s::bit(24))", rows)
                    raise psycopg.Rollback()
            finally:
                ops_done["rolled back insert"] += 1
        elif r < 0.84:
            # a bad row in a multi-row insert rolls back the good ones too; the index must not keep them
            rows = [(next_id, *_ops_row(rng)), (next_id + 1, "[1,2,3]", None, None)]
            next_id += 2
            with pytest.raises(psycopg.errors.DataError):
                with conn.transaction():
                    with conn.cursor() as cur:
                        cur.executemany(f"INSERT INTO {t} (id, v, h, b) VALUES "
                                        f"(%s, %s::vector, %s::halfvec, %s::bit(24))", rows)
            ops_done["failed insert"] += 1
        elif r < 0.93:
            conn.execute(f"VACUUM {t}")
            ops_done["vacuum"] += 1
        elif r < 0.96:
            conn.execute(f"REINDEX INDEX {rng.choice([f'{t}_v_l2', f'{t}_h_cos', f'{t}_b'])}")
            ops_done["reindex"] += 1
        elif r < 0.98:
            conn.execute(f"VACUUM FULL {t}")
            ops_done["vacuum full"] += 1
        else:
            conn.execute(f"ANALYZE {t}")
            ops_done["analyze"] += 1
        COUNTS["random-ops steps"] += 1
        if (step + 1) % 40 == 0:
            check(f"step {step + 1}")
    assert ops_done["insert"] and ops_done["delete"] and ops_done["update"] and ops_done["vacuum"], ops_done
    check("end")


# ---------------------------------------------------------------------------------------------------------------

def test_zz_summary(guard) -> None:
    """Last: the server never restarted during the module; print how many inputs were exercised."""
    guard.check("summary")
    total = sum(v for k, v in COUNTS.items() if not k.endswith("(errors)") and k != "random-ops checks")
    lines = ", ".join(f"{k}: {v}" for k, v in sorted(COUNTS.items()))
    print(f"\nfuzzed {total} inputs in {time.monotonic() - T_START:.1f} s ({lines}); "
          f"{guard.checks} liveness checks, postmaster start time unchanged")
    if {"bit functions", "float input / bit_quantize", "malformed text", "binary COPY streams"} <= set(COUNTS):
        assert total >= 3000  # the whole module ran
