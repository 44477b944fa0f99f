#!/usr/bin/env python3
"""MaxSim throughput: SQL ``maxsim(multivec, multivec)`` against numpy float32 on the same tokens.

    python bench/maxsim_throughput.py [--docs 2000] [--dim 128] [--nq 32] [--min-tok 100] [--max-tok 200]
                                      [--dsn URL] [--repeat 5]

Documents are random unit-norm tokens (``--min-tok``..``--max-tok`` tokens each), stored once per format
(float32, float16, int8) in ``multivec`` columns, loaded through binary COPY.  Measured, best of ``--repeat``,
one core each:

* ``numpy``: ``sum((Q @ D.T).max(1).sum() for D in docs)`` on float32 arrays in memory, BLAS pinned to one
  thread (set before numpy is imported);
* ``numpy batched``: the same with all documents in one matrix — one GEMM, then ``np.maximum.reduceat`` over
  each document's rows (numpy's best case; a database scores rows one at a time);
* ``kernel``: ``pgsieve.kernels.maxsim`` in a Python loop over the same arrays (the shared C kernel);
* ``sql <fmt>``: ``SELECT sum(maxsim(col, $q)) FROM docs`` with parallel query off — the full SQL cost:
  detoasting each document (they are TOASTed: 13-100 kB), the function call and the kernel;
* ``sql-topk <fmt>``: ``SELECT id FROM docs ORDER BY col @# $q LIMIT 10``.

Without ``--dsn`` an embedded server is started in a temporary directory and removed afterwards.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import psycopg  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pyclient"))

from pgsieve import kernels  # noqa: E402


def wire_f32(x: np.ndarray) -> bytes:
    """multivec binary wire format, float32: int32 ntok, int16 dim, int16 format 0, then big-endian floats."""
    return struct.pack("!ihh", x.shape[0], x.shape[1], 0) + x.astype(">f4").tobytes()


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


# The measured computations, shared with the ``multivector`` bench suite (bench/suites/multivector.py), which runs
# them on the corpus's real token vectors.

def numpy_loop(docs, q: np.ndarray) -> float:
    """numpy float32 MaxSim, one document at a time (matmul + max): what a row-at-a-time scorer does."""
    return float(sum((q @ d.T).max(1).sum() for d in docs))


def numpy_batched(tokens: np.ndarray, starts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """numpy's best case: one GEMM over every document's tokens (``tokens``: all of them, row-major, document
    after document from ``starts``), then the max over each document's rows; returns the (n_docs,) scores."""
    return np.maximum.reduceat(tokens @ q.T, starts, axis=0).sum(axis=1)


def sql_sum(conn, table: str, col: str, q) -> float:
    """``SELECT sum(maxsim(col, q))``: every row's MaxSim in SQL (detoast, call, kernel), one result row."""
    return float(conn.execute(f"SELECT sum(maxsim({col}, %s::multivec)) FROM {table}", (q,)).fetchone()[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--nq", type=int, default=32)
    p.add_argument("--min-tok", type=int, default=100)
    p.add_argument("--max-tok", type=int, default=200)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dsn", help="connection URL of a server with pgsieve installed (default: a temporary one)")
    a = p.parse_args(argv)

    rng = np.random.default_rng(a.seed)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, a.dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    docs = [unit(int(n)) for n in rng.integers(a.min_tok, a.max_tok + 1, a.docs)]
    q = unit(a.nq)
    ntok = sum(d.shape[0] for d in docs)
    print(f"{a.docs} docs, {ntok / a.docs:.0f} tokens/doc avg, dim {a.dim}, {a.nq} query tokens; "
          f"kernel level {kernels.level_name()}")

    tmp = None
    dsn = a.dsn
    if dsn is None:
        from pgsieve import extbuild, server

        tmp = Path(tempfile.mkdtemp(prefix="pgsieve-maxsim-"))
        tmp.chmod(0o755)
        extbuild.install_extension()
        dsn = server.start(tmp / "pgdata")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgsieve")
            conn.execute("DROP TABLE IF EXISTS maxsim_bench")
            conn.execute(f"CREATE TABLE maxsim_bench (id int, f32 multivec({a.dim}), "
                         f"f16 multivec({a.dim}, float16), i8 multivec({a.dim}, int8))")
            with conn.cursor() as cur:
                with cur.copy("COPY maxsim_bench FROM STDIN (FORMAT binary)") as cp:
                    cp.set_types(["int4", "bytea", "bytea", "bytea"])
                    for i, d in enumerate(docs):
                        w = wire_f32(d)
                        cp.write_row([i, w, w, w])
            conn.execute("VACUUM ANALYZE maxsim_bench")
            conn.execute("SET max_parallel_workers_per_gather = 0")
            qlit = "[" + ",".join("[" + ",".join(repr(float(v)) for v in row) + "]" for row in q) + "]"

            ref = float(sum((q.astype(np.float64) @ d.T.astype(np.float64)).max(1).sum() for d in docs))
            t_np = best_of(lambda: numpy_loop(docs, q), a.repeat)
            allt = np.ascontiguousarray(np.concatenate(docs))
            starts = np.cumsum([0] + [d.shape[0] for d in docs[:-1]])
            t_nb = best_of(lambda: numpy_batched(allt, starts, q), a.repeat)
            t_k = best_of(lambda: sum(kernels.maxsim(d, q) for d in docs), a.repeat)
            rows = [("numpy float32", t_np), ("numpy float32 batched", t_nb),
                    ("kernel float32 (python loop)", t_k)]
            for col in ("f32", "f16", "i8"):
                got = sql_sum(conn, "maxsim_bench", col, qlit)
                if col == "f32":
                    assert abs(got - ref) < 1e-3 * a.docs, (got, ref)
                rows.append((f"sql maxsim {col}", best_of(lambda: sql_sum(conn, "maxsim_bench", col, qlit),
                                                          a.repeat)))
                topk = f"SELECT id FROM maxsim_bench ORDER BY {col} @# %s::multivec LIMIT 10"
                rows.append((f"sql top-10 {col}", best_of(lambda: conn.execute(topk, (qlit,)).fetchall(), a.repeat)))
            sizes = conn.execute("SELECT avg(pg_column_size(f32)), avg(pg_column_size(f16)), "
                                 "avg(pg_column_size(i8)) FROM maxsim_bench").fetchone()
            conn.execute("DROP TABLE maxsim_bench")
        print(f"{'':32s} {'docs/s':>10s} {'us/doc':>8s} {'vs numpy':>9s}")
        for name, t in rows:
            print(f"{name:32s} {a.docs / t:10.0f} {t / a.docs * 1e6:8.1f} {t_np / t:9.2f}")
        print(f"avg stored bytes/doc: float32 {sizes[0]:.0f}, float16 {sizes[1]:.0f}, int8 {sizes[2]:.0f}")
    finally:
        if tmp is not None:
            from pgsieve import server

            server.stop(tmp / "pgdata")
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
