"""The int8 MaxSim screen (``pgsieve.kernels.maxsim_screen``, the server's ``pgs_maxsim_screen_i8``).

``maxsim_rerank`` scores exactly only the candidates whose screen interval ``[est - bound, est + bound]``
reaches the k-th best lower bound, so its results are right only if ``|maxsim - est| <= bound`` holds for
*every* input, against the exact kernel at *every* dispatch level.  These tests check that bound on random,
structured and adversarial inputs, that every screen path (AMX tiles, AVX512-VNNI, AVX2, the scalar reference)
gives the same bits, and that the bound is tight enough on realistic tokens to be worth screening.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

from pgsieve import kernels as K


@contextlib.contextmanager
def screen_path(name: str) -> Iterator[None]:
    """Run the screen on one path: "scalar" (below the avx2 level), "avx2" (that level), "vnni" (AMX off) or "amx"."""
    if name in ("scalar", "avx2"):
        if name == "avx2" and K.max_level() < 2:
            pytest.skip("this CPU has no avx2 level")
        with K.using_level("popcnt" if name == "scalar" and K.max_level() >= 1 else name):
            assert K.screen_path() == name
            yield
        return
    try:
        if K.set_amx(name == "amx") != name:
            pytest.skip(f"this CPU has no {name} screen path")
        yield
    finally:
        K.set_amx(True)


def available_paths() -> list[str]:
    paths = ["scalar"]
    for name in ("avx2", "vnni", "amx"):
        with contextlib.suppress(pytest.skip.Exception), screen_path(name):
            paths.append(name)
    return paths


PATHS = available_paths()


def tokens(rng: np.random.Generator, n: int, dim: int, kind: str) -> np.ndarray:
    """Token matrices of several shapes of difficulty."""
    if kind == "normal":
        x = rng.standard_normal((n, dim))
    elif kind == "unit":  # what encoders emit: L2-normalized rows
        x = rng.standard_normal((n, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    elif kind == "spiky":  # one huge component per row, the rest tiny: quantization error at its worst
        x = rng.standard_normal((n, dim)) * 1e-3
        x[np.arange(n), rng.integers(0, dim, n)] = rng.choice([-50.0, 50.0], n)
    elif kind == "range":  # magnitudes over many orders, per row
        x = rng.standard_normal((n, dim)) * np.exp2(rng.integers(-60, 60, (n, 1)))
    elif kind == "sparse":
        x = rng.standard_normal((n, dim)) * (rng.random((n, dim)) < 0.05)
    else:
        raise AssertionError(kind)
    return x.astype(np.float32)


def check_codes(codes: np.ndarray, scales: np.ndarray, query: np.ndarray) -> tuple[float, float]:
    """The screen of (codes, scales) against query on every path, asserting the same bits on each and, unless it
    refused (NaN: the float kernel could overflow), the bound against the exact kernel at every level."""
    results = []
    for path in PATHS:
        with screen_path(path):
            results.append(K.maxsim_screen(codes, scales, query))
    assert np.array_equal(np.array(results), np.array(results[:1] * len(results)), equal_nan=True), results
    est, bound = results[0]
    if np.isnan(est):
        return est, bound
    assert bound >= 0
    for lvl in K.available_levels():
        with K.using_level(lvl):
            exact = K.maxsim(codes, query, scales)
        assert abs(exact - est) <= bound, (lvl, exact, est, bound)
    return est, bound


def check(doc: np.ndarray, query: np.ndarray) -> tuple[float, float]:
    codes, scales = K.quantize_i8(doc)
    return check_codes(codes, scales, query)


@pytest.mark.parametrize("dim", [1, 3, 4, 31, 64, 96, 100, 128, 130, 384, 768, 1000])
@pytest.mark.parametrize("kind", ["normal", "unit", "spiky", "range", "sparse"])
def test_bound_holds_on_every_path_and_level(dim: int, kind: str) -> None:
    rng = np.random.default_rng(dim * 31 + len(kind))
    for nq, nd in [(1, 1), (3, 15), (8, 16), (9, 17), (16, 33), (17, 48), (32, 70)]:
        query = tokens(rng, nq, dim, kind)
        doc = tokens(rng, nd, dim, kind)
        check(doc, query)


def test_bound_holds_for_extreme_codes_and_scales() -> None:
    rng = np.random.default_rng(7)
    dim = 192
    screened = 0
    for _ in range(40):
        nd = int(rng.integers(1, 40))
        codes = rng.choice(np.array([-128, -127, 127, 0, 1, -1], dtype=np.int8), (nd, dim))
        scales = (np.exp2(rng.integers(-120, 100, nd)) * rng.random(nd)).astype(np.float32)
        query = (rng.standard_normal((int(rng.integers(1, 33)), dim)) *
                 np.exp2(rng.integers(-100, 20))).astype(np.float32)
        est, _ = check_codes(codes, scales, query)
        screened += not np.isnan(est)
    assert screened >= 20


def test_near_ties_are_inside_the_bound() -> None:
    # documents that differ in one code of one token: exact scores a hair apart
    rng = np.random.default_rng(3)
    dim = 128
    query = tokens(rng, 12, dim, "unit")
    codes, scales = K.quantize_i8(tokens(rng, 30, dim, "unit"))
    for t in range(30):
        for k in (0, dim // 2, dim - 1):
            c = codes.copy()
            c[t, k] = np.int8(max(-127, min(127, int(c[t, k]) + 1)))
            est, bound = K.maxsim_screen(c, scales, query)
            assert abs(K.maxsim(c, query, scales) - est) <= bound


def test_screen_leaves_few_candidates_for_the_exact_pass() -> None:
    # what maxsim_rerank does with the bounds: 100 candidates whose tokens are noisy copies of the query's
    # (relevance spread over a range, as a first stage returns them), k = 10; only those whose interval
    # reaches the 10th best lower bound are scored exactly, and the exact top 10 must be among them
    rng = np.random.default_rng(11)
    for dim in (96, 128, 384, 768):
        query = tokens(rng, 32, dim, "unit")
        est, bound, exact = [], [], []
        for i in range(100):
            noise = 0.5 + 2.5 * rng.random()
            doc = np.concatenate([query[rng.integers(0, 32, 20)] + noise * tokens(rng, 20, dim, "unit"),
                                  tokens(rng, 40, dim, "unit")])
            codes, scales = K.quantize_i8(doc / np.linalg.norm(doc, axis=1, keepdims=True))
            e, b = K.maxsim_screen(codes, scales, query)
            est.append(e)
            bound.append(b)
            exact.append(K.maxsim(codes, query, scales))
        lo, hi = np.array(est) - bound, np.array(est) + bound
        bar = np.sort(lo)[-10]
        survivors = hi >= bar
        assert survivors[np.argsort(exact)[-10:]].all()
        assert survivors.sum() <= 20, (dim, int(survivors.sum()))


def test_empty_docs_and_bad_requests() -> None:
    q = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="at least one token"):
        K.maxsim_screen(np.zeros((0, 8), np.int8), np.zeros(0, np.float32), q)
    with pytest.raises(ValueError, match="1 to 32 tokens"):
        K.maxsim_screen(np.zeros((3, 8), np.int8), np.ones(3, np.float32), np.ones((33, 8), np.float32))
    with pytest.raises(ValueError, match="int8 doc"):
        K.maxsim_screen(np.zeros((3, 8), np.float32), None, q)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dimensions"):
        K.maxsim_screen(np.zeros((3, 9), np.int8), np.ones(3, np.float32), q)
    # an all-zero query: estimate and bound 0 (nothing to round)
    est, bound = K.maxsim_screen(np.ones((3, 8), np.int8), np.ones(3, np.float32), np.zeros((2, 8), np.float32))
    assert est == 0.0 and 0 <= bound < 1e-30
