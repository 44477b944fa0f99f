#!/usr/bin/env python3
"""Encoding throughput: the encoder called directly against the same encoder behind ``pgsieve.workers.EncoderPool``.

    python bench/workers_throughput.py [--n 256] [--device cpu] [--workers 1] [--threads 1] [--rounds 3]
                                       [--batch-size 64] [--max-tokens 16384] [--json PATH]

Texts are real man-page passages (``pgsieve.corpus``), encoded with the packaged all-MiniLM-L6-v2
(``DenseEncoder``). Both sides run on the same device with the same torch threads; ``--workers 1`` is the
like-for-like comparison (the acceptance criterion is pool ≥ 0.9× direct). Each side is warmed up, then the two
alternate ``--rounds`` times and the best round of each counts, since a shared machine is noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pyclient"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def passages(n: int) -> list[str]:
    from pgsieve.corpus import load_manpages

    got = [p.text for p in load_manpages(max_pages=max(40, n // 8), sections=[2, 3])][:n]
    if len(got) < n:  # man pages missing: repeat what there is (or a fixed sentence)
        base = got or ["The open() system call opens the file specified by pathname."]
        got = [base[i % len(base)] for i in range(n)]
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="passages to encode per round")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1, help="pool workers on the device")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, direct and per CPU worker")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=16384, help="pool max_tokens_per_batch")
    ap.add_argument("--model", default=None, help="model folder (default: the packaged MiniLM)")
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)

    from pgsieve.workers import throughput_check

    texts = passages(args.n)
    kwargs = {"model_path": args.model} if args.model else {}
    t0 = time.perf_counter()
    res = throughput_check(("pgsieve.encoders.dense:DenseEncoder", kwargs), texts, args.device,
                           workers=args.workers, threads=args.threads if args.device.startswith("cpu") else None,
                           rounds=args.rounds, batch_size=args.batch_size, max_tokens_per_batch=args.max_tokens)
    res["wall_s"] = time.perf_counter() - t0
    res["machine_cpus"] = os.cpu_count()
    res["load_avg"] = os.getloadavg()
    print(f"{res['n']} passages on {res['device']} ({res['threads']} threads, pool of {res['workers']}): "
          f"direct {res['direct_per_s']:.1f}/s, pool {res['pool_per_s']:.1f}/s, ratio {res['ratio']:.3f} "
          f"(medians: {res['ratio_median']:.3f}) "
          f"(max |diff| {res['max_abs_diff']:.2g})")
    print(json.dumps(res, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
