"""The fast executor's static analysis, done once per program: who reads what, and a safe batch order.

A batch of n vectors runs as two steps: all n reads, then all n commits. The exact executor
interleaves every vector's actions in `timeline.action_order`; running the actions of a batch together
gives the same bits if every pair of actions touching the same state keeps its order. So:

- stream registers and ALU latches are resolved statically: every read of a byte plane (or a latch)
  sees the latest commit on its characteristic line (or latch) by action order, found here once, as
  `ChipState` would find it; C2C receives pair with sends in order. Values are immutable arrays, so
  these give plain data edges.
- state kept in `ChipState` (SRAM addresses, MXM weight buffer, installed weights, activation buffers,
  accumulators, configuration) gives edges per location: read after write, write after read, write
  after write. GATHER and SCATTER, addressed by data, count as touching every address of their slice.

Steps and edges form a graph. If it has a cycle (vectors of a batch depend on each other, or two
batches interleave on some state), the batches of each strongly connected component are split into
single vectors, whose steps are ordered by action order and so form no cycle. A topological order is
the schedule.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.isa import CONFIG_KEYS
from openlpu.chip.operands import EAST
from openlpu.chip.program import Program
from openlpu.sim.batches import Batch, batches
from openlpu.sim.fetch import (
    Resolution,
    make_latch_fetch,
    make_link_fetch,
    make_stream_fetch,
    whole_stream_fetches,
)
from openlpu.sim.ordering import on_cycles, topological_order
from openlpu.sim.state import ChipState

READ, COMMIT = 0, 1  # the two steps of a batch (a node of the graph is chunk * 2 + step)
BOTH = 2  # a step that runs a chunk's read and then its commit: see _fuse


class Issue:
    """What the ISA's read and commit functions see: operands and cycles of one vector, or of a batch."""

    __slots__ = ("op", "args", "slice", "unit", "queue", "cycle", "rcycle", "wcycle")

    def __init__(self, b: Batch, args: dict, cycle):
        self.op, self.args, self.slice, self.unit, self.queue = b.op, args, b.slice, b.unit, b.queue
        self.cycle, self.rcycle, self.wcycle = cycle, cycle + b.op.d_skew, cycle + b.op.d_func


@dataclass
class Chunk:
    """Vectors lo..hi-1 of a batch, run as one read step and one commit step."""

    batch: Batch
    lo: int
    hi: int
    fetches: list  # one per input of the batch
    link: object = None  # RECEIVE: the fetch of the vectors sent

    @property
    def whole(self) -> bool:
        return self.lo == 0 and self.hi == self.batch.n

    def issue(self) -> Issue:
        b = self.batch
        args = b.args(self.lo, self.hi)
        addr = args.get("addr")
        if isinstance(addr, np.ndarray) and len(addr) and addr[-1] - addr[0] == len(addr) - 1:
            args = {**args, "addr": slice(int(addr[0]), int(addr[-1]) + 1)}  # rows copied once, not twice
        return Issue(b, args, b.cycles(self.lo, self.hi))

    def vector_issues(self) -> list[Issue]:
        b = self.batch
        cycles = b.cycles(self.lo, self.hi).tolist()
        return [Issue(b, b.vector_args(j), c) for j, c in zip(range(self.lo, self.hi), cycles, strict=True)]


@dataclass
class Plan:
    batches: list[Batch]
    chunks: list[Chunk]
    steps: list[tuple[int, int]]  # (chunk, READ | COMMIT | BOTH) in execution order
    release: list[list[int]]  # after step k, the batches whose values nobody reads any more
    vectors: int
    cycles: int
    busy: dict[str, int]
    error: object = None  # a UserError the exact executor would raise first, or None
    verified: bool = False
    compiled: list | None = None  # the steps as functions, made by the executor on first use
    memory: object = None  # the SRAM kept between runs (openlpu.sim.memory.Memory), made on first use
    fold: object = None  # what later runs skip (openlpu.sim.fold.Fold); False: never for this program


