"""Encoding worker processes: one per GPU (or a few on CPU), token-budgeted batches, backpressure, crash recovery.

An :class:`EncoderPool` starts worker processes (``multiprocessing`` with the ``spawn`` start method, which is what
CUDA and torch need) that each build their own encoder from a picklable :class:`EncoderSpec`, so the model lives
only in the workers. The pool itself has the encoder interface (``encode_documents`` / ``encode_queries``,
``dim``, ``batch_size``, ``device``), so it can be passed wherever an encoder is accepted, ``pgsieve.ingest`` included
(which then overlaps encoding with binary COPY)::

    from pgsieve.workers import EncoderPool

    spec = ("pgsieve.encoders.dense:DenseEncoder", {"model_path": "/models/minilm"})
    with EncoderPool(spec, devices="auto") as pool:          # one worker per visible GPU, else one CPU worker
        emb = pool.encode_documents(texts)                    # same rows as DenseEncoder(...).encode_documents
        fut = pool.submit(more_texts, kind="query")           # concurrent.futures.Future
        emb2 = await pool.aencode(texts)                      # asyncio

How a request travels:

1. :meth:`EncoderPool.submit` counts tokens with the encoder's own tokenizer (the first worker sends a pickled copy
   when it starts; a character estimate otherwise), sorts the texts by length and cuts them into batches whose
   padded size (texts × longest text) stays under ``max_tokens_per_batch`` (:func:`plan_batches`).
2. Backpressure: at most ``max_pending`` batches are queued or in flight; ``submit`` blocks (or raises
   :class:`PoolBusy` after ``timeout``) until earlier batches complete.
3. A dispatcher thread hands batches to the least loaded live worker, at most ``prefetch`` per worker (one being
   encoded, the next already waiting, so a GPU never idles on the round trip), over a private pipe per worker.
   The dispatcher knows which batches each worker holds: when a worker dies (exit code, killed, out of memory)
   they go back to the front of the queue and the worker is restarted, so no text is lost. A batch that has
   killed ``max_attempts`` workers fails its request with :class:`WorkerCrashed` instead of killing more.
4. Results are put back in input order and the future completes with what the encoder itself would return for
   the whole list (an array ``(n, dim)`` for dense encoders, a list for sparse / multivector ones).

Several client processes share one pool through :meth:`EncoderPool.serve` (a ``multiprocessing.connection``
listener on a unix socket, authenticated with a key) and :class:`RemoteEncoder` on the client side, which has the
same encoder interface. ``python -m pgsieve.workers_server`` runs such a server on its own.

:meth:`EncoderPool.close` (also on leaving ``with`` and at interpreter exit) drains or cancels the pending work,
stops and joins every worker, and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import importlib
import inspect
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection as mpc
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .encoders.base import check_texts

__all__ = [
    "EncoderSpec",
    "EncoderPool",
    "RemoteEncoder",
    "PoolClosed",
    "PoolBusy",
    "WorkerCrashed",
    "EncoderInitError",
    "plan_batches",
    "resolve_devices",
    "throughput_check",
]

log = logging.getLogger("pgsieve.workers")

KINDS = ("document", "query")
_KIND_ALIASES = {"document": "document", "documents": "document", "doc": "document", "passage": "document",
                 "query": "query", "queries": "query"}


# ----------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------

class PoolClosed(RuntimeError):
    """The pool (or the remote server) is closed or closing: no new work is accepted."""


class PoolBusy(TimeoutError):
    """``submit(..., timeout=...)`` could not queue its batches in time (backpressure)."""


class WorkerCrashed(RuntimeError):
    """A batch killed ``max_attempts`` workers in a row (or no worker could be started to run it)."""


class EncoderInitError(RuntimeError):
    """A worker could not build its encoder; the message holds the worker's traceback."""


class _RemoteTraceback(Exception):
    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _portable_exc(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError carrying its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------------------------------------------
# encoder specs
# ----------------------------------------------------------------------------------------------------------------

def _import_object(path: str) -> Any:
    """``"package.module:Name.attr"`` → the object."""
    module, sep, qual = path.partition(":")
    if not sep or not module or not qual:
        raise ValueError(f"factory must look like 'package.module:Name', got {path!r}")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


@dataclass(frozen=True)
class EncoderSpec:
    """How a worker builds its encoder: ``factory(**kwargs, device=<the worker's device>)``.

    ``factory`` is ``"package.module:Name"`` (imported in the worker, so the parent never loads the model) or a
    picklable callable (a class or a module-level function). ``device_arg`` names the keyword that receives the
    worker's device (None: pass none); it is passed only when the factory takes it and ``kwargs`` does not set it
    (BM25Encoder, say, has no device). Likewise, when ``kwargs`` has no ``batch_size`` and the factory takes one,
    the pool passes its ``max_batch_size``, so one pool batch is one forward pass.
    """

    factory: Union[str, Callable[..., Any]]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    device_arg: Optional[str] = "device"

    @classmethod
    def coerce(cls, spec: Any) -> "EncoderSpec":
        """Accept an EncoderSpec, ``"module:Name"``, a callable, or ``(factory, kwargs)``."""
        if isinstance(spec, EncoderSpec):
            return spec
        if isinstance(spec, str) or callable(spec):
            return cls(spec)
        if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], Mapping):
            return cls(spec[0], dict(spec[1]))
        raise TypeError("encoder spec must be an EncoderSpec, 'module:Name', a callable or (factory, kwargs); "
                        f"got {spec!r}")

    def resolve(self) -> Callable[..., Any]:
        return _import_object(self.factory) if isinstance(self.factory, str) else self.factory

    def build(self, device: Optional[str] = None, batch_size: Optional[int] = None) -> Any:
        """Construct the encoder (in the calling process)."""
        factory = self.resolve()
        kwargs = dict(self.kwargs)
        if (device is not None and self.device_arg and self.device_arg not in kwargs
                and _accepts(factory, self.device_arg)):
            kwargs[self.device_arg] = device
        if batch_size is not None and "batch_size" not in kwargs and _accepts(factory, "batch_size"):
            kwargs["batch_size"] = batch_size
        return factory(**kwargs)


