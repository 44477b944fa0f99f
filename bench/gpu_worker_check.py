#!/usr/bin/env python3
"""GPU check of the encoding workers: on CUDA, DenseEncoder (packaged MiniLM) direct vs through an EncoderPool.

    python bench/gpu_worker_check.py [--n 8192] [--rounds 5] [--batch-size 256] [--max-tokens 65536] [--json PATH]

1. like for like: the encoder called directly on ``cuda:0`` against a pool of one worker on ``cuda:0``
   (acceptance: pool ≥ 0.9× direct), results compared row by row;
2. two workers on ``cuda:0`` (tokenization of one batch overlaps the other's forward pass);
3. with several GPUs: one worker per GPU (``devices="auto"``) against one GPU directly;
4. a worker on ``cuda:0`` killed with SIGKILL in the middle of a large encode: every row still arrives.

Without CUDA it prints "no CUDA" and exits 0, so it can run anywhere. ``--device cpu --n 32 --rounds 1`` runs the
same steps on the CPU (a dry run of the script itself; the numbers mean nothing there).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pyclient"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=65536)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda:0", help="cpu: dry run of the script without a GPU")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        print("no CUDA: torch is not installed; skipping the GPU worker check")
        return 0
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print(f"no CUDA: torch {torch.__version__} sees no GPU; skipping the GPU worker check")
        return 0

    import numpy as np

    from pgsieve.workers import EncoderPool, throughput_check
    from workers_throughput import passages

    cuda = dev.startswith("cuda")
    ngpu = torch.cuda.device_count() if cuda else 0
    name = torch.cuda.get_device_name(0) if cuda else "cpu (dry run)"
    print(f"device: {ngpu} x {name}, torch {torch.__version__}", flush=True)
    texts = passages(args.n)
    spec = ("pgsieve.encoders.dense:DenseEncoder", {})
    opts = dict(batch_size=args.batch_size, max_tokens_per_batch=args.max_tokens, rounds=args.rounds,
                threads=None if cuda else 1)
    report: dict = {"gpus": ngpu, "gpu": name, "n": len(texts)}
    ok = True

    def show(name: str, res: dict) -> None:
        print(f"{name}: direct {res['direct_per_s']:.0f}/s, pool {res['pool_per_s']:.0f}/s, ratio {res['ratio']:.3f} "
              f"(medians {res['ratio_median']:.3f}), max |diff| {res['max_abs_diff']:.2g}", flush=True)

    res = throughput_check(spec, texts, dev, workers=1, **opts)
    show(f"1 worker on {dev} vs direct on {dev}", res)
    report["one_worker"] = res
    ok &= res["max_abs_diff"] < 1e-3 and (res["ratio"] >= 0.9 or not cuda)  # CPU dry run: no speed verdict

    res2 = throughput_check(spec, texts, dev, workers=2, **opts)
    show(f"2 workers on {dev} vs direct on {dev}", res2)
    report["two_workers_one_gpu"] = res2

    if ngpu > 1:
        from pgsieve.encoders.dense import DenseEncoder

        direct = DenseEncoder(device="cuda:0", batch_size=args.batch_size)
        direct.encode_documents(texts[:512])
        t0 = time.perf_counter()
        ref = direct.encode_documents(texts)
        t_direct = time.perf_counter() - t0
        with EncoderPool(spec, devices="auto", max_batch_size=args.batch_size,
                         max_tokens_per_batch=args.max_tokens) as pool:
            pool.encode(texts[:512])
            t0 = time.perf_counter()
            got = pool.encode(texts)
            t_pool = time.perf_counter() - t0
        report["all_gpus"] = {"direct_one_gpu_per_s": len(texts) / t_direct, "pool_per_s": len(texts) / t_pool,
                              "speedup": t_direct / t_pool, "max_abs_diff": float(np.abs(ref - got).max())}
        print(f"{ngpu} workers (one per GPU) vs direct on one GPU: {report['all_gpus']}", flush=True)

    # crash recovery on the GPU: SIGKILL the worker mid-encode, nothing lost
    from pgsieve.encoders.dense import DenseEncoder

    ref = DenseEncoder(device=dev, batch_size=args.batch_size).encode_documents(texts)
    with EncoderPool(spec, devices=[dev, dev], max_batch_size=64 if cuda else 4,
                     max_tokens_per_batch=4096 if cuda else 256) as pool:
        big = texts * 2
        fut = pool.submit(big)
        deadline = time.monotonic() + 300
        while pool.stats()["batches_done"] < 5 and time.monotonic() < deadline and not fut.done():
            time.sleep(0.005)
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        got = fut.result(600)
        st = pool.stats()
    diff = float(np.abs(np.concatenate([ref, ref]) - got).max())
    report["kill"] = {"max_abs_diff": diff, "requeued": st["requeued"], "restarts": st["restarts"],
                      "rows": len(got)}
    print(f"SIGKILL of a {dev} worker mid-encode: {len(got)}/{len(big)} rows, re-queued {st['requeued']} batches, "
          f"max |diff| {diff:.2g}", flush=True)
    ok &= len(got) == len(big) and diff < 1e-3 and st["requeued"] >= 1

    report["ok"] = bool(ok)
    print("GPU worker check:", "PASS" if ok else "FAIL")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
