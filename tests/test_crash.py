"""Crash/restart tests of the three index access methods, and proof that ``pgsieve_index_check`` finds corruption.

Every test here runs its own embedded server in its own data directory (``bench.reliability.CrashServer``; never
the session's shared server, which must not be crashed or stopped under the other tests).

* ``test_crash_cycles[am]``: ``PGSIEVE_CRASH_CYCLES`` (default 5) cycles per access method of the harness in
  ``bench/reliability.py`` — a backend builds the index / inserts / deletes and VACUUMs / updates / mixes in a
  loop, the server is crashed mid-way (``pg_ctl stop -m immediate`` or ``kill -9`` of the backend), restarted,
  and then ``pgsieve_index_check(index, true)`` must pass and count every row, committed rows must all be
  there, and the index's exact ordered scan of every row must equal the sequential scan.  The first five cycles
  cover the five operations, alternating the two crash modes.  ``python bench/reliability.py --cycles N`` runs
  the long version.
* ``test_verifier_detects_corruption[am]``: indexes are built, the server is stopped, bytes of the index files
  are changed on disk (meta fields, page kinds and counts, heap TIDs, document records, directory entries,
  posting lists, codes), the server is started again, and the verifier must raise ``index_corrupted`` naming
  the index and the damage — some damage only the heapallindexed pass can see (a dropped or flagged entry, a
  changed code or value, a duplicated TID), so those must pass the structural check and fail the full one.
  The cluster has data checksums (PostgreSQL 18's default), so the session reads the altered pages with
  ``ignore_checksum_failure = on``: the verifier, not the checksum, must be what catches them.
"""

from __future__ import annotations

import math
import os
import re
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import reliability as R  # noqa: E402

CYCLES = int(os.environ.get("PGSIEVE_CRASH_CYCLES", "5"))

BLCKSZ = 8192
CONTENTS = 24  # MAXALIGN(SizeOfPageHeaderData): where PageGetContents starts
SPECIAL = BLCKSZ - 8  # both AMs keep an 8-byte special space: kind (uint16), then count / unused
PAGE_BYTES = BLCKSZ - CONTENTS - 8  # sparse_block's stream bytes per page


# ---------------------------------------------------------------------------------------------------------------
# crash cycles