def resolve_devices(devices: Any = "auto") -> list[str]:
    """Device strings, one per worker slot before ``workers_per_device``.

    ``"auto"``/None: every visible CUDA device (``cuda:0``, ``cuda:1``, ...), else ``["cpu"]``; ``"cuda"``: every
    visible CUDA device (an error if there is none); ``"cpu"``; a comma-separated string or a list of devices.
    """
    if devices is None or devices == "auto":
        return [f"cuda:{i}" for i in range(_cuda_count())] or ["cpu"]
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    out: list[str] = []
    for d in devices:
        d = str(d)
        if d == "cuda":
            n = _cuda_count()
            if n == 0:
                raise RuntimeError("devices='cuda' but torch sees no CUDA device")
            out.extend(f"cuda:{i}" for i in range(n))
        else:
            out.append(d)
    if not out:
        raise ValueError("no devices given")
    return out


def _cuda_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - broken driver
        return 0


# ----------------------------------------------------------------------------------------------------------------
# token-budgeted batching
# ----------------------------------------------------------------------------------------------------------------

def plan_batches(lengths: Sequence[int], max_tokens: int, max_batch: int) -> list[list[int]]:
    """Cut texts (by their token ``lengths``) into batches, longest first.

    Each batch's padded size, ``len(batch) × its longest text``, stays ≤ ``max_tokens`` (a text longer than that
    gets a batch of its own) and it holds at most ``max_batch`` texts. Sorting by length keeps padding small;
    the indices say where each result goes back.
    """
    if max_tokens < 1 or max_batch < 1:
        raise ValueError(f"max_tokens and max_batch must be >= 1, got {max_tokens}, {max_batch}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        n = max(1, int(lengths[i]))
        if cur and (len(cur) + 1 > max_batch or (len(cur) + 1) * longest > max_tokens):
            batches.append(cur)
            cur = []
        if not cur:
            longest = n
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def _char_estimate(texts: Sequence[str], limit: Optional[int]) -> list[int]:
    """~4 characters per word piece plus two special tokens: a cheap stand-in when there is no tokenizer."""
    out = [len(t) // 4 + 2 for t in texts]
    return [min(n, limit) for n in out] if limit else out


class _TokenCounter:
    """Token counts per text with the encoder's tokenizer, truncated like the encoder truncates."""

    def __init__(self, mode: Any, info: Mapping[str, Any]) -> None:
        self.tokenizer: Any = None
        self.custom: Optional[Callable[[Sequence[str]], Sequence[int]]] = None
        self.limits = {"document": info.get("max_length"), "query": info.get("query_max_length")
                       or info.get("max_length")}
        if callable(mode):
            self.custom = mode
        elif mode == "auto" and info.get("tokenizer") is not None:
            try:
                self.tokenizer = pickle.loads(info["tokenizer"])
                self.tokenizer.model_max_length = int(1e30)  # we truncate ourselves; no long-input warnings
            except Exception as exc:  # tokenizer classes missing in this process, ...
                log.debug("token counting falls back to a character estimate: %s", exc)
                self.tokenizer = None
        elif mode not in ("auto", "chars"):
            raise ValueError(f"token_counter must be 'auto', 'chars' or a callable, got {mode!r}")

    @property
    def mode(self) -> str:
        return "custom" if self.custom else "tokenizer" if self.tokenizer is not None else "chars"

    def __call__(self, texts: Sequence[str], kind: str) -> list[int]:
        limit = self.limits.get(kind)
        if not texts:
            return []
        if self.custom is not None:
            got = [int(n) for n in self.custom(texts)]
            return [min(n, limit) for n in got] if limit else got
        if self.tokenizer is not None:
            try:
                ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=bool(limit),
                                     max_length=limit, return_attention_mask=False,
                                     return_token_type_ids=False)["input_ids"]
                return [len(x) for x in ids]
            except Exception as exc:
                log.warning("tokenizer failed to count tokens (%s); using a character estimate from now on", exc)
                self.tokenizer = None
        return _char_estimate(texts, limit)


# ----------------------------------------------------------------------------------------------------------------
# the worker process
# ----------------------------------------------------------------------------------------------------------------

def _describe(encoder: Any, device: str) -> dict[str, Any]:
    """What the parent needs to know about a worker's encoder (everything picklable)."""
    info: dict[str, Any] = {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}", "device": device}
    for key in ("dim", "batch_size", "device"):
        try:
            value = getattr(encoder, key)
        except Exception:
            continue
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            info[key] = value
    doc = getattr(encoder, "max_length", None) or getattr(encoder, "doc_maxlen", None)
    qry = getattr(encoder, "query_max_length", None) or getattr(encoder, "query_maxlen", None)
    info["max_length"] = int(doc) if isinstance(doc, int) else None
    info["query_max_length"] = int(qry) if isinstance(qry, int) else None
    info["kinds"] = [k for k in KINDS if _method(encoder, k) is not None]
    tok = getattr(encoder, "tokenizer", None)
    if tok is None:
        tok = getattr(encoder, "_tokenizer", None)
    info["tokenizer"] = None
    if tok is not None and callable(tok):
        try:
            info["tokenizer"] = pickle.dumps(tok)
        except Exception:
            pass
    return info


def _method(encoder: Any, kind: str) -> Optional[Callable[[list[str]], Any]]:
    names = ("encode_documents", "encode_document") if kind == "document" else ("encode_queries", "encode_query")
    for name in names:
        fn = getattr(encoder, name, None)
        if callable(fn):
            return fn
    return None


def _worker_main(conn: Any, spec: EncoderSpec, device: str, options: Mapping[str, Any]) -> None:
    """Body of one worker process: build the encoder, then encode the batches the parent sends until told to stop.

    A reader thread moves incoming messages to a local queue at once, so the parent's sends never wait on an
    encoding in progress (two processes both blocked in ``send`` would deadlock).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    threads = options.get("threads")
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        encoder = spec.build(device, options.get("batch_size"))
        if threads and "torch" in sys.modules:  # the env variables above covered torch's start-up default
            sys.modules["torch"].set_num_threads(int(threads))
        info = _describe(encoder, device)
    except BaseException:
        try:
            conn.send(("init_error", traceback.format_exc()))
        finally:
            conn.close()
        return
    conn.send(("ready", os.getpid(), info))

    inbox: "queue.SimpleQueue[Any]" = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the parent is gone: finish and exit
                inbox.put(None)
                return
            inbox.put(msg)
            if msg[0] == "stop":
                return

    threading.Thread(target=read, name="pgsieve-worker-reader", daemon=True).start()
    while True:
        msg = inbox.get()
        if msg is None or msg[0] == "stop":
            break
        _, bid, kind, texts = msg
        try:
            fn = _method(encoder, kind)
            if fn is None:
                raise TypeError(f"{type(encoder).__name__} has no {kind} encoding method")
            result = fn(texts)
            reply: tuple[Any, ...] = ("done", bid, result)
        except Exception as exc:
            reply = ("fail", bid, _portable_exc(exc), traceback.format_exc())
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            break
        except Exception as exc:  # the result itself does not pickle
            conn.send(("fail", bid, RuntimeError(f"result of the encoder does not pickle: {exc}"), ""))
    conn.close()


# ----------------------------------------------------------------------------------------------------------------
# the pool
# ----------------------------------------------------------------------------------------------------------------

class _Request:
    __slots__ = ("future", "n", "remaining", "sealed", "parts", "kind")

    def __init__(self, n: int, kind: str) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.n = n
        self.remaining = 0  # batches queued and not yet done
        self.sealed = False  # every batch of the request has been queued
        self.parts: list[tuple[list[int], Any]] = []
        self.kind = kind


class _Batch:
    __slots__ = ("id", "request", "indices", "texts", "kind", "attempts")

    def __init__(self, bid: int, request: _Request, indices: list[int], texts: list[str], kind: str) -> None:
        self.id = bid
        self.request = request
        self.indices = indices
        self.texts = texts
        self.kind = kind
        self.attempts = 0


class _Worker:
    """The parent's view of one worker slot (a slot keeps its device across restarts)."""

    def __init__(self, slot: int, device: str) -> None:
        self.slot = slot
        self.device = device
        self.proc: Any = None
        self.conn: Any = None
        self.state = "new"  # starting | ready | dead | failed | stopped
        self.pid: Optional[int] = None
        self.info: dict[str, Any] = {}
        self.inflight: dict[int, _Batch] = {}
        self.init_error: Optional[str] = None
        self.init_failures = 0
        self.restarts = 0
        self.started_at = 0.0
        self.busy_since = 0.0  # when it last got work while idle, or last returned a result while still busy


def _assemble(n: int, parts: list[tuple[list[int], Any]]) -> Any:
    """Per-batch results back in input order: one array when every batch gave an array, else a list."""
    for idx, res in parts:
        if len(res) != len(idx):
            raise RuntimeError(f"the encoder returned {len(res)} results for {len(idx)} texts")
    if parts and all(isinstance(r, np.ndarray) and r.ndim >= 1 for _, r in parts):
        first = parts[0][1]
        if all(r.shape[1:] == first.shape[1:] and r.dtype == first.dtype for _, r in parts):
            out = np.empty((n,) + first.shape[1:], dtype=first.dtype)
            for idx, res in parts:
                out[idx] = res
            return out
    items: list[Any] = [None] * n
    for idx, res in parts:
        for j, i in enumerate(idx):
            items[i] = res[j]
    return items


def _norm_kind(kind: str) -> str:
    try:
        return _KIND_ALIASES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be 'document' or 'query', got {kind!r}") from None


_LIVE_POOLS: "weakref.WeakSet[EncoderPool]" = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:  # pragma: no cover - interpreter exit
    for pool in list(_LIVE_POOLS):
        try:
            pool.close(cancel=True, timeout=5)
        except Exception:
            pass


class _EncodeByKind:
    """The encoder protocol's methods, by kind, over ``submit(texts, kind)`` (a future of the encoded batch)."""

    def submit(self, texts: Sequence[str], kind: str = "document") -> concurrent.futures.Future:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], kind: str = "document", timeout: Optional[float] = None) -> Any:
        """Encode ``texts`` through the workers; what the encoder returns for the whole list, in input order."""
        return self.submit(texts, kind).result(timeout)

    async def aencode(self, texts: Sequence[str], kind: str = "document") -> Any:
        """``encode`` for asyncio: waits for queue room (backpressure) and the result without blocking the loop."""
        loop = asyncio.get_running_loop()
        fut = await loop.run_in_executor(None, self.submit, texts, kind)
        return await asyncio.wrap_future(fut)

    def encode_documents(self, texts: Sequence[str]) -> Any:
        return self.encode(texts, "document")

    def encode_queries(self, texts: Sequence[str]) -> Any:
        return self.encode(texts, "query")

    def encode_document(self, texts: Sequence[str]) -> Any:
        return self.encode(texts, "document")

    def encode_query(self, texts: Sequence[str]) -> Any:
        return self.encode(texts, "query")


