"""Encoders and client jobs that tests/test_workers.py runs inside spawned processes (so they must be importable).

``HashEncoder`` needs no model and no torch (workers start in a fraction of a second); ``SlowDense`` is pgsieve's
DenseEncoder with a pause per batch, so a test can act while a large encode is in progress.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

import numpy as np

from pgsieve.encoders.base import ModelAttributes
from pgsieve.encoders.dense import DenseEncoder


class HashEncoder(ModelAttributes):
    """Deterministic embeddings from a hash of each text; optional delay, errors and crashes on marker texts."""

    def __init__(self, dim: int = 8, delay: float = 0.0, device: str = "cpu", batch_size: int = 16,
                 fail_init: bool = False, sparse: bool = False) -> None:
        if fail_init:
            raise RuntimeError("HashEncoder: fail_init requested")
        self._dim, self._delay, self._device, self._batch_size = dim, delay, device, batch_size
        self.sparse = sparse  # return a list of pgvector SparseVector (like the SPLADE / BM25 encoders)

    def _encode(self, texts: Sequence[str], salt: str) -> np.ndarray:
        for t in texts:
            if t == "__fail__":
                raise ValueError("HashEncoder refuses '__fail__'")
            if t == "__crash__":
                os._exit(7)
            if t == "__hang__":
                time.sleep(3600)
        if self._delay:
            time.sleep(self._delay)
        if self.sparse:
            from pgvector import SparseVector

            return [SparseVector({int(i): float(v) for i, v in enumerate(embed(t, self._dim, salt)) if v},
                                 self._dim) for t in texts]
        return np.stack([embed(t, self._dim, salt) for t in texts]) if texts else np.zeros((0, self._dim),
                                                                                             np.float32)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts), "d")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts), "q")


def embed(text: str, dim: int, salt: str = "d") -> np.ndarray:
    digest = hashlib.sha256((salt + text).encode()).digest()
    return np.frombuffer(digest, dtype=np.uint8)[:dim].astype(np.float32) / 255.0


class SlowDense(DenseEncoder):
    """DenseEncoder that sleeps ``delay`` seconds per call (a sleeping worker costs no CPU)."""

    def __init__(self, *args, delay: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay

    def encode(self, texts, prompt: str = ""):  # type: ignore[override]
        if self.delay:
            time.sleep(self.delay)
        return super().encode(texts, prompt)


def remote_client(address: str, chunks: list[list[str]], barrier, results) -> None:
    """A client process: after ``barrier`` (so the clients overlap), encode ``chunks`` through a served pool,
    all submitted before waiting on any; puts ``(pid, [arrays])`` on ``results``."""
    from pgsieve.workers import RemoteEncoder

    with RemoteEncoder(address) as enc:
        barrier.wait(60)
        futs = [enc.submit(c, "document") for c in chunks]
        results.put((os.getpid(), [f.result(120) for f in futs]))


def kill_after_batches(pool, victim: int, batches: int = 3, timeout: float = 60.0):
    """A started thread that SIGKILLs worker ``victim`` once ``pool`` has finished ``batches`` batches (so the
    kill lands in the middle of an ingest); join it after the ingest."""
    import signal
    import threading

    def run() -> None:
        deadline = time.monotonic() + timeout
        while pool.stats()["batches_done"] < batches and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)

    t = threading.Thread(target=run)
    t.start()
    return t
