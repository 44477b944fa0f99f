"""Property-style fuzz campaign and cancel-latency check for pgsieve, against a throwaway embedded server.

Fuzzing (``--inputs N``, default 100,000, deterministic ``--seed``): hostile inputs for every pgsieve type and
function — ``multivec`` text input, typmods, casts and ``multivec_convert``; ``multivec`` binary receive through
binary COPY of garbled payloads (truncated, extended, flipped bits, wrong ntok/dim/format, NaN/Inf scales and
elements); ``muvera_fde`` with hostile parameters and tokens; ``maxsim`` / ``@#`` with mismatched dimensions;
``maxsim_rerank`` with hostile relations, columns, TID and score arrays, k, alpha, beta; ``hamming`` /
``jaccard`` / ``bit_quantize`` / ``bit_ip`` / ``bit_thresholds`` with mismatched lengths and non-finite
thresholds; inserts of hostile values into ``binary_scan`` (vector, halfvec, bit), ``sparse_block`` (sparsevec)
and ``multivec_fde`` indexes (typmod and untyped columns), index scans with hostile query values, and CREATE
INDEX with hostile reloptions. SQL inputs are sent in batches to a PL/pgSQL function that runs each one in its
own EXCEPTION block (a subtransaction) and returns the failures; binary COPY inputs go one COPY each.

Assertions: no crash (the connection stays alive, ``pg_postmaster_start_time()`` is unchanged and the server log
has no "terminated by signal"), and every error message names the type or function involved (one of
``NAME_WORDS``); errors raised by PostgreSQL core on pgsieve's behalf that cannot name it (reloption bounds,
COPY framing) are matched by ``CORE_MESSAGES`` and counted apart. Anything else is reported as "unnamed".

Cancel latency: per access method, a CREATE INDEX and an exhaustive index scan are stopped by
``statement_timeout``; the latency is the statement's run time minus the timeout.

    python bench/fuzz.py --inputs 100000 --update-md     # BENCHMARKS.md "Fuzzing" and "Cancel latency" tables

``tests/test_fuzz_smoke.py`` runs ~2,000 inputs with the same assertions.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import psycopg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.reliability import CrashServer, log  # noqa: E402

SETTINGS = {"wal_consistency_checking": "''", "maintenance_work_mem": "512MB", "shared_buffers": "128MB"}

#: an error message must contain one of these (case-insensitive)
NAME_WORDS = ("multivec", "muvera_fde", "maxsim", "maxsim_rerank", "@#", "sparse_block", "binary_scan",
              "multivec_fde", "sparsevec", "vector", "halfvec", "bit", "hamming", "jaccard", "pgsieve")
#: messages PostgreSQL core raises itself (the CONTEXT names the column / option): counted, not failures
CORE_MESSAGES = {
    "reloption bounds (core)": re.compile(r'out of bounds for option|invalid value for (integer|floating point|'
                                          r'enum|boolean) option|unrecognized parameter'),
    "COPY framing (core)": re.compile(r"incorrect binary data format in field|row field count"),
    "relation kind (core)": re.compile(r'is not a table|is an index|does not exist'),
    "pgvector typmod check (pgvector)": re.compile(r"^expected \d+ dimensions, not \d+$"),
    "statement timeout": re.compile(r"canceling statement due to statement timeout"),
}

TABLES_SQL = """
CREATE TABLE fz_bs_v (id serial, v vector(8));   CREATE INDEX fz_bs_v_i ON fz_bs_v USING binary_scan (v vector_cosine_ops);
CREATE TABLE fz_bs_u (id serial, v vector);      CREATE INDEX fz_bs_u_i ON fz_bs_u USING binary_scan (v vector_ip_ops);
CREATE TABLE fz_bs_h (id serial, v halfvec(8));  CREATE INDEX fz_bs_h_i ON fz_bs_h USING binary_scan (v halfvec_l2_ops);
CREATE TABLE fz_bs_b (id serial, v bit(64));     CREATE INDEX fz_bs_b_i ON fz_bs_b USING binary_scan (v bit_hamming_ops);
CREATE TABLE fz_bs_bu (id serial, v bit varying);CREATE INDEX fz_bs_bu_i ON fz_bs_bu USING binary_scan (v);
CREATE TABLE fz_sb (id serial, v sparsevec(1000)); CREATE INDEX fz_sb_i ON fz_sb USING sparse_block (v);
CREATE TABLE fz_sb_u (id serial, v sparsevec);   CREATE INDEX fz_sb_u_i ON fz_sb_u USING sparse_block (v);
CREATE TABLE fz_mf (id serial, v multivec(8));   CREATE INDEX fz_mf_i ON fz_mf USING multivec_fde (v) WITH (reps = 2, ksim = 2, dproj = 4);
CREATE TABLE fz_mf_u (id serial, v multivec(8, int8) ); CREATE INDEX fz_mf_u_i ON fz_mf_u USING multivec_fde (v);
CREATE TABLE fz_mf_n (id serial, v multivec);    CREATE INDEX fz_mf_n_i ON fz_mf_n USING multivec_fde (v) WITH (reps = 1, ksim = 1);
CREATE TABLE fz_recv (id int4, m multivec, t multivec(3, int8));
CREATE TABLE fz_small (id int, v vector(4), s sparsevec(50), m multivec(4), b bit(16));
INSERT INTO fz_small SELECT i, ARRAY[i, -i, 1, 0.5]::vector, ('{' || (i % 50) + 1 || ':' || i || '}/50')::sparsevec,
       ('[[' || i || ',1,2,3],[0,0,0,' || -i || ']]')::multivec, (i % 65536)::bit(16) FROM generate_series(1, 40) i;
INSERT INTO fz_mf (v) SELECT ('[[' || i || ',1,2,3,4,5,6,7]]')::multivec FROM generate_series(1, 20) i;
CREATE VIEW fz_view AS SELECT * FROM fz_mf;
CREATE FUNCTION fz_run(stmts text[]) RETURNS TABLE (i int, state text, msg text) LANGUAGE plpgsql AS $f$
DECLARE
  n int := coalesce(array_length(stmts, 1), 0);