@pytest.mark.parametrize("am", list(R.WORKLOADS))
def test_crash_cycles(am: str, private_root: Path) -> None:
    h = R.Harness(R.WORKLOADS[am], private_root / f"cycles-{am}", seed=7)
    results: list[R.CycleResult] = []
    try:
        h.setup()
        for n in range(CYCLES):
            r = h.cycle(n, R.OPS[n % len(R.OPS)], R.CRASH_MODES[n % len(R.CRASH_MODES)])
            print(f"{am} #{n}: {r.op}/{r.crash} after {r.delay_s}s, {r.steps} steps, in flight "
                  f"{r.in_flight or '-'}: {r.rows} rows, verifier counted {r.heap_checked}, "
                  f"{'ok' if r.ok else r.failures}")
            results.append(r)
    finally:
        h.close()
    failures = [f"#{r.cycle} {r.op}/{r.crash}: {f}" for r in results for f in r.failures]
    assert not failures, "\n".join(failures)
    assert all(r.heap_checked == r.rows > 0 for r in results)
    # the crashes did interrupt work: statements were in flight, and the workload had made progress
    assert sum(bool(r.in_flight) for r in results) >= max(1, CYCLES // 2)
    assert all(r.steps > 0 for r in results)


# ---------------------------------------------------------------------------------------------------------------
# corrupting index files on disk


class RelFile:
    """An index's main fork, read while the server is stopped; patched in memory, then written back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = bytearray(path.read_bytes())
        assert len(self.data) % BLCKSZ == 0 and len(self.data) < 1 << 30

    @property
    def nblocks(self) -> int:
        return len(self.data) // BLCKSZ

    def get(self, fmt: str, blk: int, off: int) -> int | float:
        return struct.unpack_from("<" + fmt, self.data, blk * BLCKSZ + off)[0]

    def put(self, fmt: str, blk: int, off: int, value: int | float) -> None:
        struct.pack_into("<" + fmt, self.data, blk * BLCKSZ + off, value)

    def raw(self, blk: int, off: int, n: int) -> bytes:
        return bytes(self.data[blk * BLCKSZ + off: blk * BLCKSZ + off + n])

    def put_raw(self, blk: int, off: int, b: bytes) -> None:
        self.data[blk * BLCKSZ + off: blk * BLCKSZ + off + len(b)] = b

    def kind(self, blk: int) -> int:
        return int(self.get("H", blk, SPECIAL))

    def save(self) -> None:
        self.path.write_bytes(bytes(self.data))


# binary_scan / multivec_fde: the meta page (block 0) holds magic, version, then BscanParams
BS_PARAM = {"kind": 32, "metric": 36, "quantizer": 40, "dims": 44, "codeBytes": 48, "capacity": 52,
            "thresholdPages": 56, "insertPage": 60, "nullPage": 64, "tokenDim": 68, "fdeReps": 72}
BS_DATA, BS_NULLS, BS_TOKENS = 3, 4, 5


def bs_meta(f: RelFile) -> dict[str, int]:
    return {k: int(f.get("i" if k != "insertPage" and k != "nullPage" else "I", 0, off))
            for k, off in BS_PARAM.items()}


def bs_page(f: RelFile, kind: int) -> int:
    """The first page of that kind holding entries."""
    for b in range(1, f.nblocks):
        if f.kind(b) == kind and f.get("H", b, SPECIAL + 2) > 0:
            return b
    raise AssertionError(f"no page of kind {kind}")


def bs_tids_at(m: dict[str, int]) -> int:
    return CONTENTS + m["capacity"] * m["codeBytes"]


def bs_tokptrs_at(m: dict[str, int]) -> int:
    """Where a data page's token pointers (block, offset: two uint32 per entry) start: after the TIDs, 4-aligned."""
    end = bs_tids_at(m) + 6 * m["capacity"]
    return (end + 3) // 4 * 4


def bs_set_count(f: RelFile, b: int, count: int, fix_lower: bool) -> None:
    old = int(f.get("H", b, SPECIAL + 2))
    f.put("H", b, SPECIAL + 2, count)
    if fix_lower:
        f.put("H", b, 12, int(f.get("H", b, 12)) - 6 * (old - count))  # pd_lower


def bs_copy_tid(f: RelFile, b: int, m: dict[str, int], src: int, dst: int) -> None:
    at = bs_tids_at(m)
    f.put_raw(b, at + 6 * dst, f.raw(b, at + 6 * src, 6))


# sparse_block: the meta page holds magic, version, dim, ndocs, nterms, tailDocs, then four (start, bytes) streams
SB_STREAMS = {"forward": 48, "postings": 64, "directory": 80, "tail": 96, "compact": 136}


def sb_stream(f: RelFile, name: str) -> tuple[int, int]:
    off = SB_STREAMS[name]
    return int(f.get("I", 0, off)), int(f.get("Q", 0, off + 8))


def sb_pos(f: RelFile, stream: str, offset: int) -> tuple[int, int]:
    start, _ = sb_stream(f, stream)
    return start + offset // PAGE_BYTES, CONTENTS + offset % PAGE_BYTES


def sb_doc(f: RelFile, stream: str, ordinal_wanted: int) -> tuple[int, int, int]:
    """(block, page offset, nnz) of the first live record with at least two non-zeros, walking as the AM does."""
    start, nbytes = sb_stream(f, stream)
    offset = 0
    while offset < nbytes:
        offset = (offset + 7) & ~7
        if PAGE_BYTES - offset % PAGE_BYTES < 16:
            offset += PAGE_BYTES - offset % PAGE_BYTES
        blk, pos = sb_pos(f, stream, offset)
        flags, ordinal, nnz = f.get("B", blk, pos + 6), f.get("I", blk, pos + 8), f.get("I", blk, pos + 12)
        if flags & 4:  # PAD
            offset += PAGE_BYTES - offset % PAGE_BYTES
            continue
        if ordinal >= ordinal_wanted and nnz >= 2 and flags == 0 and pos + 16 + 8 * nnz <= BLCKSZ - 8:
            return blk, pos, int(nnz)
        offset += 16 + 8 * int(nnz)
    raise AssertionError("no suitable record")


def sb_list0(f: RelFile) -> tuple[int, int, dict[str, int]]:
    """(block, page offset) of the first posting list's header, and its counts."""
    dblk, dpos = sb_pos(f, "directory", 0)
    offset = int(f.get("Q", dblk, dpos + 8))
    blk, pos = sb_pos(f, "postings", offset)
    h = {k: int(f.get("I", blk, pos + 4 * i)) for i, k in enumerate(("nblocks", "npostings", "ncomps", "nentries"))}
    return blk, pos, h


@dataclass(frozen=True)
class Damage:
    name: str
    patch: Callable[[RelFile], None]
    structural: str | None  # regex the plain check must raise with, or None: it passes
    full: str  # regex the heapallindexed check must raise with


def _bump(f: RelFile, fmt: str, blk: int, off: int, delta: int | float) -> None:
    f.put(fmt, blk, off, f.get(fmt, blk, off) + delta)


BINARY_DAMAGE = [
    Damage("magic", lambda f: _bump(f, "I", 0, 24, 1), r"at block 0: meta page magic", r"meta page magic"),
    Damage("dims", lambda f: f.put("i", 0, BS_PARAM["dims"], 21), r"21 dimensions, the column's typmod 20",
           r"typmod"),
    Damage("insert_page", lambda f: f.put("I", 0, BS_PARAM["insertPage"], f.nblocks + 5),
           r"insert page \d+ is not a data page", r"insert page"),
    Damage("stats_nan", lambda f: f.put("f", 1, CONTENTS, math.nan), r"at block 1: threshold of dimension 0 is NaN",
           r"threshold"),
    Damage("page_kind", lambda f: f.put("H", bs_page(f, BS_DATA), SPECIAL, 9), r"page of kind 9 among the data pages",
           r"kind 9"),
    Damage("count_over", lambda f: f.put("H", bs_page(f, BS_DATA), SPECIAL + 2, 907),
           r"holds 907 entries, its capacity is 906", r"capacity"),
    Damage("count_lower", lambda f: bs_set_count(f, bs_page(f, BS_DATA), 100, False),
           r"data page pd_lower \d+ does not end its 100 entries", r"pd_lower"),
    Damage("null_lower", lambda f: bs_set_count(f, bs_page(f, BS_NULLS), 1, False),
           r"null page pd_lower \d+ does not end its 1 entries", r"pd_lower"),
    Damage("tid", lambda f: f.put("H", bs_page(f, BS_DATA), bs_tids_at(bs_meta(f)) + 4, 0),
           r"entry 0 has invalid heap TID \(\d+,0\)", r"invalid heap TID"),
    Damage("pad_bits", lambda f: f.put("B", bs_page(f, BS_DATA), CONTENTS + 2, f.get("B", bs_page(f, BS_DATA),
                                                                                      CONTENTS + 2) | 1),
           r"entry 0 has code bits set beyond its 20 dimensions", r"beyond"),
    # only the heap pass can see these: the pages are well-formed
    Damage("dropped_entry", lambda f: bs_set_count(f, bs_page(f, BS_DATA), 900, True),
           None, r"heap tuple \(\d+,\d+\) of table \"bs\" has no entry in binary_scan index \"bs_dropped_entry\""),
    Damage("code_flip", lambda f: f.put("B", bs_page(f, BS_DATA), CONTENTS, f.get("B", bs_page(f, BS_DATA),
                                                                                   CONTENTS) ^ 0x80),
           None, r"at block \d+: entry 0 for heap tuple \(\d+,\d+\) does not match the row's current value"),
    Damage("dup_tid", lambda f: bs_copy_tid(f, bs_page(f, BS_DATA), bs_meta(f), 0, 1),
           None, r"heap tuple \(\d+,\d+\) has two live entries"),
]


def _sb_swap_indices(f: RelFile) -> None:
    blk, pos, _ = sb_doc(f, "forward", 0)
    a, b = f.raw(blk, pos + 16, 4), f.raw(blk, pos + 20, 4)
    f.put_raw(blk, pos + 16, b)
    f.put_raw(blk, pos + 20, a)


def _sb_value(f: RelFile, stream: str, new: Callable[[float], float]) -> None:
    blk, pos, nnz = sb_doc(f, stream, 0)
    f.put("f", blk, pos + 16 + 4 * nnz, new(float(f.get("f", blk, pos + 16 + 4 * nnz))))


def _sb_record(f: RelFile, stream: str, off: int, fmt: str, value: Callable[[int], int]) -> None:
    blk, pos, _ = sb_doc(f, stream, 0)
    f.put(fmt, blk, pos + off, value(int(f.get(fmt, blk, pos + off))))


def _sb_dir(f: RelFile, entry: int, off: int, value: Callable[[RelFile], int], fmt: str = "I") -> None:
    blk, pos = sb_pos(f, "directory", 16 * entry)
    f.put(fmt, blk, pos + off, value(f))


def _sb_posting_offset(f: RelFile) -> None:
    blk, pos, h = sb_list0(f)
    at = pos + 16 + 16 * h["nblocks"] + 4 * h["ncomps"] + 4 * (h["ncomps"] + 1) + 4 * h["nentries"]
    assert at + 8 <= BLCKSZ - 8, "the first list spans pages: make the test table's lists shorter"
    _bump(f, "I", blk, at + 4, 1)


def _sb_compact_value(f: RelFile) -> None:
    """Flip a bit of the first compact record's first float16 value (its header is 8 bytes)."""
    blk, pos = sb_pos(f, "compact", 0)
    nnz = int(f.get("H", blk, pos + 4))
    assert nnz >= 1 and pos + 8 + 4 * nnz <= BLCKSZ - 8
    at = pos + 8 + 2 * nnz
    f.put("H", blk, at, int(f.get("H", blk, at)) ^ 0x0100)


def _sb_tid_dup(f: RelFile) -> None:
    blk, pos, _ = sb_doc(f, "forward", 0)
    blk2, pos2, _ = sb_doc(f, "forward", int(f.get("I", blk, pos + 8)) + 1)
    f.put_raw(blk2, pos2, f.raw(blk, pos, 6))


SPARSE_DAMAGE = [
    Damage("magic", lambda f: _bump(f, "I", 0, 24, 1), r"at block 0: meta page magic", r"magic"),
    Damage("streams", lambda f: _bump(f, "I", 0, SB_STREAMS["postings"], 1), r"do not lie back to back",
           r"back to back"),
    Damage("tail_len", lambda f: _bump(f, "Q", 0, SB_STREAMS["tail"] + 8, 8),
           r"the tail has \d+ bytes, its records end at", r"tail"),
    Damage("ordinal", lambda f: _sb_record(f, "forward", 8, "I", lambda v: v + 5),
           r"record \d+ of the forward stream has ordinal \d+", r"ordinal"),
    Damage("flags", lambda f: _sb_record(f, "forward", 6, "B", lambda v: v | 0x40),
           r"of the forward stream has unknown flags 0x40", r"unknown flags"),
    Damage("nnz", lambda f: _sb_record(f, "forward", 12, "I", lambda v: 60000), r"has 60000 non-zeros", r"non-zeros"),
    Damage("index_order", _sb_swap_indices, r"index \d+ at position 1 is out of order or range", r"out of order"),
    Damage("neg_value", lambda f: _sb_value(f, "forward", lambda v: -1.0),
           r"value -1 at position 0 is not finite and non-negative", r"non-negative"),
    Damage("tail_pad", lambda f: _sb_record(f, "tail", 6, "B", lambda v: 4), r"bad PAD record .* in the tail",
           r"PAD"),
    Damage("dir_term", lambda f: _sb_dir(f, 1, 0, lambda g: int(g.get("I", *sb_pos(g, "directory", 0)))),
           r"directory entry 1: term \d+ is out of order", r"directory entry 1"),
    Damage("dir_offset", lambda f: _sb_dir(f, 1, 8, lambda g: int(g.get("Q", sb_pos(g, "directory", 16)[0],
                                                                        sb_pos(g, "directory", 16)[1] + 8)) + 8,
                                           "Q"),
           r"directory entry 1: list of term \d+ at byte", r"directory entry 1"),
    Damage("list_header", lambda f: _bump(f, "I", sb_list0(f)[0], sb_list0(f)[1], 1),
           r"list of term \d+: its layout ends at byte", r"layout"),
    Damage("posting_offset", _sb_posting_offset, r"posting of document \d+ points at byte \d+ of the compact stream",
           r"points at byte"),
    Damage("compact_value", _sb_compact_value, r"compact record of document 0 \(byte 0\) does not encode its forward record",
           r"does not encode"),
    Damage("compact_streams", lambda f: _bump(f, "I", 0, SB_STREAMS["compact"], 1), r"do not lie back to back",
           r"back to back"),
    # only the heap pass can see these
    Damage("flagged_deleted", lambda f: _sb_record(f, "forward", 6, "B", lambda v: v | 1),
           None, r"heap tuple \(\d+,\d+\) of table \"sp\" has no entry in sparse_block index \"sp_flagged_deleted\""),
    # a forward value no longer matches its compact copy
    Damage("value_change", lambda f: _sb_value(f, "forward", lambda v: v * 2),
           r"compact record of document \d+ \(byte \d+\) does not encode its forward record", r"does not encode"),
    Damage("tail_value", lambda f: _sb_value(f, "tail", lambda v: v + 0.5),
           None, r"does not match the row's current value"),
    Damage("dup_tid", _sb_tid_dup, None, r"has two live entries"),
]

MULTIVEC_DAMAGE = [
    Damage("fde_params", lambda f: f.put("i", 0, BS_PARAM["fdeReps"], 5),
           r"FDE parameters give 80 dimensions, the meta page says 64", r"FDE parameters"),
    Damage("token_dim", lambda f: f.put("i", 0, BS_PARAM["tokenDim"], 9), r"token dimensions 9, the column's 8",
           r"token dimensions"),
    Damage("code_flip", lambda f: f.put("B", bs_page(f, BS_DATA), CONTENTS + 3, f.get("B", bs_page(f, BS_DATA),
                                                                                       CONTENTS + 3) ^ 0x10),
           None, r"does not match the row's current value"),
    Damage("dropped_null", lambda f: bs_set_count(f, bs_page(f, BS_NULLS), int(f.get("H", bs_page(f, BS_NULLS),
                                                                                      SPECIAL + 2)) - 1, True),
           None, r"has no entry in multivec_fde index"),
    # store_tokens: a data entry's pointer to its value, the value's bytes, a token page's length
    Damage("token_pointer", lambda f: f.put("I", bs_page(f, BS_DATA), bs_tokptrs_at(bs_meta(f)) + 4, 12),
           r"damaged token page \d+: a token pointer has a bad offset", r"a token pointer has a bad offset"),
    Damage("token_value", lambda f: f.put("B", bs_page(f, BS_TOKENS), CONTENTS + 20,
                                          f.get("B", bs_page(f, BS_TOKENS), CONTENTS + 20) ^ 0x40),
           None, r"does not match the row's current value"),
    Damage("token_length", lambda f: f.put("H", bs_page(f, BS_TOKENS), 12, CONTENTS + 2),
           r"damaged token page \d+: not a token page, or shorter than a value on it", r"shorter than a value"),
    # with token pages the data pages form a chain from the meta page's insert page: point it at a token page
    Damage("data_chain", lambda f: f.put("I", bs_meta(f)["insertPage"], SPECIAL + 4, bs_page(f, BS_TOKENS)),
           r"in the chain of data pages is not one", r"in the chain of data pages is not one"),
]


@dataclass(frozen=True)
class CorruptionCase:
    am: str
    table: str
    setup: tuple[str, ...]
    index_def: str
    after_build: tuple[str, ...]
    damage: list[Damage]


CORRUPTION_CASES = [
    CorruptionCase(
        am="binary_scan", table="bs",
        setup=("CREATE TABLE bs (id int PRIMARY KEY, emb vector(20))",
               "INSERT INTO bs SELECT i, CASE WHEN i % 20 = 0 THEN NULL ELSE (SELECT array_agg(random() - 0.5)::vector(20)"
               " FROM generate_series(1, 20) WHERE i > 0) END FROM generate_series(1, 2000) i"),
        index_def="binary_scan (emb vector_l2_ops)",
        after_build=(),
        damage=BINARY_DAMAGE),
    CorruptionCase(
        am="sparse_block", table="sp",
        setup=("CREATE TABLE sp (id int PRIMARY KEY, emb sparsevec(300))",
               "INSERT INTO sp SELECT i, CASE WHEN i % 25 = 0 THEN NULL ELSE (SELECT ('{' || string_agg(t || ':' || "
               "round((random() + 0.01)::numeric, 3), ',') || '}/300') FROM (SELECT DISTINCT (1 + floor(300 * "
               "random() ^ 2))::int AS t FROM generate_series(1, 3 + i % 12) WHERE i > 0) x)::sparsevec END "
               "FROM generate_series(1, 600) i"),
        # short lists (the first list's postings lie on its first page) and several blocks per list
        index_def="sparse_block (emb) WITH (n_postings = 40, centroid_fraction = 0.2)",
        after_build=("INSERT INTO sp SELECT 1000 + i, ('{' || (1 + i) || ':1.5,' || (100 + i) || ':0.25}/300')::sparsevec"
                     " FROM generate_series(1, 30) i",),
        damage=SPARSE_DAMAGE),
    CorruptionCase(
        am="multivec_fde", table="mv",
        setup=("CREATE TABLE mv (id int PRIMARY KEY, emb multivec(8))",
               "INSERT INTO mv SELECT i, CASE WHEN i % 10 = 0 THEN NULL ELSE (SELECT ('[' || string_agg('[' || "
               "(SELECT string_agg(round((random() - 0.5)::numeric, 3)::text, ',') FROM generate_series(1, 8) "
               "WHERE t > 0) || ']', ',') || ']') FROM generate_series(1, 2 + i % 5) t)::multivec END "
               "FROM generate_series(1, 400) i"),
        index_def="multivec_fde (emb) WITH (reps = 4, ksim = 2, dproj = 4)",
        after_build=(),
        damage=MULTIVEC_DAMAGE),
]


def _expect_corrupt(conn: psycopg.Connection, index: str, heapallindexed: bool, pattern: str) -> str:
    with pytest.raises(psycopg.errors.IndexCorrupted) as exc:
        conn.execute("SELECT pgsieve_index_check(%s, %s)", (index, heapallindexed))
    msg = str(exc.value)
    assert f'"{index}"' in msg, msg
    assert re.search(pattern, msg), f"{index} (heapallindexed={heapallindexed}): {msg!r} does not match {pattern!r}"
    return msg


@pytest.mark.parametrize("case", CORRUPTION_CASES, ids=[c.am for c in CORRUPTION_CASES])
def test_verifier_detects_corruption(case: CorruptionCase, private_root: Path) -> None:
    server = R.CrashServer(private_root / f"corrupt-{case.am}")
    server.init()
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as c:
            c.execute("CREATE DATABASE corrupt")
        url = server.url("corrupt")
        names = ["clean"] + [d.name for d in case.damage]
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE EXTENSION vector")
            c.execute("CREATE EXTENSION pgsieve")
            for s in case.setup:
                c.execute(s)
            for n in names:
                c.execute(f"CREATE INDEX {case.table}_{n} ON {case.table} USING {case.index_def}")
            for s in case.after_build:
                c.execute(s)
            for n in names:
                c.execute("SELECT pgsieve_index_check(%s, true)", (f"{case.table}_{n}",))
            paths = {n: server.relation_path(c, f"{case.table}_{n}") for n in names}
        server.stop("fast")
        for d in case.damage:
            f = RelFile(paths[d.name])
            before = bytes(f.data)
            d.patch(f)
            assert bytes(f.data) != before, d.name
            f.save()
        server.start()

        with psycopg.connect(url, autocommit=True) as c:
            c.execute("SET ignore_checksum_failure = on")  # the pages' checksums no longer match: read them anyway
            c.execute(f"SELECT pgsieve_index_check('{case.table}_clean', true)")
            seen = []
            for d in case.damage:
                index = f"{case.table}_{d.name}"
                if d.structural is None:
                    c.execute("SELECT pgsieve_index_check(%s, false)", (index,))
                else:
                    seen.append(_expect_corrupt(c, index, False, d.structural))
                seen.append(_expect_corrupt(c, index, True, d.full))
            print("\n".join(seen))
            # REINDEX repairs each of them
            for d in case.damage:
                c.execute(f"REINDEX INDEX {case.table}_{d.name}")
                c.execute("SELECT pgsieve_index_check(%s, true)", (f"{case.table}_{d.name}",))
    finally:
        server.destroy()