class _Events:
    """Accesses as parallel arrays: location, action key, write?, vector, output/input index, byte plane.

    Recorded as one row per batch (its n vectors at once) and expanded to one per vector in numpy at the
    end. A read's key is its vector's read key, a write's its commit key."""

    def __init__(self):
        # (loc, per vector?, stream?, direction, stream, position, write, v0, n, grp, plane)
        self.rows: list[tuple] = []
        self.per_vector: list[np.ndarray] = []  # the locations of rows that give one per vector, in order
        self.size = 0

    def add(self, loc, write: bool, b: Batch, grp: int = -1, plane: int = 0) -> int:
        """`loc` is one location for all vectors of batch `b` or an array of one per vector."""
        per_vector = np.ndim(loc) > 0
        if per_vector:
            self.per_vector.append(loc)
        return self._row((0 if per_vector else loc, per_vector, False, 0, 0, 0, write, b.v0, b.n, grp, plane))

    def add_stream(self, kind: str, index: int, write: bool, b: Batch, grp: int, plane: int) -> int:
        """A stream register on the characteristic line through `b`'s slice at each vector's read (or commit) cycle."""
        return self._row((0, False, True, 0 if kind == EAST else 1, index, b.pos, write, b.v0, b.n, grp, plane))

    def _row(self, row: tuple) -> int:
        self.rows.append(row)
        start, self.size = self.size, self.size + row[8]
        return start

    def arrays(self, vs: _Vectors, locs: _Locs) -> list[np.ndarray]:
        if not self.rows:
            return [np.zeros(0, np.int64) for _ in range(6)]
        r = np.array(self.rows, np.int64).T.copy()  # contiguous columns: repeat is slow on strided ones
        n = r[8]
        # a column per event only where every event needs it (tens of millions of events: the expansion is
        # most of this function's time); the stream's direction, index and position for the stream rows alone
        loc, grp, plane = (np.repeat(r[i], n) for i in (0, 9, 10))
        write, per_vector, stream = (np.repeat(r[i].astype(bool), n) for i in (6, 1, 2))
        vec = np.repeat(r[7] - (np.cumsum(n) - n), n) + np.arange(self.size)
        if self.per_vector:
            loc[per_vector] = np.concatenate(self.per_vector)
        streams = r[2].astype(bool)
        cycles = np.where(write, vs.wc[vec], vs.rc[vec])[stream]
        direction, index, position = (np.repeat(r[i][streams], n[streams]) for i in (3, 4, 5))
        loc[stream] = locs.stream(direction, index, position, cycles)
        return [loc, np.where(write, vs.kc[vec], vs.kr[vec]), write, vec, grp, plane]


class _Locs:
    """Integer codes of state locations. Streams: one per (direction, stream, characteristic line)."""

    def __init__(self, program: Program, bs: list[Batch], vs: _Vectors):
        chip = program.chip
        self.dynamic = {b.slice for b in bs if b.op.name in ("GATHER", "SCATTER")}  # addressed by data
        # the rows READs and WRITEs of those slices touch: a GATHER or SCATTER touches them too
        rows: dict[str, set] = {s: set() for s in self.dynamic}
        for b in bs:
            if b.op.name in ("READ", "WRITE") and b.slice in self.dynamic:
                rows[b.slice].update(np.atleast_1d(b.args(0, b.n)["addr"]).tolist())
        self.touched = {s: sorted(r) for s, r in rows.items()}
        latches = max([chip.vxm_alus_per_lane] + [r.index + 1 for b in bs for r, _ in b.ins if r.kind == "alu"])
        cmin = int(min(vs.rc.min(), vs.wc.min()))
        cmax = int(max(vs.rc.max(), vs.wc.max()))
        self.chip = chip
        self.S = chip.streams_per_direction
        positions = len(chip.floorplan)
        self.line_off = max(cmax, -cmin, 0)
        stream_locs = (positions + 2 * self.line_off + 1) * 2 * self.S
        self.latch0 = stream_locs
        self.mem0 = self.latch0 + latches
        self.slice_index = {s: i for i, s in enumerate(chip.floorplan)}
        self.A = chip.mem_addresses
        self.buf0 = self.mem0 + positions * (self.A + 1)
        self.kernel0 = self.buf0 + chip.mxm_planes + 1  # + 1: IW fp16 on the last plane reads one more
        self.act0 = self.kernel0 + chip.mxm_planes
        self.acc0 = self.act0 + chip.mxm_planes * chip.mxm_act_buffers
        self.config0 = self.acc0 + chip.mxm_planes * 2 * chip.mxm_acc_slots

    def stream(self, d: np.ndarray, index: np.ndarray, pos: np.ndarray, cycles: np.ndarray) -> np.ndarray:
        """Stream locations for arrays of directions (0: east), streams, positions and cycles."""
        line = np.where(d == 0, pos - cycles, pos + cycles)
        return ((line + self.line_off) * 2 + d) * self.S + index

    def latch(self, unit: int) -> int:
        return self.latch0 + unit

    def mem(self, slice_: str, addr) -> np.ndarray:
        base = self.mem0 + self.slice_index[slice_] * (self.A + 1)
        return base + (self.A if addr is None else np.asarray(addr))

    def buf(self, plane: int) -> int:
        return self.buf0 + plane

    def kernel(self, plane: int) -> int:
        return self.kernel0 + plane

    def act(self, plane: int, index) -> np.ndarray:
        return self.act0 + plane * self.chip.mxm_act_buffers + np.asarray(index)

    def acc(self, plane: int, dtype: str, slot) -> np.ndarray:
        return self.acc0 + (plane * 2 + (dtype == "fp16")) * self.chip.mxm_acc_slots + np.asarray(slot)

    def config(self, key: str) -> int:
        return self.config0 + list(CONFIG_KEYS).index(key)