BEGIN
  FOR k IN 1 .. n LOOP
    BEGIN
      EXECUTE stmts[k];
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
      i := k;
      RETURN NEXT;
    END;
  END LOOP;
END $f$;
"""
INDEXED = ["fz_bs_v", "fz_bs_u", "fz_bs_h", "fz_bs_b", "fz_bs_bu", "fz_sb", "fz_sb_u", "fz_mf", "fz_mf_u",
           "fz_mf_n"]

# ------------------------------------------------------------------------------------------------------------
# hostile value generators

NUMS = ["0", "1", "-1", "0.5", "-2.25", "1e-45", "1e-46", "3.4e38", "3.5e38", "-3.4e38", "1e39", "65504", "65520",
        "NaN", "nan", "Infinity", "-Infinity", "inf", "-inf", "1e308", "1e309", "-0", "0x10", "1.5.5", "", " ",
        "+", "-", "e5", "1e", "٣", "1_000", "123456789012345678901234567890"]
GARBAGE = ["[", "]", ",", " ", "\t", "\n", "[[", "]]", "[]", "[[]]", "{", "}", ":", "/", "'", "\\", "\"", "x",
           "\x01", "\x7f", "é", "NULL", "null", "-", "."]


def rnum(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.55:
        return repr(round(rng.gauss(0, 2), rng.randint(0, 6)))
    if r < 0.9:
        return rng.choice(NUMS[:22])
    return rng.choice(NUMS)


def rdim(rng: random.Random, base: int = 8) -> int:
    return rng.choice([base] * 6 + [0, 1, base - 1, base + 1, 3, 16000, 16001, 70000])


def mv_text(rng: random.Random, dim: int | None = None) -> str:
    """A multivec literal: usually well formed, often hostile (ragged, non-finite, huge, garbage)."""
    r = rng.random()
    if r < 0.08:
        return "".join(rng.choice(GARBAGE + NUMS) for _ in range(rng.randint(0, 20)))
    if r < 0.12:  # huge token count / dims, of mostly zeros
        ntok, d = rng.choice([(8192, 1), (8193, 1), (1, 16000), (1, 16001), (2, 40000), (0, 1)])
        tok = "[" + ",".join("0" for _ in range(d)) + "]"
        return "[" + ",".join(tok for _ in range(ntok)) + "]"
    d = dim if dim is not None and rng.random() < 0.7 else rdim(rng, dim or 8)
    d = min(d, 64) if rng.random() < 0.9 else d
    ntok = rng.choice([1, 1, 2, 3, 5, 0]) if rng.random() < 0.95 else rng.randint(6, 40)
    toks = []
    for _ in range(ntok):
        dd = d if rng.random() < 0.9 else max(0, d + rng.choice([-1, 1, 5]))
        toks.append("[" + ",".join(rnum(rng) if rng.random() < 0.2 else repr(round(rng.uniform(-3, 3), 3))
                                   for _ in range(dd)) + "]")
    s = "[" + rng.choice([",", ", ", " ,"]).join(toks) + "]"
    if rng.random() < 0.1:  # one local corruption
        i = rng.randrange(len(s) + 1)
        s = s[:i] + rng.choice(GARBAGE) + s[i + rng.randint(0, 2):]
    return s


def vec_text(rng: random.Random, dim: int = 8, lo: float = -3) -> str:
    d = rdim(rng, dim)
    if d > 64 and rng.random() < 0.5:
        return "[" + ",".join("1" for _ in range(d)) + "]"
    vals = [rnum(rng) if rng.random() < 0.15 else repr(round(rng.uniform(lo, 3), 3)) for _ in range(d)]
    if rng.random() < 0.05:
        vals = ["0"] * d
    s = "[" + ",".join(vals) + "]"
    if rng.random() < 0.05:
        s = "".join(rng.choice(GARBAGE + NUMS) for _ in range(rng.randint(0, 10)))
    return s


def bits(rng: random.Random, n: int = 64) -> str:
    n = rng.choice([n] * 5 + [0, 1, n - 1, n + 1, 7, 63, 65, 1000, 64001])
    return "B'" + "".join(rng.choice("01") for _ in range(n)) + "'"


def sparse_text(rng: random.Random, dim: int = 1000) -> str:
    r = rng.random()
    d = rng.choice([dim] * 8 + [0, 1, -1, 10, 1000000000, 2147483647, 2147483648])
    if r < 0.05:
        return "".join(rng.choice(GARBAGE + NUMS) for _ in range(rng.randint(0, 12)))
    if r < 0.1:  # huge nnz
        nnz = rng.choice([16000, 16001, 20000])
        dd = max(d, nnz + 1) if rng.random() < 0.7 else d
        return "{" + ",".join(f"{i + 1}:1" for i in range(nnz)) + f"}}/{dd}"
    nnz = rng.choice([0, 1, 2, 3, 5, 10, 30])
    idx = [rng.randint(1, max(1, min(d, 1100))) if rng.random() < 0.9 else rng.choice([0, -1, d, d + 1, 2**31])
           for _ in range(nnz)]
    if rng.random() < 0.7:
        idx = sorted(set(idx))
    vals = [rnum(rng) if rng.random() < 0.2 else repr(round(rng.uniform(-0.5, 3), 3)) for _ in idx]
    return "{" + ",".join(f"{i}:{v}" for i, v in zip(idx, vals)) + f"}}/{d}"


def lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def real_array(rng: random.Random, dim: int = 8) -> str:
    """Tokens as real[] (usually 2-D), hostile shapes and values."""
    r = rng.random()
    if r < 0.05:
        return rng.choice(["'{}'::real[]", "NULL::real[]", "'{{}}'::real[]", "'{1,2,3}'::real[]",
                           "'{{{1,2},{3,4}}}'::real[]", "ARRAY[[1,NULL],[2,3]]::real[]",
                           "'[2:3][1:2]={{1,2},{3,4}}'::real[]", "ARRAY[['NaN',1]]::real[]",
                           "ARRAY[['Infinity',1]]::real[]", "array_fill(0::real, ARRAY[8193, 1])",
                           "array_fill(1::real, ARRAY[1, 16001])", "array_fill(1::real, ARRAY[0, 8])"])
    d = min(rdim(rng, dim), 64)
    ntok = rng.choice([1, 2, 3, 4])
    rows = ["[" + ",".join(repr(round(rng.uniform(-2, 2), 3)) for _ in range(d)) + "]" for _ in range(ntok)]
    return f"ARRAY[{','.join(rows)}]::real[]" if d else "'{}'::real[]"


def vector_array(rng: random.Random, dim: int = 8) -> str:
    n = rng.choice([0, 1, 2, 3])
    el = []
    for _ in range(n):
        el.append("NULL" if rng.random() < 0.05 else lit(vec_text(rng, dim)) + "::vector")
    return f"ARRAY[{','.join(el)}]::vector[]" if el else "'{}'::vector[]"


def halfvec_array(rng: random.Random, dim: int = 8) -> str:
    n = rng.choice([0, 1, 2, 3])
    el = ["NULL" if rng.random() < 0.05 else lit(vec_text(rng, dim)) + "::halfvec" for _ in range(n)]
    return f"ARRAY[{','.join(el)}]::halfvec[]" if el else "'{}'::halfvec[]"


FORMATS = ["float32", "float16", "int8", "FLOAT16", "int4", "", "float", "int8 ", "float64", "bf16"]


def g_mv_text(rng: random.Random) -> str:
    cast = rng.choice(["multivec", "multivec", "multivec(8)", "multivec(8, int8)", "multivec(3, float16)",
                       "multivec(8, float32)"])
    return f"SELECT v::text, multivec_send(v), maxsim(v, v) FROM (SELECT {lit(mv_text(rng))}::{cast} v) s"


def g_mv_typmod(rng: random.Random) -> str:
    a = rng.choice(["0", "-1", "1", "8", "16000", "16001", "2147483647", "99999999999"])
    b = rng.choice(["", ", int8", ", float16", ", float32", ", int4", ", foo", ", 3", ", int8, 1", ", 'int8'"])
    if rng.random() < 0.1:
        return f"SELECT {lit(mv_text(rng))}::multivec({rng.choice(['int8', 'float16', 'x'])})"
    return f"SELECT {lit(mv_text(rng, 8))}::multivec({a}{b})"


def g_mv_cast(rng: random.Random) -> str:
    src = rng.choice([real_array, vector_array, halfvec_array])(rng)
    tgt = rng.choice(["multivec", "multivec(8)", "multivec(8, int8)", "multivec(8, float16)"])
    back = rng.choice(["::vector[]", "::halfvec[]", "::real[]", "::text"])
    return f"SELECT ({src})::{tgt}{back}"


def g_mv_convert(rng: random.Random) -> str:
    return f"SELECT multivec_convert({lit(mv_text(rng))}::multivec, {lit(rng.choice(FORMATS))})::text"


def g_muvera(rng: random.Random) -> str:
    toks = rng.choice([real_array, real_array, vector_array,
                       lambda r: lit(mv_text(r)) + "::multivec"])(rng)
    p = {"reps": rng.randint(1, 3), "ksim": rng.randint(0, 3), "dproj": rng.choice([0, 2, 4, 8]),
         "seed": rng.choice([0, 42, -1]), "fill_empty": rng.choice(["NULL", "true", "false"]),
         "final_dim": rng.choice([0, 0, 0, 16, 100])}
    hostile = {"reps": [-1, 0, 4096, 4097, 2**31 - 1, -2**31, "NULL"],
               "ksim": [-1, 15, 16, 31, 32, 63, 64, 2**31 - 1, "NULL"],
               "dproj": [-1, 65536, 65537, 2**31 - 1, "NULL"],
               "seed": [2**63 - 1, -2**63, "NULL"],
               "final_dim": [-1, 1, 16000, 16001, 16777216, 16777217, 2**31 - 1, "NULL"],
               "fill_empty": ["NULL"]}
    for k in rng.sample(list(hostile), rng.choice([1, 1, 2])):
        p[k] = rng.choice(hostile[k])
    if p.get("ksim") == 15 and p["dproj"] in (0, 65536) and p["final_dim"] in (16777216, 16777217):
        p["final_dim"] = 0  # 2^15 partitions x 65,536 into a 16M sketch is legal and slow: not the point
    isq = rng.choice(["true", "false", "NULL"])
    args = f"{toks}, {isq}, {p['reps']}, {p['ksim']}, {p['dproj']}, {p['seed']}, {p['fill_empty']}, {p['final_dim']}"
    if rng.random() < 0.2:
        return f"SELECT vector_dims(muvera_fde({toks}, {isq}, reps => {p['reps']}, final_dim => {p['final_dim']}))"
    return f"SELECT vector_dims(muvera_fde({args}))"


def g_maxsim(rng: random.Random) -> str:
    a, b = mv_text(rng), mv_text(rng)
    fa, fb = rng.choice(FORMATS[:3]), rng.choice(FORMATS[:3])
    x = f"multivec_convert({lit(a)}::multivec, '{fa}')" if rng.random() < 0.3 else f"{lit(a)}::multivec"
    y = f"multivec_convert({lit(b)}::multivec, '{fb}')" if rng.random() < 0.3 else f"{lit(b)}::multivec"
    return rng.choice([f"SELECT maxsim({x}, {y})", f"SELECT {x} @# {y}", f"SELECT maxsim_distance({x}, {y})",
                       f"SELECT id FROM fz_small ORDER BY m @# {y} LIMIT 3"])


def tid_array(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.1:
        return rng.choice(["NULL::tid[]", "'{}'::tid[]", "'{NULL}'::tid[]", "'{{\"(0,1)\"},{\"(0,2)\"}}'::tid[]",
                           "ARRAY(SELECT ctid FROM fz_small)", "ARRAY(SELECT ctid FROM fz_mf)"])
    n = rng.choice([1, 2, 3, 5, 10])
    el = []
    for _ in range(n):
        el.append(rng.choice(["NULL", "(0,0)", "(0,1)", "(0,2)", "(0,3)", "(0,65535)", "(4294967295,1)",
                              "(1,1)", "(0,20)", f"(0,{rng.randint(1, 40)})"]))
    return "'{" + ",".join(e if e == "NULL" else f'"{e}"' for e in el) + "}'::tid[]"


def g_rerank(rng: random.Random) -> str:
    tbl = rng.choice(["fz_mf", "fz_mf", "fz_small", "fz_mf_i", "fz_view", "fz_sb", "pg_class", "NULL",
                      "fz_recv"])
    col = rng.choice(["v", "v", "m", "id", "nope", "", "NULL", "ctid", "xmin"])
    tids = tid_array(rng)
    n = rng.choice([0, 1, 2, 3, 5, 10, 40])
    sc = "'{" + ",".join(rng.choice(["1", "0.5", "-1", "NaN", "Infinity", "-Infinity", "NULL", "3",
                                     repr(round(rng.uniform(-5, 5), 2))]) for _ in range(n)) + "}'::float8[]"
    if rng.random() < 0.05:
        sc = rng.choice(["NULL::float8[]", "'{{1},{2}}'::float8[]"])
    q = lit(mv_text(rng, rng.choice([8, 4]))) + "::multivec"
    k = rng.choice(["1", "3", "10", "0", "-1", "2147483647", "NULL"])
    alpha = rng.choice(["NULL", "0", "0.03", "1", "-1", "2", "'NaN'", "'Infinity'"])
    beta = rng.choice(["NULL", "0", "1", "3", "-1", "2147483647"])
    tblx = "NULL" if tbl == "NULL" else lit(tbl)
    colx = "NULL" if col == "NULL" else lit(col)
    return f"SELECT count(*) FROM maxsim_rerank({tblx}, {colx}, {tids}, {sc}, {q}, {k}, {alpha}, {beta})"


def g_bits(rng: random.Random) -> str:
    r = rng.randrange(7)
    if r == 0:
        return f"SELECT hamming({bits(rng)}, {bits(rng)})"
    if r == 1:
        return f"SELECT jaccard({bits(rng)}, {bits(rng)})"
    t = rng.choice(["vector", "halfvec"])
    if r == 2:
        return f"SELECT bit_quantize({lit(vec_text(rng))}::{t})"
    if r == 3:
        n = rdim(rng)
        th = "'{" + ",".join(rng.choice(["0", "0.5", "NaN", "Infinity", "-1", "NULL"]) if rng.random() < 0.3 else
                             "0.1" for _ in range(min(n, 100))) + "}'::real[]"
        if rng.random() < 0.05:
            th = rng.choice(["NULL::real[]", "'{{1,2},{3,4}}'::real[]", "'{}'::real[]"])
        return f"SELECT bit_quantize({lit(vec_text(rng))}::{t}, {th})"
    if r == 4:
        return f"SELECT bit_ip({lit(vec_text(rng))}::{t}, {bits(rng, 8)})"
    if r == 5:
        vals = ",".join(f"({lit(vec_text(rng))}::{t})" for _ in range(rng.randint(1, 4)))
        return f"SELECT bit_thresholds(x) FROM (VALUES {vals}) s(x)"
    return f"SELECT {bits(rng)} <~> {bits(rng)}, hamming(v, {bits(rng, 16)}) FROM fz_small LIMIT 3"


def g_insert(rng: random.Random) -> str:
    t = rng.choice(INDEXED)
    if t.startswith("fz_bs_b"):
        v = bits(rng)
    elif t == "fz_bs_h":
        v = lit(vec_text(rng)) + "::halfvec"
    elif t.startswith("fz_bs"):
        v = lit(vec_text(rng)) + "::vector"
    elif t.startswith("fz_sb"):
        v = lit(sparse_text(rng)) + "::sparsevec"
    else:
        v = lit(mv_text(rng, 8)) + "::multivec"
    if rng.random() < 0.05:
        v = "NULL"
    if rng.random() < 0.1:
        return f"UPDATE {t} SET v = {v} WHERE id = (SELECT max(id) FROM {t})"
    return f"INSERT INTO {t} (v) VALUES ({v})"


def g_scan(rng: random.Random) -> str:
    t = rng.choice(INDEXED)
    if t.startswith("fz_bs_b"):
        q, op = bits(rng), "<~>"
    elif t == "fz_bs_h":
        q, op = lit(vec_text(rng)) + "::halfvec", "<->"
    elif t.startswith("fz_bs"):
        q, op = lit(vec_text(rng)) + "::vector", rng.choice(["<=>", "<#>"])
    elif t.startswith("fz_sb"):
        q, op = lit(sparse_text(rng)) + "::sparsevec", "<#>"
    else:
        q, op = lit(mv_text(rng, 8)) + "::multivec", "@#"
    lim = rng.choice(["1", "3", "10", "ALL"])
    return f"SELECT id FROM {t} ORDER BY v {op} {q} LIMIT {lim}"


def g_ddl(rng: random.Random) -> str:
    r = rng.randrange(4)
    name = f"fz_tmp_{rng.getrandbits(40)}"
    if r == 0:
        q = rng.choice(["mean", "sign", "'x'", "1", "''"])
        src = rng.choice(["fz_bs_v (v)", "fz_bs_u (v vector_l2_ops)", "fz_bs_b (v)", "fz_small (v)",
                          "fz_small (m)", "fz_small (s)", "fz_sb (v)"])
        return f"CREATE INDEX {name} ON {src.split()[0]} USING binary_scan {src[len(src.split()[0]):]} WITH (quantizer = {q})"
    if r == 1:
        opts = {k: rng.choice(v) for k, v in {
            "n_postings": ["-1", "0", "1", "3500", "2147483647"], "max_fraction": ["0", "-1", "1.5", "'NaN'", "1e9"],
            "centroid_fraction": ["0", "0.1", "1", "2", "-0.5"], "summary_energy": ["0", "0.4", "1", "1.5"],
            "min_cluster_size": ["0", "1", "2", "100000"], "doc_cut": ["0", "1", "15", "100000"]}.items()
            if rng.random() < 0.4}
        w = f" WITH ({', '.join(f'{k} = {v}' for k, v in opts.items())})" if opts else ""
        src = rng.choice(["fz_sb", "fz_sb_u", "fz_small"])
        col = "s" if src == "fz_small" else "v"
        return f"CREATE INDEX {name} ON {src} USING sparse_block ({col}){w}"
    if r == 2:
        opts = {k: rng.choice(v) for k, v in {
            "reps": ["0", "1", "2", "4096", "4097", "-1"], "ksim": ["0", "1", "15", "16", "-1"],
            "dproj": ["0", "1", "4", "65536", "65537"], "seed": ["0", "-1", "9223372036854775807"],
            "final_dim": ["0", "1", "16", "16777216", "16777217", "-1"],
            "quantizer": ["mean", "sign", "'x'"]}.items() if rng.random() < 0.4}
        w = f" WITH ({', '.join(f'{k} = {v}' for k, v in opts.items())})" if opts else ""
        src = rng.choice(["fz_mf (v)", "fz_small (m)", "fz_small (v)", "fz_mf_n (v)"])
        return f"CREATE INDEX {name} ON {src.split()[0]} USING multivec_fde {src[len(src.split()[0]):]}{w}"
    return rng.choice([f"REINDEX INDEX {t}_i" for t in INDEXED] +
                      ["SELECT pgsieve_index_check(" + lit(t + "_i") + ", true)" for t in INDEXED])


GENERATORS: list[tuple[str, int, Callable[[random.Random], str]]] = [
    ("multivec text", 16, g_mv_text), ("multivec typmod", 3, g_mv_typmod), ("multivec casts", 6, g_mv_cast),
    ("multivec_convert", 3, g_mv_convert), ("muvera_fde", 10, g_muvera), ("maxsim / @#", 8, g_maxsim),
    ("maxsim_rerank", 8, g_rerank), ("bit functions", 10, g_bits), ("index inserts", 14, g_insert),
    ("index scans", 8, g_scan), ("CREATE INDEX / REINDEX / check", 1, g_ddl),
]
BINARY_WEIGHT = 8  # of 100: binary COPY receive inputs

# ------------------------------------------------------------------------------------------------------------
# binary receive payloads (format: int32 ntok, int16 dim, int16 format, [ntok float4 scales], elements)


def valid_payload(rng: random.Random) -> bytes:
    ntok, dim, fmt = rng.randint(1, 6), rng.choice([1, 2, 3, 8, 17]), rng.randrange(3)
    head = struct.pack("!ihh", ntok, dim, fmt)
    if fmt == 0:
        return head + struct.pack(f"!{ntok * dim}f", *(rng.gauss(0, 1) for _ in range(ntok * dim)))
    if fmt == 1:
        return head + struct.pack(f"!{ntok * dim}e", *(rng.gauss(0, 1) for _ in range(ntok * dim)))
    return head + struct.pack(f"!{ntok}f", *(rng.uniform(0, 0.05) for _ in range(ntok))) + \
        bytes(rng.randint(-127, 127) & 0xFF for _ in range(ntok * dim))


HEADERS = [0, -1, 1, 8192, 8193, 2**31 - 1, -2**31, 65536]
SHORTS = [0, -1, 1, 3, 16000, 16001, 32767, -32768, 255, 2]
F32 = [b"\x7f\xc0\x00\x00", b"\x7f\x80\x00\x00", b"\xff\x80\x00\x00", b"\xbf\x80\x00\x00", b"\x00\x00\x00\x01",
       b"\x7f\x7f\xff\xff"]


def garble(rng: random.Random, w: bytes) -> tuple[bytes, str]:
    b = bytearray(w)
    hows = []
    for _ in range(rng.randint(1, 3)):
        how = rng.choice(["flip", "truncate", "extend", "ntok", "dim", "format", "f32", "f16", "i8", "random",
                          "scale"])
        hows.append(how)
        if how == "flip" and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif how == "truncate":
            del b[rng.randrange(len(b) + 1):]
        elif how == "extend":
            b += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 9)))
        elif how == "ntok" and len(b) >= 4:
            b[0:4] = struct.pack("!i", rng.choice(HEADERS))
        elif how == "dim" and len(b) >= 6:
            b[4:6] = struct.pack("!h", rng.choice(SHORTS))
        elif how == "format" and len(b) >= 8:
            b[6:8] = struct.pack("!h", rng.choice(SHORTS))
        elif how in ("f32", "scale") and len(b) >= 12:
            i = 8 if how == "scale" else rng.randrange(8, len(b) - 3)
            b[i:i + 4] = rng.choice(F32)
        elif how == "f16" and len(b) >= 10:
            i = rng.randrange(8, len(b) - 1)
            b[i:i + 2] = rng.choice([b"\x7c\x00", b"\xfc\x00", b"\x7e\x00", b"\x80\x00"])
        elif how == "i8" and len(b) > 8:
            b[rng.randrange(8, len(b))] = 0x80  # -128
        elif how == "random":
            b = bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
    return bytes(b), "+".join(hows)


def copy_stream(fields: list[bytes | None]) -> bytes:
    out = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + struct.pack(">h", len(fields)))
    for f in fields:
        out += struct.pack(">i", -1) if f is None else struct.pack(">i", len(f)) + f
    return bytes(out + struct.pack(">h", -1))


# ------------------------------------------------------------------------------------------------------------
# the campaign


def classify(msg: str) -> str:
    low = msg.lower()
    if any(w in low for w in NAME_WORDS):
        return "named"
    for k, rx in CORE_MESSAGES.items():
        if rx.search(msg):
            return k
    return "unnamed"


def template(msg: str) -> str:
    return re.sub(r"\d+", "N", re.sub(r'"[^"]*"', '"…"', msg))[:160]


class Campaign:
    def __init__(self, url: str, seed: int, batch: int = 250, batch_timeout_s: int = 60) -> None:
        self.url, self.seed, self.batch, self.batch_timeout_s = url, seed, batch, batch_timeout_s
        self.conn = psycopg.connect(url, autocommit=True)
        self.start_time = self.conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        self.counts: Counter[str] = Counter()  # inputs per category
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.classes: Counter[str] = Counter()  # named / core ... / unnamed
        self.unnamed: dict[str, dict[str, Any]] = {}
        self.crashes: list[dict[str, Any]] = []
        self.slow: list[str] = []
        self.ddl_batches = 0

    def _session(self) -> None:
        self.conn.execute("SET enable_seqscan = off")
        self.conn.execute(f"SET statement_timeout = '{self.batch_timeout_s}s'")
        self.conn.execute("SET client_min_messages = warning")

    def setup(self) -> None:
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pgsieve")
        self.conn.execute(TABLES_SQL)
        self._session()

    def alive(self) -> bool:
        try:
            st = self.conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
            return st == self.start_time
        except psycopg.Error:
            return False

    def _reconnect(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                self.conn = psycopg.connect(self.url, autocommit=True)
                self._session()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _record_error(self, cat: str, inp: str, state: str, msg: str) -> None:
        self.rejected[cat] += 1
        c = classify(msg)
        self.classes[c] += 1
        if c == "unnamed":
            key = template(msg)
            e = self.unnamed.setdefault(key, {"count": 0, "sqlstate": state, "message": msg, "input": inp[:400],
                                              "category": cat})
            e["count"] += 1

    def run_sql_batch(self, items: list[tuple[str, str]]) -> None:
        try:
            fails = self.conn.execute("SELECT * FROM fz_run(%s)", ([s for _, s in items],)).fetchall()
        except psycopg.errors.QueryCanceled:
            # a batch ran past its timeout: find the slow input(s), one at a time with a short timeout
            for cat, s in items:
                self.run_sql_batch_one(cat, s)
            return
        except psycopg.Error as e:
            if not self.alive():
                self._crash(items, e)
                return
            raise
        failed = {i - 1 for i, _, _ in fails}
        for i, state, msg in fails:
            self._record_error(items[i - 1][0], items[i - 1][1], state, msg)
        for i, (cat, _) in enumerate(items):
            self.counts[cat] += 1
            if i not in failed:
                self.accepted[cat] += 1

    def run_sql_batch_one(self, cat: str, s: str) -> None:
        self.counts[cat] += 1
        try:
            self.conn.execute("SET statement_timeout = '10s'")
            fails = self.conn.execute("SELECT * FROM fz_run(%s)", ([s],)).fetchall()
        except psycopg.errors.QueryCanceled as e:
            self.slow.append(s[:300])
            self._record_error(cat, s, e.sqlstate or "", str(e))
            return
        except psycopg.Error as e:
            if not self.alive():
                self._crash([(cat, s)], e)
                return
            raise
        finally:
            if not self.conn.broken:
                self.conn.execute(f"SET statement_timeout = '{self.batch_timeout_s}s'")
        if fails:
            self._record_error(cat, s, fails[0][1], fails[0][2])
        else:
            self.accepted[cat] += 1

    def _crash(self, items: list[tuple[str, str]], e: Exception) -> None:
        self.crashes.append({"error": str(e)[:300], "batch": [s[:300] for _, s in items][:5],
                             "batch_size": len(items)})
        log(f"CRASH (connection lost / postmaster restarted): {e}")
        self._reconnect()
        self.start_time = self.conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]

    def run_copy(self, rng: random.Random, n: int) -> None:
        cat = "multivec binary COPY"
        payload, how = garble(rng, valid_payload(rng))
        table, fields = rng.choice([("fz_recv (id, m, t)", [struct.pack("!i", n), payload, None]),
                                    ("fz_recv (id, m, t)", [struct.pack("!i", n), None, payload]),
                                    ("fz_mf (v)", [payload]), ("fz_mf_n (v)", [payload])])
        self.counts[cat] += 1
        try:
            with self.conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(copy_stream(fields))
        except psycopg.Error as e:
            if self.conn.broken or not self.alive():
                self._crash([(cat, payload.hex())], e)
                return
            self._record_error(cat, f"{how} into {table}: {payload.hex()}", e.sqlstate or "",
                               e.diag.message_primary or str(e))
            return
        self.accepted[cat] += 1

    def run(self, n_inputs: int, progress_every: float = 30.0) -> dict[str, Any]:
        rng = random.Random(self.seed)
        total_w = sum(w for _, w, _ in GENERATORS)
        done, t0, last = 0, time.monotonic(), time.monotonic()
        rounds = 0
        while done < n_inputs:
            k = min(self.batch, n_inputs - done)
            items: list[tuple[str, str]] = []
            n_copy = 0
            for _ in range(k):
                if rng.randrange(100) < BINARY_WEIGHT:
                    n_copy += 1
                    continue
                r = rng.randrange(total_w)
                for name, w, fn in GENERATORS:
                    if r < w:
                        items.append((name, fn(rng)))
                        break
                    r -= w
            self.run_sql_batch(items)
            for j in range(n_copy):
                self.run_copy(rng, done + j)
            done += k
            rounds += 1
            if rounds % 8 == 0:
                self._housekeeping()
            if not self.alive():
                self._crash([], RuntimeError("postmaster restarted or connection lost between batches"))
            if time.monotonic() - last > progress_every:
                last = time.monotonic()
                log(f"{done} inputs, {sum(self.rejected.values())} rejected, {len(self.crashes)} crashes, "
                    f"{sum(e['count'] for e in self.unnamed.values())} unnamed, {last - t0:.0f} s")
        self.seconds = time.monotonic() - t0
        return self.summary()

    def _housekeeping(self) -> None:
        rows = self.conn.execute("SELECT indexrelid::regclass::text FROM pg_index "
                                 "WHERE indexrelid::regclass::text LIKE 'fz_tmp%'").fetchall()
        for (name,) in rows:
            self.conn.execute(f"DROP INDEX {name}")
        self.conn.execute("TRUNCATE fz_recv, fz_mf_n, fz_mf_u, fz_sb_u, fz_bs_u, fz_bs_bu")
        self.conn.execute("DELETE FROM fz_bs_v WHERE id % 3 = 0; DELETE FROM fz_sb WHERE id % 3 = 0; "
                          "DELETE FROM fz_mf WHERE id > 20 AND id % 3 = 0")
        self.conn.execute("VACUUM fz_bs_v, fz_sb, fz_mf")

    def summary(self) -> dict[str, Any]:
        cats = sorted(self.counts)
        return {
            "seed": self.seed, "seconds": round(self.seconds, 1), "date": time.strftime("%Y-%m-%d"),
            "inputs": sum(self.counts.values()), "accepted": sum(self.accepted.values()),
            "rejected": sum(self.rejected.values()), "crashes": len(self.crashes),
            "unnamed": sum(e["count"] for e in self.unnamed.values()),
            "per_category": {c: {"inputs": self.counts[c], "accepted": self.accepted[c],
                                 "rejected": self.rejected[c]} for c in cats},
            "error_classes": dict(self.classes), "unnamed_errors": list(self.unnamed.values()),
            "crash_details": self.crashes, "slow_inputs": self.slow,
            "postmaster_unchanged": self.alive(),
        }

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------------------------------------------------
# cancel latency

CANCEL_SETUP = {
    "binary_scan": (
        "CREATE TABLE cl_pool AS SELECT i AS id, (SELECT array_agg(random() - 0.5) "
        "FROM generate_series(1, 256) WHERE i >= 0)::vector(256) AS v FROM generate_series(0, 999) i; "
        "CREATE TABLE cl_bs (id int, v vector(256)); "
        "INSERT INTO cl_bs SELECT g, p.v FROM generate_series(1, {n}) g JOIN cl_pool p ON p.id = g % 1000",
        "CREATE INDEX cl_bs_i ON cl_bs USING binary_scan (v vector_l2_ops)",
        "SELECT count(*) FROM (SELECT id FROM cl_bs ORDER BY v <-> (SELECT v FROM cl_pool WHERE id = 7)) s",
        "SET pgsieve.binary_rerank = 1000000; SET pgsieve.binary_oversample = 1"),
    "sparse_block": (
        "CREATE TABLE cl_spool AS SELECT i AS id, ('{{' || (SELECT string_agg(t || ':' || round(random()::numeric"
        " + 0.01, 3), ',') FROM (SELECT DISTINCT (random() * 29999 + 1)::int t "
        "FROM generate_series(1, 120) WHERE i >= 0) x) || '}}/30000')::sparsevec(30000) AS v FROM generate_series(0, 999) i; "
        "CREATE TABLE cl_sb (id int, v sparsevec(30000)); "
        "INSERT INTO cl_sb SELECT g, p.v FROM generate_series(1, {n}) g JOIN cl_spool p ON p.id = g % 1000",
        "CREATE INDEX cl_sb_i ON cl_sb USING sparse_block (v) WITH (n_postings = 100000, max_fraction = 1000)",
        "SELECT count(*) FROM (SELECT id FROM cl_sb ORDER BY v <#> (SELECT v FROM cl_spool WHERE id = 7)) s",
        "SET pgsieve.sparse_query_cut = 0; SET pgsieve.sparse_heap_factor = 0; SET pgsieve.sparse_top_k = 1000000"),
    "multivec_fde": (
        "CREATE TABLE cl_mpool AS SELECT i AS id, (SELECT array_agg(random()::real - 0.5) "
        "FROM generate_series(1, 32 * 64) WHERE i >= 0)::real[] AS a FROM generate_series(0, 299) i; "
        "CREATE TABLE cl_mf (id int, v multivec(64, int8))",
        "CREATE INDEX cl_mf_i ON cl_mf USING multivec_fde (v)",
        "SELECT count(*) FROM (SELECT id FROM cl_mf ORDER BY v @# (SELECT v FROM cl_mf WHERE id = 7)) s",
        "SET pgsieve.fde_rerank = 1000000; SET pgsieve.fde_oversample = 1"),
}
CANCEL_ROWS = {"binary_scan": 400_000, "sparse_block": 120_000, "multivec_fde": 40_000}
TIMEOUT_FRACTIONS = (0.2, 0.5, 0.8)  # of the uncancelled run time


def _fill_multivec(c: psycopg.Connection, n: int) -> None:
    # 300 random 32 x 64 token sets, repeated: reshape the flat real[] into 32 rows of 64
    c.execute("CREATE TABLE cl_mp2 AS SELECT id, (SELECT array_agg(ARRAY(SELECT a[t * 64 + j] FROM "
              "generate_series(1, 64) j)) FROM generate_series(0, 31) t)::real[] AS m FROM cl_mpool")
    c.execute(f"INSERT INTO cl_mf SELECT g, p.m::multivec(64, int8) FROM generate_series(1, {n}) g "
              "JOIN cl_mp2 p ON p.id = g % 300")


def measure_cancel(url: str, scale: float = 1.0) -> list[dict[str, Any]]:
    out = []
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET maintenance_work_mem = '512MB'")
        for am, (setup, build, scan, gucs) in CANCEL_SETUP.items():
            n = max(1000, int(CANCEL_ROWS[am] * scale))
            t = time.monotonic()
            c.execute(setup.format(n=n))
            if am == "multivec_fde":
                _fill_multivec(c, n)
            c.execute("SET max_parallel_maintenance_workers = 0")
            c.execute("SET statement_timeout = 0")
            t1 = time.monotonic()
            c.execute(build)
            full_build = time.monotonic() - t1
            c.execute(gucs + "; SET enable_seqscan = off")
            t1 = time.monotonic()
            c.execute(scan)
            full_scan = time.monotonic() - t1
            c.execute(f"DROP INDEX {build.split()[2]}")
            log(f"cancel {am}: {n} rows loaded in {t1 - t:.0f} s; uncancelled build {full_build:.2f} s, "
                f"scan {full_scan:.2f} s")
            for what, stmt in (("CREATE INDEX", build), ("scan", scan)):
                if what == "scan":
                    c.execute("SET statement_timeout = 0")
                    c.execute(build)
                lat = []
                completed = 0
                full = full_build if what == "CREATE INDEX" else full_scan
                for ms in [max(10, int(f * full * 1000)) for f in TIMEOUT_FRACTIONS]:
                    c.execute(f"SET statement_timeout = {ms}")
                    t1 = time.monotonic()
                    try:
                        c.execute(stmt)
                        completed += 1
                        if what == "CREATE INDEX":
                            c.execute("SET statement_timeout = 0")
                            c.execute(f"DROP INDEX {build.split()[2]}")
                    except psycopg.errors.QueryCanceled:
                        lat.append(time.monotonic() - t1 - ms / 1000)
                c.execute("SET statement_timeout = 0")
                out.append({"am": am, "what": what, "rows": n, "uncancelled_s": round(
                    full_build if what == "CREATE INDEX" else full_scan, 3),
                    "cancels": len(lat), "completed_before_timeout": completed,
                    "max_latency_ms": round(max(lat) * 1000, 1) if lat else None,
                    "latencies_ms": [round(x * 1000, 1) for x in lat]})
                log(f"cancel {am} {what}: latencies {out[-1]['latencies_ms']} ms, {completed} completed")
            c.execute("RESET ALL")
    return out


# ------------------------------------------------------------------------------------------------------------
# report


def render_fuzz_md(s: dict[str, Any], command: str) -> str:
    lines = [
        "### Fuzzing",
        "",
        f"Run {s['date']}: `{command}` — {s['inputs']:,} hostile inputs in {s['seconds']:.0f} s (seed {s['seed']}): "
        f"{s['accepted']:,} accepted, {s['rejected']:,} rejected, **{s['crashes']} crashes**, "
        f"**{s['unnamed']} errors not naming the type or function**.",
        "",
        "| input family | inputs | accepted | rejected |",
        "|---|---|---|---|",
    ]
    for c, v in s["per_category"].items():
        lines.append(f"| {c} | {v['inputs']:,} | {v['accepted']:,} | {v['rejected']:,} |")
    cls = s["error_classes"]
    lines += [
        f"| **all** | {s['inputs']:,} | {s['accepted']:,} | {s['rejected']:,} |",
        "",
        "Errors by message: " + ", ".join(f"{k} {v:,}" for k, v in sorted(cls.items())) + ". A crash is a lost "
        "connection or a changed `pg_postmaster_start_time()`; an error is *named* when its message names the "
        "type, function, operator or access method (`multivec`, `muvera_fde`, `maxsim_rerank`, `sparse_block`, "
        "`binary_scan`, `multivec_fde`, `sparsevec`, `vector`, `bit`, ...); core's own reloption-bound and COPY-"
        "framing messages are counted apart (their CONTEXT names the option or column).",
    ]
    if s["unnamed_errors"]:
        lines += ["", "Unnamed errors (message template, first input):", ""]
        for e in s["unnamed_errors"]:
            lines.append(f"- {e['count']}× `{e['sqlstate']}` \"{e['message'][:150]}\" ({e['category']}), e.g. "
                         f"`{e['input'][:150]}`")
    return "\n".join(lines) + "\n"


def render_cancel_md(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "### Cancel latency",
        "",
        f"Run {time.strftime('%Y-%m-%d')}: `{command}` — each statement is run under `statement_timeout` = "
        f"{', '.join(f'{int(t * 100)}%' for t in TIMEOUT_FRACTIONS)} of its uncancelled run time; latency = its run time minus the timeout (target < 1 s). "
        "Scans are exhaustive index scans (`ORDER BY` every row, re-rank limits at their maximum).",
        "",
        "| AM | statement | rows | uncancelled run time | cancelled / completed first | latencies (ms) | max latency |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mx = "–" if r["max_latency_ms"] is None else f"{r['max_latency_ms']:.0f} ms"
        lines.append(f"| `{r['am']}` | {r['what']} | {r['rows']:,} | {r['uncancelled_s']:.2f} s | "
                     f"{r['cancels']} / {r['completed_before_timeout']} | "
                     f"{', '.join(f'{x:.0f}' for x in r['latencies_ms']) or '–'} | {mx} |")
    return "\n".join(lines) + "\n"


def start_server(base: Path) -> CrashServer:
    from pgsieve import extbuild

    extbuild.install_extension()
    srv = CrashServer(base, SETTINGS)
    srv.init()
    srv.start()
    return srv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=250, help="SQL inputs per round trip")
    ap.add_argument("--no-cancel", action="store_true", help="skip the cancel-latency measurement")
    ap.add_argument("--cancel-scale", type=float, default=1.0, help="scale the cancel tables' row counts")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--update-md", action="store_true", help="write the Fuzzing / Cancel latency tables")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="pgsieve-fuzz-"))
    base.chmod(0o755)
    srv = None
    try:
        srv = start_server(base / "srv")
        srv_url = srv.url()
        camp = Campaign(srv_url, args.seed, args.batch)
        camp.setup()
        summ = camp.run(args.inputs)
        camp.close()
        log_text = srv.log_tail(10**7)
        summ["server_log_crash_lines"] = [ln for ln in log_text.splitlines()
                                          if "terminated by signal" in ln or "PANIC" in ln][:20]
        log(f"fuzz: {summ['inputs']} inputs, {summ['accepted']} accepted, {summ['rejected']} rejected, "
            f"{summ['crashes']} crashes, {summ['unnamed']} unnamed, {summ['seconds']} s")
        for e in summ["unnamed_errors"]:
            log(f"  unnamed: {e['count']}x {e['sqlstate']} {e['message']!r} <- {e['input'][:200]}")
        cancel = [] if args.no_cancel else measure_cancel(srv_url, args.cancel_scale)
    finally:
        if srv is not None:
            try:
                srv.stop("immediate")
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(base, ignore_errors=True)
    command = f"python bench/fuzz.py --inputs {args.inputs}" + (
        f" --seed {args.seed}" if args.seed != 1 else "") + " --update-md"
    result = {"fuzz": summ, "cancel": cancel, "command": command}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    if args.update_md:
        from bench import common

        common.replace_md_section("fuzzing", render_fuzz_md(summ, command))
        if cancel:
            common.replace_md_section("cancel-latency", render_cancel_md(cancel, command))
    bad = summ["crashes"] or summ["server_log_crash_lines"] or summ["unnamed"]
    slow_cancel = [r for r in cancel if r["max_latency_ms"] is not None and r["max_latency_ms"] > 1000]
    return 1 if bad or slow_cancel else 0


if __name__ == "__main__":
    sys.exit(main())
