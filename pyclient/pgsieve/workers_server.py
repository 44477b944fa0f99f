"""Run an encoder pool as a server that other processes use through ``pgsieve.workers.RemoteEncoder``.

    python -m pgsieve.workers_server --factory pgsieve.encoders.dense:DenseEncoder \\
        [--kwargs '{"model_path": "/models/minilm"}'] [--devices auto] [--workers-per-device 1] \\
        [--address /run/pgsieve/enc.sock] [--max-tokens 16384] [--max-batch 256] [--cpu-threads 1]

It prints the socket address once the workers are ready, then serves until SIGINT or SIGTERM, when it drains the
pending requests and stops the workers. The authentication key is written next to the socket
(``<address>.key``, mode 0600); clients of the same user find it there::

    from pgsieve.workers import RemoteEncoder
    enc = RemoteEncoder("/run/pgsieve/enc.sock")
    emb = enc.encode_documents(texts)

A separate module (not ``python -m pgsieve.workers``) so that the worker processes, started with ``spawn``, import
``pgsieve.workers`` under its own name.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Optional

from .workers import EncoderPool, EncoderSpec


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pgsieve.workers_server", description=__doc__.splitlines()[0])
    ap.add_argument("--factory", required=True, help="the encoder class or function, 'package.module:Name'")
    ap.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments for the factory")
    ap.add_argument("--devices", default="auto", help="auto, cpu, cuda, or a comma-separated list (cuda:0,cuda:1)")
    ap.add_argument("--workers-per-device", type=int, default=1)
    ap.add_argument("--address", default=None, help="unix socket path (default: a new temporary one)")
    ap.add_argument("--max-tokens", type=int, default=16384, help="padded tokens per batch")
    ap.add_argument("--max-batch", type=int, default=256, help="texts per batch")
    ap.add_argument("--max-pending", type=int, default=None, help="batches queued or in flight (backpressure)")
    ap.add_argument("--cpu-threads", type=int, default=1, help="torch threads per CPU worker")
    args = ap.parse_args(argv)

    kwargs = json.loads(args.kwargs)
    if not isinstance(kwargs, dict):
        ap.error("--kwargs must be a JSON object")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EncoderPool(EncoderSpec(args.factory, kwargs), devices=args.devices,
                     workers_per_device=args.workers_per_device, cpu_threads=args.cpu_threads,
                     max_tokens_per_batch=args.max_tokens, max_batch_size=args.max_batch,
                     max_pending=args.max_pending) as pool:
        address = pool.serve(args.address)
        print(json.dumps({"address": address, "devices": pool.devices, "pids": pool.pids,
                          "encoder": pool.info.get("class"), "dim": pool.info.get("dim")}), flush=True)
        while not stop.wait(1.0):
            pass
        print("stopping: draining pending requests", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