# ---- which ChipState locations each instruction touches: [(write?, location(s))]; reads at its read
# cycle, writes at its commit. Streams and latches come from the ISA's `io`, links from the pairing of
# sends and receives. Every instruction of the ISA has an entry (tests check it).
def _none(b, a, L):
    return []


def _mem_rw(b, a, L):
    return [(b.op.name == "WRITE", L.mem(b.slice, a["addr"]))]


def _mem_dynamic(b, a, L):
    """All of the slice: one location for it, and one per row that READs and WRITEs touch."""
    write = b.op.name == "SCATTER"
    return [(write, L.mem(b.slice, None))] + [(write, loc) for loc in L.mem(b.slice, L.touched[b.slice]).tolist()]


def _iw(b, a, L):
    planes = (b.unit, b.unit + 1) if a["dtype"] == "fp16" else (b.unit,)
    return [(False, L.buf(p)) for p in planes] + [(True, L.kernel(b.unit))]


def _acc(b, a, L):
    out = [(False, L.kernel(b.unit)), (True, L.acc(b.unit, a["dtype"], a["slot"]))]
    if a["src"].kind == "b":
        out.append((False, L.act(b.unit, a["src"].index)))
    return out


STATE_ACCESS = {
    "READ": _mem_rw, "WRITE": _mem_rw, "GATHER": _mem_dynamic, "SCATTER": _mem_dynamic,
    "LW": lambda b, a, L: [(True, L.buf(b.unit))],
    "IW": _iw,
    "ABC": lambda b, a, L: [(True, L.act(b.unit, a["buf"].index))],
    "ACC": _acc,
    "CONFIG": lambda b, a, L: [(True, L.config(a["key"]))],
    "CAST": lambda b, a, L: [(False, L.config("vxm.round"))],
    **{name: _none for name in (
        "ADD", "ADD.SAT", "SUB", "SUB.SAT", "MUL", "MUL.SAT", "MAX", "MIN", "NEG", "NEG.SAT", "ABS", "ABS.SAT",
        "RELU", "MOV", "EXP", "TANH", "RSQRT", "SHIFT", "PERMUTE", "DISTRIBUTE", "ROTATE", "TRANSPOSE",
        "SEND", "RECEIVE", "DESKEW")},
}


