"""Encoding worker pool (pgsieve.workers), on CPU only: offload path, token batching, backpressure, crash
recovery without lost texts, several client processes, clean shutdown. No database, no GPU, no timing asserts.

Two kinds of worker encoder keep it fast on a small machine: ``workers_helpers.HashEncoder`` (no model, no torch:
workers start in well under a second) for the pool's mechanics, and pgsieve's DenseEncoder over a tiny random
BERT built here (``SlowDense`` adds a pause per batch, so a worker can be killed while a large encode is running)
for the real offload path, compared with the encoder called directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers_helpers, also for spawned processes

import workers_helpers as helpers  # noqa: E402

from pgsieve.workers import (  # noqa: E402
    EncoderInitError,
    EncoderPool,
    EncoderSpec,
    PoolBusy,
    PoolClosed,
    RemoteEncoder,
    WorkerCrashed,
    plan_batches,
    resolve_devices,
)

HASH = "workers_helpers:HashEncoder"
WORDS = ("open read write close fork exec signal pipe socket mmap file descriptor process thread buffer "
         "kernel page table inode directory").split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 24)))) for _ in range(n)]


def wait_for(cond, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_reaped(pids) -> None:
    """Each pid has exited and been reaped by us: no live process, no zombie."""
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        assert not any(p.pid == pid for p in multiprocessing.active_children())


# ---------------------------------------------------------------------------------------------------------------
# pure pieces
# ---------------------------------------------------------------------------------------------------------------

def test_plan_batches_respects_budgets_and_covers_every_text() -> None:
    rng = np.random.default_rng(3)
    lengths = [int(x) for x in rng.integers(1, 300, size=500)] + [5000]  # one text longer than the budget
    batches = plan_batches(lengths, max_tokens=2048, max_batch=64)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) <= 64
        assert len(b) == 1 or len(b) * longest <= 2048
        assert lengths[b[0]] == longest  # longest first within a batch
    assert [5000] == [lengths[i] for i in batches[0]]  # the oversized text alone
    assert flat == sorted(flat, key=lambda i: (-lengths[i], i))  # sorted by length: little padding
    assert plan_batches([], 10, 10) == []
    with pytest.raises(ValueError):
        plan_batches([1], 0, 1)


def test_spec_and_devices() -> None:
    spec = EncoderSpec.coerce((HASH, {"dim": 4}))
    enc = spec.build("cpu", 7)
    assert (enc.dim, enc.device, enc.batch_size) == (4, "cpu", 7)
    assert EncoderSpec.coerce(helpers.HashEncoder).build().dim == 8  # a callable works too
    with pytest.raises(TypeError):
        EncoderSpec.coerce(42)
    # a factory without device / batch_size parameters gets neither
    assert EncoderSpec("pgsieve.encoders.bm25:BM25Encoder").build("cuda:3", 64).dim > 1000
    assert resolve_devices("cpu") == ["cpu"]
    assert resolve_devices("cpu,cpu") == ["cpu", "cpu"]
    assert resolve_devices(["cuda:1", "cuda:0"]) == ["cuda:1", "cuda:0"]
    auto = resolve_devices("auto")
    assert auto == ["cpu"] or all(d.startswith("cuda:") for d in auto)


# ---------------------------------------------------------------------------------------------------------------
# mechanics, with the model-free encoder
# ---------------------------------------------------------------------------------------------------------------

def test_hash_pool_order_kinds_errors_async() -> None:
    texts = make_texts(200, seed=1)
    direct = helpers.HashEncoder(dim=8)
    with EncoderPool((HASH, {"dim": 8}), devices="cpu", workers_per_device=2, max_tokens_per_batch=40,
                     token_counter="chars") as pool:
        assert pool.dim == 8 and pool.device == "cpu" and len(pool.pids) == 2
        out = pool.encode_documents(texts)
        assert out.dtype == np.float32 and np.array_equal(out, direct.encode_documents(texts))
        assert np.array_equal(pool.encode_queries(texts[:5]), direct.encode_queries(texts[:5]))
        assert pool.encode([]).shape == (0, 8)
        many = make_texts(2500, seed=4)  # more than one planning slice (counted and sorted a slice at a time)
        assert pool.plan_slice < len(many)
        assert np.array_equal(pool.encode(many), direct.encode_documents(many))
        assert pool.stats()["batches_done"] > 10  # really split into many batches
        with pytest.raises(TypeError):
            pool.encode("a single string")
        with pytest.raises(ValueError):
            pool.encode(["x"], kind="passages?")
        # an encoder error fails that request only, with the worker's traceback attached; the pool goes on
        with pytest.raises(ValueError, match="refuses") as err:
            pool.encode(["fine", "__fail__"])
        assert "Traceback" in str(err.value.__cause__)
        assert np.array_equal(pool.encode(texts[:3]), direct.encode_documents(texts[:3]))
        # several threads at once
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda k: pool.encode(texts[k::4]), range(4)))
        for k in range(4):
            assert np.array_equal(outs[k], direct.encode_documents(texts[k::4]))
        # asyncio
        got = asyncio.run(pool.aencode(texts[:17], "query"))
        assert np.array_equal(got, direct.encode_queries(texts[:17]))
        assert pool.stats()["restarts"] == 0
    # encoders returning lists (sparse vectors) come back as lists, in input order
    sparse = helpers.HashEncoder(sparse=True)
    with EncoderPool((HASH, {"sparse": True}), devices="cpu", max_tokens_per_batch=40) as pool:
        got = pool.encode(texts[:30])
        assert isinstance(got, list) and len(got) == 30
        assert [v.to_list() for v in got] == [v.to_list() for v in sparse.encode_documents(texts[:30])]
        assert pool.encode([]) == []


def test_backpressure_bounds_pending_batches() -> None:
    with EncoderPool((HASH, {"delay": 0.2}), devices="cpu", max_batch_size=1, max_pending=2, prefetch=1) as pool:
        f1 = pool.submit(["a"])
        f2 = pool.submit(["b"])
        with pytest.raises(PoolBusy):  # two batches pending: no room within the timeout
            pool.submit(["c"], timeout=0.01)
        # a large request blocks its caller until the pool has room, batch by batch
        done = threading.Event()
        big: list = []
        t = threading.Thread(target=lambda: (big.append(pool.submit(make_texts(8))), done.set()))
        t.start()
        assert not done.wait(0.1)  # still blocked behind f1/f2
        assert f1.result(30) is not None and f2.result(30) is not None
        t.join(60)
        assert done.is_set()
        assert big[0].result(60).shape == (8, 8)
        st = pool.stats()
        assert st["max_in_use"] <= 2 and st["in_use"] == 0


def test_killed_worker_loses_no_text_single_worker() -> None:
    texts = make_texts(60, seed=2)
    with EncoderPool((HASH, {"delay": 0.03}), devices="cpu", max_batch_size=2, max_pending=100) as pool:
        old = pool.pids[0]
        fut = pool.submit(texts)
        wait_for(lambda: pool.stats()["batches_done"] >= 3, what="first batches")
        os.kill(old, signal.SIGKILL)
        out = fut.result(120)
        assert np.array_equal(out, helpers.HashEncoder().encode_documents(texts))
        st = pool.stats()
        assert st["restarts"] >= 1 and st["requeued"] >= 1 and st["worker_deaths"] >= 1
        assert pool.pids[0] != old
        assert_reaped([old])


def test_poison_and_hung_batches_fail_their_request_only() -> None:
    with EncoderPool(HASH, devices="cpu", max_attempts=2, batch_timeout=1.0, max_batch_size=1) as pool:
        bad = pool.submit(["__crash__"])  # os._exit in every worker that tries it
        hung = pool.submit(["__hang__"])  # never returns: killed after batch_timeout, like a crash
        good = pool.submit(["fine", "also fine"])
        with pytest.raises(WorkerCrashed):
            bad.result(120)
        with pytest.raises(WorkerCrashed):
            hung.result(120)
        assert good.result(120).shape == (2, 8)  # queued behind both, re-queued with them, never lost
        st = pool.stats()
        assert st["restarts"] >= 4 and st["worker_deaths"] >= 4
        pool.wait_ready(120)
        assert pool.encode(["still works"]).shape == (1, 8)


def test_init_error_is_reported_and_leaves_no_process() -> None:
    before = {p.pid for p in multiprocessing.active_children()}
    with pytest.raises(EncoderInitError, match="fail_init requested"):
        EncoderPool((HASH, {"fail_init": True}), devices="cpu", workers_per_device=2)
    with pytest.raises(EncoderInitError, match="No module named"):
        EncoderPool("no_such_module_xyz:Encoder", devices="cpu")
    assert {p.pid for p in multiprocessing.active_children()} <= before


def test_close_drains_or_cancels_and_reaps_workers() -> None:
    pool = EncoderPool((HASH, {"delay": 0.05}), devices="cpu", workers_per_device=2, max_batch_size=1,
                       max_pending=100)
    pids = list(pool.pids)
    fut = pool.submit(make_texts(10))
    pool.close()  # drain: the pending request completes first
    assert fut.result(0).shape == (10, 8)
    assert_reaped(pids)
    with pytest.raises(PoolClosed):
        pool.submit(["late"])
    pool.close()  # idempotent

    with EncoderPool((HASH, {"delay": 0.2}), devices="cpu", max_batch_size=1, max_pending=100) as pool:
        pids = list(pool.pids)
        fut = pool.submit(make_texts(50))
        pool.close(cancel=True)
        assert fut.cancelled() or isinstance(fut.exception(0), PoolClosed)
    assert_reaped(pids)


def test_ingest_pipeline_overlaps_with_pool_and_survives_a_kill() -> None:
    """ingest's batch generator queues the next batches in the pool and yields them in order (no database here;
    tests/test_ingest_search.py runs the same through ``ingest_passages`` into a table). A worker killed in the
    middle of the ingest loses no passage."""
    from types import SimpleNamespace

    from pgsieve.ingest import _encoded_batches, document_text

    passages = [SimpleNamespace(pid=f"p{i}", title=f"t{i}", text=t) for i, t in enumerate(make_texts(23, seed=5))]
    direct = helpers.HashEncoder()
    with EncoderPool((HASH, {"delay": 0.02}), devices="cpu", workers_per_device=2, max_batch_size=2) as pool:
        got = []
        for k, item in enumerate(_encoded_batches(passages, pool, None, 5, document_text, encode_ahead=2)):
            got.append(item)
            if k == 1:  # batches 3 and 4 are being encoded now
                os.kill(pool.pids[0], signal.SIGKILL)
        assert [len(c) for c, _ in got] == [5, 5, 5, 5, 3]
        assert [p.pid for c, _ in got for p in c] == [p.pid for p in passages]
        emb = np.concatenate([e for _, e in got])
        assert np.array_equal(emb, direct.encode_documents([document_text(p) for p in passages]))
        assert pool.stats()["worker_deaths"] == 1
        # a consumer that stops early leaves nothing queued behind
        gen = _encoded_batches(passages, pool, None, 5, document_text, encode_ahead=3)
        next(gen)
        gen.close()
        wait_for(lambda: pool.stats()["in_use"] == 0, what="queued batches dropped")


# ---------------------------------------------------------------------------------------------------------------
# the real offload path: DenseEncoder over a tiny random BERT
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dense_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from pgsieve.encoders.dense import default_model_path

    tok = AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True)
    torch.manual_seed(7)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    out = tmp_path_factory.mktemp("tiny_bert")
    BertModel(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def direct_dense(tiny_dense_dir: Path):
    import torch

    torch.set_num_threads(1)
    from pgsieve.encoders.dense import DenseEncoder

    return DenseEncoder(tiny_dense_dir, batch_size=16)


@pytest.fixture(scope="module")
def dense_pool(tiny_dense_dir: Path):
    spec = ("workers_helpers:SlowDense", {"model_path": str(tiny_dense_dir), "delay": 0.05})
    # wait=False: the workers load while the direct encoder is built; the first encode waits for them
    with EncoderPool(spec, devices="cpu", workers_per_device=2, max_tokens_per_batch=96, max_pending=64,
                     wait=False) as pool:
        yield pool


def test_dense_pool_matches_direct_encoder(dense_pool, direct_dense) -> None:
    texts = make_texts(40, seed=11)
    out = dense_pool.encode_documents(texts)
    ref = direct_dense.encode_documents(texts)
    assert out.shape == ref.shape == (40, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(dense_pool.encode_queries(texts[:4]), direct_dense.encode_queries(texts[:4]),
                               atol=1e-5, rtol=0)
    st = dense_pool.stats()
    assert st["token_counter"] == "tokenizer"  # batches cut by the model's own token counts
    assert st["batches_done"] >= 5


def test_dense_pool_survives_sigkill_mid_encode(dense_pool, direct_dense) -> None:
    """The acceptance test: SIGKILL a worker in the middle of a large encode; every document still arrives."""
    texts = make_texts(160, seed=12)
    ref = direct_dense.encode_documents(texts)
    dense_pool.wait_ready(180)  # both workers loaded (the fixture does not wait)
    before = dense_pool.stats()
    fut = dense_pool.submit(texts)
    wait_for(lambda: dense_pool.stats()["batches_done"] >= before["batches_done"] + 4, what="encode under way")
    busy = [w for w in dense_pool.stats()["workers"] if w["inflight"] and w["state"] == "ready"]
    assert busy and not fut.done()
    victim = busy[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    out = fut.result(180)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    st = dense_pool.stats()
    assert st["worker_deaths"] > before["worker_deaths"] and st["requeued"] > before["requeued"]
    assert st["restarts"] > before["restarts"]  # a replacement is starting (the single-worker test sees it work)
    assert victim not in dense_pool.pids
    assert_reaped([victim])


def test_two_client_processes_share_a_served_pool(dense_pool, direct_dense) -> None:
    address = dense_pool.serve()
    texts = make_texts(48, seed=13)
    jobs = [[texts[0:10], texts[10:24]], [texts[24:30], texts[30:48]]]
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    clients = [ctx.Process(target=helpers.remote_client, args=(address, job, barrier, queue)) for job in jobs]
    for c in clients:
        c.start()
    results = dict(queue.get(timeout=180) for _ in clients)  # pid -> arrays
    for c in clients:
        c.join(60)
        assert c.exitcode == 0
    assert set(results) == {c.pid for c in clients}
    got = np.concatenate([a for c in clients for a in results[c.pid]])
    np.testing.assert_allclose(got, direct_dense.encode_documents(texts), atol=1e-5, rtol=0)
    assert dense_pool.stats()["clients"] >= 2
    # a client in this process too, with the same interface as an encoder
    with RemoteEncoder(address) as remote:
        assert remote.dim == 32
        np.testing.assert_allclose(remote.encode_queries(texts[:3]), direct_dense.encode_queries(texts[:3]),
                                   atol=1e-5, rtol=0)
        with pytest.raises(TypeError):
            remote.encode("not a list")
    with pytest.raises(multiprocessing.AuthenticationError):
        RemoteEncoder(address, authkey=b"wrong key")


def test_standalone_server_module(tmp_path: Path) -> None:
    """``python -m pgsieve.workers_server`` serves a pool until SIGTERM, then drains and exits cleanly."""
    import json
    import subprocess

    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here.parent / "pyclient"), str(here),
                                                       os.environ.get("PYTHONPATH", "")]))
    address = str(tmp_path / "enc.sock")
    proc = subprocess.Popen([sys.executable, "-m", "pgsieve.workers_server", "--factory", HASH,
                             "--kwargs", '{"dim": 4}', "--devices", "cpu", "--workers-per-device", "2",
                             "--address", address], stdout=subprocess.PIPE, env=env, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert info["address"] == address and info["dim"] == 4 and len(info["pids"]) == 2
        texts = make_texts(9, seed=21)
        with RemoteEncoder(address) as remote:
            assert np.array_equal(remote.encode_documents(texts),
                                  helpers.HashEncoder(dim=4).encode_documents(texts))
            assert remote.server_stats()["clients"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not Path(address).exists() and not Path(address + ".key").exists()
        for pid in info["pids"]:  # the server's workers went with it
            wait_for(lambda pid=pid: not _alive(pid), 30, f"worker {pid} gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of another parent would still answer kill(0): look at its state
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
