#!/usr/bin/env python3
"""Write tests/data/fde_golden.json: MUVERA FDE golden vectors (pgsieve FDE spec v1).

Run once when the spec is introduced or deliberately versioned; never to "fix" a failing test.  The vectors
come from the C kernel (through pgsieve.fde); tests/test_fde.py checks them against an independent numpy
reference of the spec, and both the client and the server must reproduce them byte for byte.  Floats are
stored as hex strings of little-endian float32 bytes, inputs as well as outputs, so nothing is lost to
decimal printing.

    PYTHONPATH=pyclient python scripts/make_fde_golden.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pgsieve.fde import SPEC, FdeParams, fde_document, fde_query

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fde_golden.json"


def tokens(seed: int, n: int, d: int, tricky: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    if tricky:  # exact SimHash ties, -0.0, a duplicate, an order-sensitive sum
        x[1] = rng.integers(-1, 2, d).astype(np.float32)
        x[2] = -0.0
        x[3] = x[0]
        x[4] = 1.0
        x[4, 0], x[4, 2] = 1e20, -1e20
    return x


# (name, params, is_query, tokens)
CASES = [
    ("query_ams", FdeParams(8, reps=2, ksim=3, dproj=4, seed=42), True, tokens(1, 5, 8)),
    ("doc_ams_fill", FdeParams(8, reps=2, ksim=3, dproj=4, seed=42), False, tokens(1, 5, 8)),
    ("doc_identity_nofill", FdeParams(6, reps=3, ksim=2, dproj=0, seed=-7, fill_empty=False), False,
     tokens(2, 4, 6)),
    ("query_identity_one_partition", FdeParams(5, reps=1, ksim=0, dproj=0, seed=3), True, tokens(3, 3, 5)),
    ("doc_identity_final", FdeParams(4, reps=2, ksim=4, dproj=0, seed=2**62 + 12345, final_dim=24), False,
     tokens(4, 6, 4)),
    ("query_ams_final", FdeParams(10, reps=4, ksim=2, dproj=3, seed=0, final_dim=16), True, tokens(5, 7, 10)),
    ("doc_ksim9_min_seed", FdeParams(16, reps=1, ksim=9, dproj=2, seed=-(2**63), final_dim=64), False,
     tokens(6, 20, 16)),
    ("doc_tricky_fill", FdeParams(6, reps=2, ksim=3, dproj=0, seed=99), False, tokens(7, 6, 6, tricky=True)),
    ("query_tricky_ams", FdeParams(6, reps=2, ksim=3, dproj=5, seed=99), True, tokens(7, 6, 6, tricky=True)),
    ("query_dim24_dproj8", FdeParams(24, reps=1, ksim=5, dproj=8, seed=2024), True, tokens(8, 17, 24)),
    ("doc_single_token_fill", FdeParams(12, reps=2, ksim=4, dproj=5, seed=5), False, tokens(9, 1, 12)),
]


def build() -> dict:
    cases = []
    for name, params, is_query, x in CASES:
        fde = fde_query(x, params) if is_query else fde_document(x, params)
        cases.append({
            "name": name,
            "params": params.to_dict(),
            "is_query": is_query,
            "shape": list(x.shape),
            "tokens_f32le": x.astype("<f4").tobytes().hex(),
            "fde_f32le": fde.astype("<f4").tobytes().hex(),
        })
    return {"spec": SPEC, "about": "MUVERA FDE golden vectors; see scripts/make_fde_golden.py", "cases": cases}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the checked-in file instead of writing")
    args = ap.parse_args()
    data = build()
    text = json.dumps(data, indent=1) + "\n"
    if args.check:
        same = OUT.read_text(encoding="utf-8") == text
        print("fde_golden.json:", "up to date" if same else "DIFFERS from the kernel")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {len(data['cases'])} cases to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