def build(program: Program) -> Plan:
    chip = program.chip
    bs = batches(program)
    if not any(b.n for b in bs):
        return Plan(bs, [], [], [], 0, 0, {})
    vs = _Vectors(bs)
    locs = _Locs(program, bs, vs)
    events, starts, acc_checks, touches = _record(bs, vs, locs)
    stream_reads = starts[0]
    loc, key, write, vec, grp, plane = events.arrays(vs, locs)
    before, after = _neighbours(loc, key, write)
    pairs, errors = _links(bs, vs, chip)
    errors += _acc_errors(bs, vs, acc_checks, before, vec)
    before, kept_writes = _through_sram(bs, before, write, starts)
    state = loc >= locs.mem0  # ChipState locations; below them streams and latches, resolved statically
    edges = _Edges()
    raw = ~write & (before >= 0)
    edges.add(vec[before[raw]], COMMIT, vec[raw], READ)
    war = ~write & state & (after >= 0)
    edges.add(vec[war], READ, vec[after[war]], COMMIT)
    waw = write & state & (before >= 0)
    edges.add(vec[before[waw]], COMMIT, vec[waw], COMMIT)
    edges.add(np.array(list(pairs.values()), np.int64), COMMIT, np.array(list(pairs.keys()), np.int64), READ)
    spans, steps = _schedule(bs, vs, edges)

    res = Resolution(bs, vs.batch, before, vec, grp, plane)
    whole = [(b.id, i) for b, lo, hi in spans if hi - lo == b.n
             for i, (ref, _) in enumerate(b.ins) if ref.kind != "alu"]
    reads = [(stream_reads[k], bs[k[0]].n, bs[k[0]].ins[k[1]][1]) for k in whole]
    simple = dict(zip(whole, whole_stream_fetches(res, reads), strict=True))
    chunks = []
    for b, lo, hi in spans:
        fetches = []
        for i, (ref, dt) in enumerate(b.ins):
            f = simple.get((b.id, i)) if hi - lo == b.n else None
            if f is None:
                f = (make_latch_fetch if ref.kind == "alu" else make_stream_fetch)(
                    res, stream_reads[b.id, i], b.n, lo, hi, dt, chip.lanes)
            fetches.append(f)
        link = None
        if b.op.name == "RECEIVE":
            link = make_link_fetch(res, np.array([pairs.get(v, -1) for v in range(b.v0 + lo, b.v0 + hi)]), chip.lanes)
        chunks.append(Chunk(b, lo, hi, fetches, link))
    busy: dict[str, int] = {}
    for b in bs:
        if b.op.unit != "ICU":  # as the exact executor counts: occupancy does not depend on what REPEAT steps
            busy[b.op.unit] = busy.get(b.op.unit, 0) + b.op.occupancy(b.base) * b.n
    error = min(errors, key=lambda e: e[0])[1] if errors else None
    unused = _unused(bs, set(vs.batch[vec[kept_writes]].tolist()), chunks, program)
    steps = _fuse([s for s in steps if chunks[s[0]].batch.id not in unused], chunks, touches)
    return Plan(bs, chunks, steps, releases(steps, chunks), len(vs.batch), int(vs.wc.max()) + chip.superlanes,
                busy, error)


class _Vectors:
    """Per vector (numbered as the exact executor numbers its executions): batch, cycles, action keys."""

    def __init__(self, bs: list[Batch]):
        counts = np.array([b.n for b in bs])
        self.batch = np.repeat(np.arange(len(bs)), counts)
        cycles = np.concatenate([b.cycles() for b in bs])
        self.rc = cycles + np.repeat([b.op.d_skew for b in bs], counts)
        self.wc = cycles + np.repeat([b.op.d_func for b in bs], counts)
        self.kr, self.kc = _action_keys(self.rc, self.wc)


def _record(bs: list[Batch], vs: _Vectors, locs: _Locs):
    """Every read and write of every vector, with the starts of the reads the fetches and checks need."""
    ev = _Events()
    stream_reads: dict[tuple[int, int], int] = {}  # (batch, input) -> its first event (byte planes major)
    stream_writes: dict[tuple[int, int], int] = {}  # (batch, output) -> its first event
    mem: dict[int, int] = {}  # READ or WRITE batch -> its first SRAM event
    acc_checks: dict[int, dict] = {}  # ACC batch -> first event of its reads of the weights and buffers
    touches: list[tuple[bool, bool]] = []  # per batch: does it read, does it write ChipState locations
    for b in bs:
        for i, (ref, dt) in enumerate(b.ins):
            if ref.kind == "alu":
                stream_reads[b.id, i] = ev.add(locs.latch(ref.index), False, b, i)
            else:
                stream_reads[b.id, i] = ev.size
                for p in range(nx.width(dt)):
                    ev.add_stream(ref.kind, ref.index + p, False, b, i, p)
        for o, (ref, dt) in enumerate(b.outs):
            stream_writes[b.id, o] = ev.size
            for p in range(nx.width(dt)):
                ev.add_stream(ref.kind, ref.index + p, True, b, o, p)
        if b.op.unit == "VXM":
            ev.add(locs.latch(b.unit), True, b)
        access = STATE_ACCESS[b.op.name](b, b.args(0, b.n), locs)
        touches.append((any(not w for w, _ in access), any(w for w, _ in access)))
        for write, loc in access:
            start = ev.add(loc, write, b)
            if b.op.name == "ACC" and not write:
                acc_checks.setdefault(b.id, {})["kernel" if np.ndim(loc) == 0 else "act"] = start
            if b.op.name in ("READ", "WRITE"):
                mem[b.id] = start
    return ev, (stream_reads, stream_writes, mem), acc_checks, touches