class EncoderPool(_EncodeByKind):
    """Encoder worker processes behind the encoder interface.

    Parameters
    ----------
    spec: how each worker builds its encoder (:class:`EncoderSpec`, ``"module:Name"``, ``(factory, kwargs)``).
    devices: ``"auto"`` (one worker per visible GPU, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:0,cuda:1"`` or a list.
    workers_per_device: workers per device (on CPU: the number of CPU workers).
    cpu_threads: torch threads per CPU worker (1 by default: scale with ``workers_per_device``); None leaves
        torch's default. CUDA workers get ``cpu_count // workers`` threads for their CPU-side work.
    max_tokens_per_batch: padded-token budget of one batch (texts × longest text).
    max_batch_size: at most this many texts per batch (also the encoder's ``batch_size`` unless the spec sets it).
    max_pending: batches queued or in flight before ``submit`` blocks; default ``4 × workers`` (at least 8).
    prefetch: batches outstanding per worker (2: one encoding, one waiting).
    max_attempts: workers a batch may kill before its request fails with :class:`WorkerCrashed`.
    token_counter: ``"auto"`` (the encoder's tokenizer, else a character estimate), ``"chars"``, or a callable
        ``texts -> token counts``.
    batch_timeout: seconds a busy worker may go without returning a batch before it is taken for hung, killed and
        restarted (its batches re-queued like a crash's); None waits forever.
    start_timeout: seconds to wait for the workers to build their encoders (``wait=True``).
    wait: block in the constructor until every worker is ready (raising :class:`EncoderInitError` if one fails).
    """

    def __init__(self, spec: Any, devices: Any = "auto", workers_per_device: int = 1, *,
                 cpu_threads: Optional[int] = 1, max_tokens_per_batch: int = 16384, max_batch_size: int = 256,
                 max_pending: Optional[int] = None, prefetch: int = 2, max_attempts: int = 3,
                 token_counter: Any = "auto", batch_timeout: Optional[float] = None, start_timeout: float = 600.0,
                 wait: bool = True) -> None:
        if workers_per_device < 1:
            raise ValueError(f"workers_per_device must be >= 1, got {workers_per_device}")
        if max_tokens_per_batch < 1 or max_batch_size < 1 or prefetch < 1 or max_attempts < 1:
            raise ValueError("max_tokens_per_batch, max_batch_size, prefetch and max_attempts must be >= 1")
        if cpu_threads is not None and cpu_threads < 1:
            raise ValueError(f"cpu_threads must be >= 1 or None, got {cpu_threads}")
        if not (token_counter in ("auto", "chars") or callable(token_counter)):
            raise ValueError(f"token_counter must be 'auto', 'chars' or a callable, got {token_counter!r}")
        self.spec = EncoderSpec.coerce(spec)
        self.devices = [d for d in resolve_devices(devices) for _ in range(workers_per_device)]
        n = len(self.devices)
        self.max_tokens_per_batch = int(max_tokens_per_batch)
        self.max_batch_size = int(max_batch_size)
        self.max_pending = int(max_pending) if max_pending is not None else max(8, 4 * n)
        if self.max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.prefetch = int(prefetch)
        self.max_attempts = int(max_attempts)
        if batch_timeout is not None and batch_timeout <= 0:
            raise ValueError(f"batch_timeout must be > 0 or None, got {batch_timeout}")
        self.batch_timeout = batch_timeout
        #: texts counted and sorted together when a request is cut into batches (see ``_plan``)
        self.plan_slice = max(1024, 4 * self.max_batch_size)
        self._cpu_threads = cpu_threads
        self._gpu_threads = max(1, (os.cpu_count() or 1) // n)
        self._token_mode = token_counter
        self._counter: Optional[_TokenCounter] = None
        self._ctx = multiprocessing.get_context("spawn")

        # re-entrant: a future's done-callbacks run wherever it completes and may look at the pool
        self._lock = threading.RLock()
        self._cv = threading.Condition(self._lock)
        self._queue: deque[_Batch] = deque()
        self._in_use = 0  # batches queued or in flight (the backpressure count)
        self._requests: set[_Request] = set()
        self._ids = itertools.count(1)
        self._closing = False
        self._closed = False
        self._broken: Optional[str] = None
        self._info: dict[str, Any] = {}
        self._info_ready = threading.Event()
        self._stats = {"requests": 0, "texts": 0, "batches": 0, "batches_done": 0, "requeued": 0, "restarts": 0,
                       "worker_deaths": 0, "failed_batches": 0, "max_in_use": 0, "clients": 0}
        self._servers: list[_Server] = []

        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._workers = [_Worker(i, d) for i, d in enumerate(self.devices)]
        for w in self._workers:
            self._start_worker(w)
        self._thread = threading.Thread(target=self._run, name="pgsieve-encoder-pool", daemon=True)
        self._thread.start()
        _LIVE_POOLS.add(self)
        if wait:
            try:
                self.wait_ready(start_timeout)
            except BaseException:
                self.close(cancel=True)
                raise

    # -- encoder interface -------------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """What the first ready worker said about its encoder (class, dim, device, max lengths, kinds)."""
        self._wait_info()
        return {k: v for k, v in self._info.items() if k != "tokenizer"}

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def batch_size(self) -> int:
        return self.max_batch_size

    @property
    def device(self) -> str:
        return ",".join(dict.fromkeys(self.devices))

    @property
    def pids(self) -> list[Optional[int]]:
        """Process ids of the current workers (a restarted worker has a new one)."""
        with self._lock:
            return [w.pid if w.state in ("starting", "ready") else None for w in self._workers]

    def submit_documents(self, texts: Sequence[str], timeout: Optional[float] = None) -> concurrent.futures.Future:
        return self.submit(texts, "document", timeout=timeout)

    def submit_queries(self, texts: Sequence[str], timeout: Optional[float] = None) -> concurrent.futures.Future:
        return self.submit(texts, "query", timeout=timeout)

    # -- submission --------------------------------------------------------------------------------------------
    def submit(self, texts: Sequence[str], kind: str = "document", *,
               timeout: Optional[float] = None) -> concurrent.futures.Future:
        """Queue ``texts`` for encoding; returns a ``concurrent.futures.Future`` of the in-order result.

        Blocks while ``max_pending`` batches are queued or in flight (backpressure); with ``timeout`` it raises
        :class:`PoolBusy` instead once that many seconds have passed (the batches it queued already are dropped).
        Cancelling the future drops the batches not yet sent to a worker.
        """
        items = check_texts(texts)
        kind = _norm_kind(kind)
        self._check_open()
        if threading.current_thread() is self._thread:
            raise RuntimeError("submit() from a future's callback would block the pool's dispatcher")
        counter = self._get_counter()
        if self._info.get("kinds") and kind not in self._info["kinds"]:
            raise TypeError(f"{self._info.get('class')} has no {kind} encoding method")
        req = _Request(len(items), kind)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._requests.add(req)
            self._stats["requests"] += 1
            self._stats["texts"] += len(items)
        req.future.add_done_callback(lambda _f, r=req: self._forget(r))
        for idx in self._plan(items, kind, counter):
            batch = _Batch(next(self._ids), req, idx, [items[i] for i in idx], kind)
            exc: Optional[Exception] = None
            with self._cv:
                while (self._in_use >= self.max_pending and not self._closing and not self._broken
                       and not req.future.done()):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cv.wait(0.25 if left is None else min(0.25, left))
                if req.future.done():  # cancelled (or failed) while waiting
                    return req.future
                if self._closing or self._broken or self._in_use >= self.max_pending:
                    exc = (PoolClosed("the pool is closing") if self._closing else
                           PoolClosed(f"the pool has no working worker: {self._broken}") if self._broken else
                           PoolBusy(f"no room for a batch within {timeout}s ({self.max_pending} batches pending)"))
                else:
                    self._in_use += 1
                    req.remaining += 1
                    self._stats["batches"] += 1
                    self._stats["max_in_use"] = max(self._stats["max_in_use"], self._in_use)
                    self._queue.append(batch)
            if exc is not None:
                self._fail(req, exc)  # outside the lock: it runs the future's callbacks
                raise exc
            self._wake()
        with self._cv:
            req.sealed = True
            finished = req.remaining == 0 and not req.future.done()
        if finished:  # every batch came back while later ones were still being planned
            self._finish(req)
        return req.future

    def _plan(self, items: list[str], kind: str, counter: _TokenCounter) -> Any:
        """Batches (lists of indices into ``items``), planned a slice at a time.

        Token counting and sorting work on slices of ``plan_slice`` texts, so the first batches reach the workers
        after counting one slice rather than the whole request (a large request would otherwise leave a GPU idle
        while the parent tokenizes), at little cost in padding.
        """
        if not items:
            yield []  # the encoder's own empty result (an (0, dim) array or an empty list)
            return
        step = self.plan_slice
        for start in range(0, len(items), step):
            part = items[start:start + step]
            for idx in plan_batches(counter(part, kind), self.max_tokens_per_batch, self.max_batch_size):
                yield [start + i for i in idx]

    def _get_counter(self) -> _TokenCounter:
        if self._counter is None:
            self._wait_info()
            self._counter = _TokenCounter(self._token_mode, self._info)
        return self._counter

    def _wait_info(self) -> None:
        while not self._info_ready.wait(0.25):
            self._check_open()

    def _check_open(self) -> None:
        if self._closing or self._closed:
            raise PoolClosed("the pool is closed")
        if self._broken:
            raise PoolClosed(f"the pool has no working worker: {self._broken}")

    def _forget(self, req: _Request) -> None:
        with self._cv:
            self._requests.discard(req)
            self._cv.notify_all()

    def _fail(self, req: _Request, exc: BaseException) -> None:
        """Complete ``req`` with ``exc`` (no-op if it is already done). Call with or without the lock."""
        try:
            if not req.future.done():
                req.future.set_exception(exc)
        except concurrent.futures.InvalidStateError:
            pass

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the buffer is full: the dispatcher is awake anyway

    # -- worker lifecycle --------------------------------------------------------------------------------------
    def _start_worker(self, w: _Worker) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        threads = self._cpu_threads if w.device.startswith("cpu") else self._gpu_threads
        options = {"threads": threads, "batch_size": self.max_batch_size, "slot": w.slot}
        proc = self._ctx.Process(target=_worker_main, args=(child, self.spec, w.device, options),
                                 name=f"pgsieve-encoder-{w.slot}", daemon=True)
        proc.start()
        child.close()  # only the worker holds its end: its death reads as EOF here
        w.proc, w.conn, w.pid, w.state = proc, parent, proc.pid, "starting"
        w.init_error, w.started_at = None, time.monotonic()

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Block until every worker has built its encoder; raise :class:`EncoderInitError` if one could not."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while True:
                failed = [w for w in self._workers if w.state == "failed"]
                if failed:
                    raise EncoderInitError(f"encoder worker on {failed[0].device} failed to start:\n"
                                           f"{failed[0].init_error}")
                if all(w.state == "ready" for w in self._workers):
                    return
                if self._closed:
                    raise PoolClosed("the pool is closed")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"encoder workers not ready after {timeout}s")
                self._cv.wait(0.25 if left is None else min(0.25, left))

    # -- dispatcher thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    live = [w for w in self._workers if w.state in ("starting", "ready")]
                waitables: list[Any] = [self._wake_r]
                for w in live:
                    waitables += [w.conn, w.proc.sentinel]
                try:
                    ready = mpc.wait(waitables, timeout=0.5)
                except OSError:
                    ready = []
                if self._wake_r in ready:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                for w in live:
                    if w.conn in ready or w.proc.sentinel in ready:
                        self._service(w, w.proc.sentinel in ready)
                if self.batch_timeout is not None:
                    self._kill_hung()
                self._dispatch()
        except BaseException:  # pragma: no cover - a bug here must not hang every caller
            tb = traceback.format_exc()
            log.error("encoder pool dispatcher died:\n%s", tb)
            with self._cv:
                self._broken = f"dispatcher failed: {tb}"
                reqs = list(self._requests)
                self._cv.notify_all()
            for r in reqs:
                self._fail(r, PoolClosed(self._broken))

    def _kill_hung(self) -> None:
        now = time.monotonic()
        with self._cv:
            hung = [w for w in self._workers if w.state == "ready" and w.inflight
                    and now - w.busy_since > self.batch_timeout]
        for w in hung:
            log.warning("encoder worker %d (pid %s) returned nothing for %.0fs with %d batches: killing it",
                        w.slot, w.pid, now - w.busy_since, len(w.inflight))
            w.proc.kill()  # its death is handled like any crash: batches re-queued, worker restarted

    def _service(self, w: _Worker, exited: bool) -> None:
        """Read what ``w`` sent; handle its death when its pipe closed or its process exited."""
        dead = exited
        try:
            while w.conn.poll():
                self._on_message(w, w.conn.recv())
        except (EOFError, OSError, pickle.UnpicklingError):
            dead = True  # EOF, or a message cut short by the worker's death
        if dead:
            self._on_death(w)

    def _on_message(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        tag = msg[0]
        if tag == "ready":
            with self._cv:
                w.state, w.pid, w.info = "ready", int(msg[1]), dict(msg[2])
                w.init_failures = 0
                if not self._info_ready.is_set():
                    self._info = dict(msg[2])
                    self._info_ready.set()
                self._cv.notify_all()
        elif tag == "init_error":
            w.init_error = str(msg[1])
        elif tag in ("done", "fail"):
            with self._cv:
                batch = w.inflight.pop(msg[1], None)
                w.busy_since = time.monotonic()
            if batch is None:
                return
            if tag == "done":
                self._complete(batch, msg[2])
            else:
                exc = msg[2]
                if isinstance(exc, BaseException) and msg[3]:
                    exc.__cause__ = _RemoteTraceback(msg[3])
                with self._cv:
                    self._stats["failed_batches"] += 1
                self._release(batch)
                self._fail(batch.request, exc if isinstance(exc, BaseException) else RuntimeError(str(exc)))

    def _release(self, batch: _Batch) -> None:
        with self._cv:
            self._in_use -= 1
            self._cv.notify_all()

    def _complete(self, batch: _Batch, result: Any) -> None:
        req = batch.request
        self._release(batch)
        with self._cv:
            self._stats["batches_done"] += 1
            if req.future.done():
                return
            req.parts.append((batch.indices, result))
            req.remaining -= 1
            finished = req.sealed and req.remaining == 0
        if finished:
            self._finish(req)

    def _finish(self, req: _Request) -> None:
        """All of ``req``'s batches are back: assemble them in input order and complete its future."""
        try:
            value = _assemble(req.n, req.parts)
        except Exception as exc:
            self._fail(req, exc)
            return
        req.parts = []
        try:
            req.future.set_result(value)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled meanwhile

    def _on_death(self, w: _Worker) -> None:
        """Reap ``w``, put its batches back at the front of the queue, restart it (unless closing)."""
        proc = w.proc
        proc.join(timeout=5)
        if proc.is_alive():  # its pipe broke but it lingers: make sure it is gone before a replacement starts
            proc.kill()
            proc.join(timeout=5)
        code = proc.exitcode
        try:
            w.conn.close()
        except OSError:
            pass
        was_ready = w.state == "ready"
        with self._cv:
            batches = list(w.inflight.values())  # in the order sent: the first is the one it was encoding
            w.inflight.clear()
            w.state = "dead"
            self._stats["worker_deaths"] += 1
            closing = self._closed  # while close() drains, a dead worker is still restarted
        if closing and not batches:
            return
        if was_ready or not w.init_error:
            log.warning("encoder worker %d (pid %s, %s) died with exit code %s; %d batches re-queued",
                        w.slot, w.pid, w.device, code, len(batches))
        if batches:
            batches[0].attempts += 1  # the others were only waiting in its inbox: no strike against them
        for b in reversed(batches):
            if b.attempts >= self.max_attempts:
                self._release(b)
                self._fail(b.request, WorkerCrashed(
                    f"a batch of {len(b.texts)} texts killed {b.attempts} encoder workers "
                    f"(last exit code {code}); giving up on it"))
                continue
            with self._cv:
                self._queue.appendleft(b)
                self._stats["requeued"] += 1
        if closing:
            return
        if not was_ready:
            w.init_failures += 1
            if w.init_error is not None or w.init_failures >= 3:
                with self._cv:
                    w.init_error = w.init_error or (f"the worker process exited with code {code} before its "
                                                    "encoder was ready (its stderr may say why)")
                    w.state = "failed"
                    self._cv.notify_all()
                log.error("encoder worker %d on %s could not start:\n%s", w.slot, w.device, w.init_error)
                self._check_broken()
                return
        with self._cv:
            w.restarts += 1
            self._stats["restarts"] += 1
        self._start_worker(w)

    def _check_broken(self) -> None:
        with self._cv:
            if any(w.state in ("starting", "ready") for w in self._workers):
                return
            failed = next((w for w in self._workers if w.init_error), None)
            self._broken = failed.init_error if failed else "every worker failed"
            queued = list(self._queue)
            self._queue.clear()
            self._in_use -= len(queued)
            self._cv.notify_all()
        for b in queued:
            self._fail(b.request, WorkerCrashed(f"no encoder worker can start: {self._broken}"))

    def _dispatch(self) -> None:
        """Send queued batches to the least loaded ready workers, at most ``prefetch`` each."""
        while True:
            with self._cv:
                if not self._queue:
                    return
                ready = [w for w in self._workers if w.state == "ready" and len(w.inflight) < self.prefetch]
                if not ready:
                    return
                batch = self._queue.popleft()
                if batch.request.future.done():  # cancelled or failed: drop it
                    self._in_use -= 1
                    self._cv.notify_all()
                    continue
                w = min(ready, key=lambda x: (len(x.inflight), x.slot))
                if not w.inflight:
                    w.busy_since = time.monotonic()
                w.inflight[batch.id] = batch
            try:
                w.conn.send(("encode", batch.id, batch.kind, batch.texts))
            except (OSError, ValueError):
                pass  # the worker died: _on_death re-queues the batch (it is in w.inflight)

    # -- shutdown ----------------------------------------------------------------------------------------------
    def close(self, cancel: bool = False, timeout: Optional[float] = None) -> None:
        """Stop the pool: finish the pending work (or cancel it), stop and join every worker.

        ``cancel=False`` waits for every submitted request (up to ``timeout`` seconds, then cancels the rest);
        ``cancel=True`` cancels them at once. Idempotent; also called on leaving ``with`` and at exit.
        """
        with self._cv:
            if self._closed:
                return
            self._closing = True
            self._cv.notify_all()
        for srv in list(self._servers):
            srv.close()
        if not cancel:
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._cv:
                while self._requests and self._broken is None:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cv.wait(0.25 if left is None else min(0.25, left))
        with self._cv:
            pending = list(self._requests)
            self._closed = True
            self._queue.clear()
            self._cv.notify_all()
        for req in pending:
            req.future.cancel() or self._fail(req, PoolClosed("the pool was closed"))
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._stop_workers(graceful=not cancel)
        for s in (self._wake_r, self._wake_w):
            s.close()
        _LIVE_POOLS.discard(self)

    def _stop_workers(self, graceful: bool) -> None:
        procs = [w for w in self._workers if w.proc is not None]
        for w in procs:
            if graceful and w.state == "ready" and w.proc.is_alive():
                try:
                    w.conn.send(("stop",))
                except (OSError, ValueError):
                    w.proc.terminate()
            elif w.proc.is_alive():  # cancelling, or still loading its model: no need to wait for it
                w.proc.terminate()
        deadline = time.monotonic() + (10 if graceful else 3)
        for w in procs:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(timeout=3)
            if w.proc.is_alive():  # pragma: no cover - stuck in a driver call
                w.proc.kill()
                w.proc.join(timeout=3)
            try:
                w.conn.close()
            except OSError:
                pass
            w.state = "stopped"

    def __enter__(self) -> "EncoderPool":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(cancel=exc_type is not None)

    # -- introspection -----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters (requests, batches, re-queued batches, restarts, ...) and the workers' states."""
        with self._lock:
            out: dict[str, Any] = dict(self._stats)
            out["in_use"] = self._in_use
            out["queued"] = len(self._queue)
            out["token_counter"] = self._counter.mode if self._counter else None
            out["workers"] = [{"slot": w.slot, "device": w.device, "pid": w.pid, "state": w.state,
                               "inflight": len(w.inflight), "restarts": w.restarts} for w in self._workers]
        return out

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"EncoderPool({self.spec.factory!r}, devices={self.devices}, {state})"

    # -- serving other processes -------------------------------------------------------------------------------
    def serve(self, address: Any = None, authkey: Optional[bytes] = None) -> Any:
        """Accept :class:`RemoteEncoder` clients from other processes; returns the address.

        ``address``: a unix socket path (default: a fresh one in a private temporary directory) or
        ``(host, port)``. ``authkey``: the shared secret; for a unix socket it defaults to a random key written
        to ``<address>.key`` (mode 0600), which :class:`RemoteEncoder` reads when given no key. Requests from
        all clients share the pool's queue and its backpressure. Stopped by :meth:`close`.
        """
        self._check_open()
        srv = _Server(self, address, authkey)
        with self._lock:
            self._servers.append(srv)
        return srv.address


# ----------------------------------------------------------------------------------------------------------------
# serving several processes
# ----------------------------------------------------------------------------------------------------------------

def _key_path(address: str) -> Path:
    return Path(f"{address}.key")


def _shutdown(conn: Any) -> None:
    """Wake a thread blocked in ``conn.recv()`` (it sees EOF): closing the descriptor alone does not."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as s:
            s.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class _Server:
    """A listener thread plus one handler thread (and one sender thread) per connected client."""

    def __init__(self, pool: EncoderPool, address: Any, authkey: Optional[bytes]) -> None:
        self.pool = pool
        self._tmpdir: Optional[str] = None
        if address is None:
            self._tmpdir = tempfile.mkdtemp(prefix="pgsieve-encoders-")
            address = os.path.join(self._tmpdir, "pool.sock")
        self._keyfile: Optional[Path] = None
        if authkey is None:
            if not isinstance(address, str):
                raise ValueError("a TCP address needs an explicit authkey")
            authkey = secrets.token_bytes(32)
            self._keyfile = _key_path(address)
            fd = os.open(self._keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(authkey.hex().encode())
        self.authkey = authkey
        self.listener = mpc.Listener(address, authkey=authkey, backlog=64)
        self.address = self.listener.address
        self._stop = False
        self._conns: set[Any] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name="pgsieve-encoder-server", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop:
            try:
                conn = self.listener.accept()
            except Exception:  # failed authentication, or the wake-up connection from close()
                continue
            if self._stop:
                conn.close()
                break
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), name="pgsieve-encoder-client", daemon=True).start()

    def _handle(self, conn: Any) -> None:
        pool = self.pool
        with pool._lock:
            pool._stats["clients"] += 1
        out: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        futures: dict[int, concurrent.futures.Future[Any]] = {}

        def sender() -> None:
            while True:
                item = out.get()
                if item is None:
                    return
                try:
                    conn.send(item)
                except (OSError, ValueError):
                    return
                except Exception as exc:  # an unpicklable exception or result
                    try:
                        conn.send(("err", item[1], RuntimeError(f"could not send the reply: {exc}")))
                    except Exception:
                        return

        def reply(rid: int, fut: concurrent.futures.Future[Any]) -> None:
            futures.pop(rid, None)
            if fut.cancelled():
                out.put(("err", rid, PoolClosed("cancelled: the encoder pool is closing")))
            elif fut.exception() is not None:
                out.put(("err", rid, _portable_exc(fut.exception())))  # type: ignore[arg-type]
            else:
                out.put(("ok", rid, fut.result()))

        send_thread = threading.Thread(target=sender, name="pgsieve-encoder-client-send", daemon=True)
        send_thread.start()
        try:
            out.put(("hello", pool.info))
            while True:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "encode":
                    _, rid, texts, kind = msg
                    try:
                        fut = pool.submit(texts, kind)  # blocks under backpressure: this client waits
                    except Exception as exc:
                        out.put(("err", rid, _portable_exc(exc)))
                        continue
                    futures[rid] = fut
                    fut.add_done_callback(lambda f, rid=rid: reply(rid, f))
                elif msg[0] == "stats":
                    out.put(("ok", msg[1], pool.stats()))
                elif msg[0] == "bye":
                    break
        finally:
            for fut in list(futures.values()):  # the client left: its work is no longer wanted
                fut.cancel()
            out.put(None)
            send_thread.join(timeout=5)
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        if self._stop:
            return
        self._stop = True
        try:  # wake accept(): connect and hang up
            family = socket.AF_UNIX if isinstance(self.address, str) else socket.AF_INET
            with socket.socket(family) as s:
                s.settimeout(1)
                s.connect(self.address)
        except OSError:
            pass
        self._thread.join(timeout=5)
        self.listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:  # each handler thread then sees EOF, cancels its client's work and closes
            _shutdown(c)
        if self._keyfile is not None:
            try:
                self._keyfile.unlink()
            except OSError:
                pass
        if self._tmpdir is not None:
            try:
                os.rmdir(self._tmpdir)
            except OSError:
                pass


class RemoteEncoder(_EncodeByKind):
    """Client of a pool served by :meth:`EncoderPool.serve` in another process; the same encoder interface.

    ``authkey`` defaults to the key file the server wrote next to a unix socket. Any number of processes (and
    threads) may use one server at once; each call is queued in the server's pool with everyone else's.
    """

    def __init__(self, address: Any, authkey: Optional[bytes] = None, timeout: Optional[float] = 60.0) -> None:
        if authkey is None:
            if not isinstance(address, str):
                raise ValueError("a TCP address needs an explicit authkey")
            authkey = bytes.fromhex(_key_path(address).read_text().strip())
        self.address = address
        self._conn = mpc.Client(address, authkey=authkey)
        if timeout is not None and not self._conn.poll(timeout):
            self._conn.close()
            raise TimeoutError(f"no hello from the encoder server at {address!r} within {timeout}s")
        tag, info = self._conn.recv()
        if tag != "hello":
            raise ConnectionError(f"unexpected first message {tag!r} from the encoder server")
        self.info: dict[str, Any] = dict(info)
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._futures: dict[int, concurrent.futures.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="pgsieve-remote-encoder", daemon=True)
        self._reader.start()

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def batch_size(self) -> int:
        return int(self.info.get("batch_size") or 1)

    @property
    def device(self) -> str:
        return str(self.info.get("device", ""))

    def _read(self) -> None:
        err: BaseException = PoolClosed("the encoder server closed the connection")
        try:
            while True:
                tag, rid, payload = self._conn.recv()
                with self._lock:
                    fut = self._futures.pop(rid, None)
                if fut is None:
                    continue
                try:
                    if tag == "ok":
                        fut.set_result(payload)
                    else:
                        fut.set_exception(payload if isinstance(payload, BaseException) else RuntimeError(payload))
                except concurrent.futures.InvalidStateError:
                    pass
        except (EOFError, OSError) as exc:
            if not self._closed:
                err = PoolClosed(f"lost the encoder server: {exc!r}")
        finally:
            with self._lock:
                pending = list(self._futures.values())
                self._futures.clear()
            for fut in pending:
                if not fut.done():
                    fut.set_exception(err)

    def _call(self, tag: str, *args: Any) -> concurrent.futures.Future:
        if self._closed:
            raise PoolClosed("the remote encoder is closed")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        rid = next(self._ids)
        with self._lock:
            self._futures[rid] = fut
        try:
            with self._send_lock:  # blocks while the server applies backpressure
                self._conn.send((tag, rid, *args))
        except (OSError, ValueError) as exc:
            with self._lock:
                self._futures.pop(rid, None)
            raise PoolClosed(f"lost the encoder server: {exc!r}") from exc
        return fut

    def submit(self, texts: Sequence[str], kind: str = "document") -> concurrent.futures.Future:
        return self._call("encode", check_texts(texts), _norm_kind(kind))

    def submit_documents(self, texts: Sequence[str]) -> concurrent.futures.Future:
        return self.submit(texts, "document")

    def submit_queries(self, texts: Sequence[str]) -> concurrent.futures.Future:
        return self.submit(texts, "query")

    def server_stats(self) -> dict[str, Any]:
        """The serving pool's :meth:`EncoderPool.stats`."""
        return self._call("stats").result(30)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with self._send_lock:
                self._conn.send(("bye",))
        except (OSError, ValueError):
            pass
        _shutdown(self._conn)
        self._reader.join(timeout=5)
        self._conn.close()

    def __enter__(self) -> "RemoteEncoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------------
# throughput: pool against the model called directly
# ----------------------------------------------------------------------------------------------------------------

def throughput_check(spec: Any, texts: Sequence[str], device: str = "cpu", *, workers: int = 1,
                     threads: Optional[int] = 1, kind: str = "document", rounds: int = 3,
                     batch_size: Optional[int] = None, **pool_options: Any) -> dict[str, Any]:
    """Texts/s of the encoder called directly in this process against the same encoder behind a pool.

    Both run on ``device`` with ``threads`` torch threads (CPU); the pool gets ``workers`` workers there
    (``workers=1`` is the like-for-like comparison the acceptance criterion names). Each side is warmed up once,
    then timed ``rounds`` times, alternating, and the best round counts (the machine may be busy).
    Returns ``{"direct_per_s", "pool_per_s", "ratio" (best round / best round), "ratio_median", "max_abs_diff",
    ...}``.
    """
    import torch

    spec = EncoderSpec.coerce(spec)
    texts = check_texts(texts)
    kind = _norm_kind(kind)
    old_threads = torch.get_num_threads()
    if threads and device.startswith("cpu"):
        torch.set_num_threads(threads)
    try:
        direct = spec.build(device, batch_size)
        fn = _method(direct, kind)
        assert fn is not None
        fn(texts[: max(1, len(texts) // 8)])  # warm-up
        opts = dict(pool_options)
        if batch_size is not None:
            opts.setdefault("max_batch_size", batch_size)
        with EncoderPool(spec, devices=[device], workers_per_device=workers, cpu_threads=threads,
                         **opts) as pool:
            pool.encode(texts[: max(1, len(texts) // 8)], kind)  # warm-up
            direct_s, pool_s = [], []
            ref = got = None
            for _ in range(rounds):
                t0 = time.perf_counter()
                ref = fn(texts)
                direct_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                got = pool.encode(texts, kind)
                pool_s.append(time.perf_counter() - t0)
            stats = pool.stats()
    finally:
        torch.set_num_threads(old_threads)
    diff = None
    if isinstance(ref, np.ndarray) and isinstance(got, np.ndarray):
        diff = float(np.abs(ref - got).max()) if ref.size else 0.0
    n = len(texts)
    return {"n": n, "device": device, "workers": workers, "threads": threads, "rounds": rounds,
            "direct_s": direct_s, "pool_s": pool_s, "direct_per_s": n / min(direct_s), "pool_per_s": n / min(pool_s),
            "ratio": min(direct_s) / min(pool_s),
            "ratio_median": float(np.median(direct_s) / np.median(pool_s)), "max_abs_diff": diff, "batches": stats["batches_done"],
            "token_counter": stats["token_counter"]}