def _through_sram(bs: list[Batch], before: np.ndarray, write: np.ndarray, starts) -> tuple[np.ndarray, np.ndarray]:
    """`before` with every read of a value that went through SRAM (a WRITE, then a READ of the row with no
    other write between them) seeing the value the WRITE took from its stream instead: the same bytes,
    without the round trip. Also the SRAM events of the WRITEs whose rows a READ may still read from SRAM
    (a SCATTER came between)."""
    stream_reads, stream_writes, mem = starts
    through = np.full(len(before), -1)  # a WRITE's SRAM event -> the event its value came from
    by_write = np.zeros(len(before), bool)
    for b in bs:
        if b.op.name == "WRITE":
            through[mem[b.id]:mem[b.id] + b.n] = before[stream_reads[b.id, 0]:stream_reads[b.id, 0] + b.n]
            by_write[mem[b.id]:mem[b.id] + b.n] = True
    alias = np.arange(len(before))
    aliased = np.zeros(len(before), bool)  # a READ's stream event whose row a WRITE wrote
    scattered = []  # the SCATTER events READs see
    for b in bs:
        if b.op.name == "READ":
            written = before[mem[b.id]:mem[b.id] + b.n]
            has = written >= 0
            scattered.append(written[has][~by_write[written[has]]])
            has[has] = by_write[written[has]]
            out = stream_writes[b.id, 0]
            alias[out:out + b.n][has] = through[written[has]]
            aliased[out:out + b.n] = has
    # the WRITEs such a READ may still see: the last one before the SCATTERs (which may not write its row)
    kept = before[np.concatenate([np.zeros(0, np.int64), *scattered])]
    while len(kept := kept[kept >= 0]) and not by_write[kept].all():
        kept = np.where(by_write[kept], kept, before[kept])
    seen = before.copy()
    at = np.flatnonzero(~write & (seen >= 0))
    at = at[aliased[seen[at]]]
    while len(at):  # a value can go through SRAM more than once
        seen[at] = alias[seen[at]]
        at = at[seen[at] >= 0]
        at = at[aliased[seen[at]]]
    return seen, np.unique(kept)


def _unused(bs: list[Batch], seen: set[int], chunks: list[Chunk], program: Program) -> set[int]:
    """READs nobody reads any more, and WRITEs that no READ sees in SRAM (`seen` are those some do), of
    rows no output holds, in slices no GATHER reads: what they did is resolved statically (_through_sram)."""
    read = {w for ch in chunks for f in (*ch.fetches, ch.link) for w in getattr(f, "sources", ())}
    gathered = {b.slice for b in bs if b.op.name == "GATHER"}
    outputs = {s: np.zeros(program.chip.mem_addresses, bool) for s in program.chip.floorplan}
    for t in program.tensors.values():
        for s in t.slices if t.output else ():
            outputs[s][t.addr:t.addr + t.rows] = True
    return {b.id for b in bs if (b.op.name == "READ" and b.id not in read) or (
        b.op.name == "WRITE" and b.id not in seen and b.slice not in gathered
        and not outputs[b.slice][b.args(0, b.n)["addr"]].any())}


class _Edges:
    """Vector-level edges: (vector, step) must run before (vector, step)."""

    def __init__(self):
        self.parts: list[tuple] = []

    def add(self, src_v: np.ndarray, src_step: int, dst_v: np.ndarray, dst_step: int) -> None:
        self.parts.append((src_v, src_step, dst_v, dst_step))

    def between(self, chunk_of: np.ndarray, nchunks: int) -> tuple[np.ndarray, np.ndarray]:
        """Edges between the steps of chunks (node chunk * 2 + step), with read -> commit within each chunk."""
        src = [chunk_of[s] * 2 + ss for s, ss, _, _ in self.parts] + [np.arange(nchunks) * 2 + READ]
        dst = [chunk_of[d] * 2 + ds for _, _, d, ds in self.parts] + [np.arange(nchunks) * 2 + COMMIT]
        s, d = np.concatenate(src), np.concatenate(dst)
        keep = s != d
        codes = np.unique(s[keep] * (2 * nchunks) + d[keep])
        return codes // (2 * nchunks), codes % (2 * nchunks)


def _schedule(bs: list[Batch], vs: _Vectors, edges: _Edges) -> tuple[list, list[tuple[int, int]]]:
    """Chunks (batch, lo, hi) and their steps in a safe order: whole batches, but single vectors for
    the batches on a cycle."""
    spans = [(b, 0, b.n) for b in bs]
    order = _order(spans, vs, vs.batch, edges)
    if order is None:
        split = {u >> 1 for u in on_cycles(2 * len(spans), *edges.between(vs.batch, len(spans)))}
        spans = [s for b in bs for s in ([(b, j, j + 1) for j in range(b.n)] if b.id in split else [(b, 0, b.n)])]
        first: dict[int, int] = {}
        for c, (b, _, _) in enumerate(spans):
            first.setdefault(b.id, c)
        chunk_of = np.concatenate([first[b.id] + (np.arange(b.n) if b.id in split else np.zeros(b.n, np.int64))
                                   for b in bs])
        order = _order(spans, vs, chunk_of, edges)
        assert order is not None, "single vectors follow action order, which has no cycle"
    return spans, order


def _order(spans, vs: _Vectors, chunk_of: np.ndarray, edges: _Edges) -> list[tuple[int, int]] | None:
    """(chunk, step) in a topological order, earliest first action first; None on a cycle."""
    src, dst = edges.between(chunk_of, len(spans))
    priority = [k for b, lo, _ in spans for k in (int(vs.kr[b.v0 + lo]), int(vs.kc[b.v0 + lo]))]
    order = topological_order(2 * len(spans), src, dst, priority)
    return None if order is None else [(u >> 1, u & 1) for u in order]


def _action_keys(rc: np.ndarray, wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys that sort reads and commits as `timeline.action_order` does (commits first within a cycle)."""
    n = len(rc)
    ids = np.arange(n)
    t = np.concatenate([2 * rc + 1, 2 * wc])
    if (int(t.max()) + 1) * n < 2**62:
        return t[:n] * n + ids, t[n:] * n + ids
    rank = np.empty(2 * n, np.int64)
    rank[np.lexsort((np.concatenate([ids, ids]), t))] = np.arange(2 * n)
    return rank[:n], rank[n:]


def _neighbours(loc, key, write) -> tuple[np.ndarray, np.ndarray]:
    """Per event: the last write strictly before it at its location, and the first write after (-1: none)."""
    n = len(loc)
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    span = int(key.max()) - int(key.min()) + 1
    if (int(loc.max()) + 1) * span < 2**62:  # one int64 sort key is much faster than lexsort
        order = np.argsort(loc * span + (key - key.min()), kind="stable")
    else:
        order = np.lexsort((key, loc))
    sl, sw = loc[order], write[order]
    idx = np.arange(n)
    last = np.maximum.accumulate(np.where(sw, idx, -1))
    prev = np.concatenate([[-1], last[:-1]])
    ok = prev >= 0
    ok[ok] = sl[prev[ok]] == sl[ok]
    nxt = np.minimum.accumulate(np.where(sw, idx, n)[::-1])[::-1]
    nxt = np.concatenate([nxt[1:], [n]])
    ok_n = nxt < n
    ok_n[ok_n] = sl[nxt[ok_n]] == sl[ok_n]
    before, after = np.full(n, -1), np.full(n, -1)
    before[order[ok]] = order[prev[ok]]
    after[order[ok_n]] = order[nxt[ok_n]]
    return before, after


def _links(bs: list[Batch], vs: _Vectors, chip) -> tuple[dict[int, int], list]:
    """Pair the k-th RECEIVE on a link with the k-th SEND (receiving vector -> sending vector), and the
    error the exact executor raises for a RECEIVE before its vector arrived."""
    sends: dict[int, list] = {}
    recvs: dict[int, list] = {}
    for b in bs:
        if b.op.name in ("SEND", "RECEIVE"):
            into = sends if b.op.name == "SEND" else recvs
            into.setdefault(b.base["link"], []).extend(range(b.v0, b.v0 + b.n))
    pairs: dict[int, int] = {}
    errors = []
    for link, rs in recvs.items():
        ss = sorted(sends.get(link, []), key=lambda v: vs.kc[v])
        committed = vs.kc[ss] if ss else np.zeros(0, np.int64)
        for k, v in enumerate(sorted(rs, key=lambda v: vs.kr[v])):
            sent = int(np.searchsorted(committed, vs.kr[v]))  # sends committed before this read
            arrival = vs.wc[ss[k]] + chip.c2c_loopback_cycles if k < sent else None
            if arrival is not None and arrival <= vs.rc[v]:
                pairs[v] = ss[k]
                continue
            pending = SimpleNamespace(links={link: deque([] if arrival is None else [(arrival, None)])})
            errors.append((vs.kr[v], _raised(ChipState.link_receive, pending, link, int(vs.rc[v]))))
            break
    return pairs, errors


def _acc_errors(bs: list[Batch], vs: _Vectors, acc_checks: dict, before: np.ndarray, vec: np.ndarray) -> list:
    """The error the exact executor raises for the first ACC that finds no weights installed, weights of
    another dtype, or an activation buffer nothing has filled: its own `read` on a stand-in plane."""
    errors = []
    for i, starts in acc_checks.items():
        b = bs[i]
        src = before[starts["kernel"]:starts["kernel"] + b.n].tolist()
        modes = [None if s < 0 else bs[vs.batch[vec[s]]].base["dtype"] for s in src]
        filled = [True] * b.n if "act" not in starts else (before[starts["act"]:starts["act"] + b.n] >= 0).tolist()
        bad = [j for j in range(b.n) if modes[j] != b.base["dtype"] or not filled[j]]
        if bad:
            j = bad[0]
            issue = SimpleNamespace(unit=b.unit, cycle=int(b.cycles(j, j + 1)[0]), args=b.vector_args(j))
            plane = SimpleNamespace(mode=modes[j], act={}, kernel=lambda x: x)
            errors.append((vs.kr[b.v0 + j], _raised(b.op.read, SimpleNamespace(mxm={b.unit: plane}), issue, [])))
    return errors


def _raised(fn, *args) -> Exception:
    try:
        fn(*args)
    except Exception as err:  # noqa: BLE001 - the error the exact executor raises, whatever it is
        return err
    raise AssertionError("expected an error")


def _fuse(order, chunks, touches) -> list[tuple[int, int]]:
    """One step instead of two for most chunks. Values in the store never change once committed, and the
    ChipState of streams and latches is never read (the plan resolved them), so a chunk that writes no
    other ChipState can commit right after its read, and one that reads none can read right before its
    commit. Only chunks that do both (IW, ACC) keep two steps."""
    out = []
    for c, step in order:
        reads, writes = touches[chunks[c].batch.id]
        if reads and writes:
            out.append((c, step))
        elif step == (COMMIT if writes else READ):
            out.append((c, BOTH))
    return out


def releases(order, chunks) -> list[list[int]]:
    """After which step each batch's values can be dropped: its last reader's step (or its own commit)."""
    last: dict[int, int] = {}
    for k, (c, step) in enumerate(order):
        ch = chunks[c]
        if step != READ:
            last[ch.batch.id] = max(last.get(ch.batch.id, k), k)
        if step != COMMIT:
            for f in [*ch.fetches, ch.link]:
                for w in getattr(f, "sources", ()):
                    last[w] = max(last.get(w, k), k)
    out: list[list[int]] = [[] for _ in order]
    for w, k in last.items():
        out[k].append(w)
    return out
