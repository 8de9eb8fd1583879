"""Collectives compiled into link schedules, then run on real data through the network executor.

The algorithm follows the hierarchy of the system, as ISCA22's all-reduce does (8-way inside a node,
then over the global links, then 8-way inside the node again), one level per tier of the wiring:
chips of a node, nodes of a rack, racks. Participants are ranked by chip id, and a rank's coordinates
are its place at each level (chip in node, node in rack, rack), innermost first.

The buffer (whole 320-byte vectors) is cut into one block per rank. A reduce-scatter runs the levels
inside out: at level l a rank keeps the blocks whose level-l coordinate is its own and sends each other
peer of that level (same coordinates elsewhere) the blocks bearing the peer's coordinate, which the
peer adds to its own. After the last level rank r holds block r, summed over everyone. The heavy
exchanges stay on the local links; each outer level moves a smaller share over the scarcer links.
An all-gather runs the levels outside in, copying instead of adding; an all-reduce is a
reduce-scatter then an all-gather. A broadcast scatters the root's blocks to their ranks directly,
then all-gathers (ranks are renumbered so that the root owns block 0 and a tiny tensor costs no
scatter). A point-to-point send is one transfer, spread over minimal and non-minimal routes.

Compiling schedules every transfer with the cycle each vector is ready (so a level starts on the
first vectors reduced by the previous one: the collective is pipelined vector by vector) and returns
a `CollectivePlan`: the `NetworkSchedule`, the moves of each step and the latency. `run` then moves
the bytes of every step with the network executor, adds or copies them on arrival, and returns every
participant's result. Routes are minimal only: every link already carries its share, so a detour
would take a slot some other transfer needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from openlpu.errors import UserError
from openlpu.system.netexec import check_exclusive, execute, ranges
from openlpu.system.schedule import NetworkSchedule, Scheduler, Transfer
from openlpu.system.timing import NetworkTiming
from openlpu.system.topology import Topology

OPS = ("allreduce", "reduce-scatter", "allgather", "broadcast", "send")


class LinkFailure(UserError):
    """Flits went missing during a run: the links named in `detections` delivered nothing."""

    def __init__(self, message: str, detections: list) -> None:
        super().__init__(message)
        self.detections = detections


@dataclass(frozen=True, eq=False)
class Groups:
    """Participants (ascending chip ids) and the size of each level, innermost first."""

    chips: np.ndarray
    sizes: tuple[int, ...]
    names: tuple[str, ...]
    pos: np.ndarray  # rank -> position (the block it ends up owning); identity unless a root was moved to 0

    @property
    def n(self) -> int:
        return len(self.chips)

    @cached_property
    def strides(self) -> np.ndarray:
        return np.cumprod((1, *self.sizes))

    def digit(self, position, level: int):
        return position // self.strides[level] % self.sizes[level]

    def rank_at(self, position: int) -> int:
        return int(self._inverse[position])

    @cached_property
    def _inverse(self) -> np.ndarray:
        inverse = np.empty(self.n, np.int64)
        inverse[self.pos] = np.arange(self.n)
        return inverse


def groups(topo: Topology, chips=None, root: int | None = None) -> Groups:
    """Rank the participants (default: the active chips, hot-spare nodes left out) and find the levels."""
    chips = active_chips(topo) if chips is None else np.unique(np.asarray(chips, dtype=np.int64))
    if len(chips) < 1:
        raise UserError("a collective needs at least one chip: give some chip ids.")
    for c in (int(chips[0]), int(chips[-1])):
        topo.check_chip(c)
    spec = topo.spec
    label = {spec.chips_per_node: "node", spec.chips_per_rack: "rack"}
    sizes, names = [], []
    prev = chips
    for bound in (*reversed(topo.hierarchy), None):
        key = np.zeros_like(chips) if bound is None else chips // bound
        pairs = np.unique(np.stack([key, prev], axis=1), axis=0)
        _, per_group = np.unique(pairs[:, 0], return_counts=True)
        if np.all(per_group == per_group[0]):  # a level only if every group holds as many subgroups
            if per_group[0] > 1:
                sizes.append(int(per_group[0]))
                names.append("system" if bound is None else label.get(bound, f"{bound} chips"))
            prev = key
    pos = np.arange(len(chips))
    if root is not None:
        where = np.flatnonzero(chips == root)
        if not where.size:
            raise UserError(f"the root chip {root} is not one of the participants: pick one of them.")
        # Shift every coordinate by the root's, level by level, so that the root sits at position 0.
        plain = Groups(chips, tuple(sizes), tuple(names), pos)
        shifted = np.zeros_like(pos)
        for level, size in enumerate(sizes):
            digit = (plain.digit(pos, level) - plain.digit(int(where[0]), level)) % size
            shifted += digit * int(plain.strides[level])
        pos = shifted
    return Groups(chips, tuple(sizes), tuple(names), pos)


def active_chips(topo: Topology) -> np.ndarray:
    """Every chip but those of the hot-spare nodes (assumed: the last node(s) of each rack)."""
    spec = topo.spec
    ids = np.arange(topo.chips)
    if topo.family != "dragonfly" or not topo.spare_chips:
        return ids
    return ids[ids // spec.chips_per_node % spec.nodes_per_rack < spec.nodes_per_rack - spec.spare_nodes_per_rack]


def spare_chips(topo: Topology) -> np.ndarray:
    return np.setdiff1d(np.arange(topo.chips), active_chips(topo))


@dataclass(frozen=True, eq=False)
class Move:
    tid: int
    sender: int  # rank
    receiver: int  # rank
    vectors: np.ndarray  # vector indices of the buffer it carries


@dataclass(frozen=True, eq=False)
class Step:
    name: str  # e.g. "reduce-scatter node"
    kind: str  # "reduce" (add on arrival) or "copy"
    moves: list[Move]
    end: int  # cycle its last vector is in place


@dataclass(frozen=True, eq=False)
class CollectivePlan:
    op: str
    groups: Groups
    nbytes: int  # per participant: its input (allreduce, broadcast, send) or its block (allgather, reduce-scatter)
    vectors: int  # buffer length in vectors
    block_starts: np.ndarray  # block b = vectors block_starts[b]:block_starts[b + 1]
    schedule: NetworkSchedule
    steps: list[Step]
    latency: int  # cycles from the start until every result is in place
    root: int | None = None

    @property
    def timing(self) -> NetworkTiming:
        return self.schedule.timing

    @property
    def latency_s(self) -> float:
        return self.latency / self.schedule.topo.spec.clock_hz

    def summary(self) -> dict[str, Any]:
        spec = self.schedule.topo.spec
        bound = lower_bound(self)
        link_flits = self.schedule.link_flits()
        return {
            "op": self.op,
            "system": self.schedule.topo.name,
            "chips": self.groups.n,
            "levels": [f"{n} x{s}" for n, s in zip(self.groups.names, self.groups.sizes, strict=True)],
            "bytes": self.nbytes,
            "latency_cycles": self.latency,
            "latency_s": self.latency_s,
            "lower_bound_cycles": bound["cycles"],
            "lower_bound_s": bound["cycles"] / spec.clock_hz,
            "bound": bound,
            "bound_ratio": self.latency / bound["cycles"] if bound["cycles"] else None,
            "transfers": len(self.schedule.transfers),
            "flits": self.schedule.flits,
            "flit_hops": len(self.schedule.hop_flit),
            "busiest_link_flits": int(link_flits.max()) if len(link_flits) else 0,
            "steps": [{"step": s.name, "transfers": len(s.moves), "end_cycle": s.end} for s in self.steps],
            "failed_links": list(self.schedule.failed_links),
        }


# ---- compiling ----
def compile_collective(op: str, topo: Topology, nbytes: int, chips=None, root: int | None = None,
                       dst: int | None = None, failed_links: tuple[int, ...] = (),
                       timing: NetworkTiming | None = None) -> CollectivePlan:
    """Schedule one collective of `nbytes` per participant (see `CollectivePlan.nbytes`)."""
    if op not in OPS:
        raise UserError(f"unknown collective {op!r}: use one of {', '.join(OPS)}.")
    if nbytes < 0:
        raise UserError(f"{nbytes} bytes is not a size: give 0 or more bytes.")
    if op == "send":
        if root is None or dst is None:
            raise UserError("a send needs a source and a destination chip.")
        topo.check_chip(root)
        topo.check_chip(dst)
        g = Groups(np.array([root, dst]), (2,), ("pair",), np.array([0, 1]))
    elif op == "broadcast":
        if root is None:
            raise UserError("a broadcast needs a root chip.")
        g = groups(topo, chips, root)
    else:
        g = groups(topo, chips)
    vb = topo.spec.flit_payload_bytes
    if op in ("allgather", "reduce-scatter"):
        per_block = -(-nbytes // vb)
        starts = np.arange(g.n + 1, dtype=np.int64) * per_block
    else:
        total = -(-nbytes // vb)
        starts = -(-np.arange(g.n + 1, dtype=np.int64) * total // g.n)  # fewer vectors than ranks: the first own them
    sched = Scheduler(topo, timing, failed_links, nonminimal=op == "send")
    builder = _Builder(g, sched, starts)
    if op == "send":
        builder.send("send", "copy", [(0, 1, np.arange(int(starts[-1])))])
    elif op == "broadcast":
        builder.scatter_from(g.rank_at(0))
        builder.allgather()
    else:
        if op in ("allreduce", "reduce-scatter"):
            builder.reduce_scatter()
        if op in ("allreduce", "allgather"):
            builder.allgather()
    latency = builder.latency(op)
    return CollectivePlan(op, g, nbytes, int(starts[-1]), starts, sched.result(), builder.steps, latency,
                          root if op in ("broadcast", "send") else None)


class _Builder:
    def __init__(self, g: Groups, sched: Scheduler, starts: np.ndarray) -> None:
        self.g, self.sched, self.starts = g, sched, starts
        self.timing = sched.timing
        self.ready = np.zeros((g.n, int(starts[-1])), np.int64)  # cycle each vector of each rank is in SRAM
        self.steps: list[Step] = []
        self.vb = sched.topo.spec.flit_payload_bytes

    def vectors(self, blocks: np.ndarray) -> np.ndarray:
        """The buffer's vector indices of these blocks, in order."""
        lo = self.starts[blocks]
        counts = self.starts[blocks + 1] - lo
        return np.repeat(lo, counts) + ranges(counts)

    def blocks(self, low: int, modulus: int, level_digit: tuple[int, int] | None = None) -> np.ndarray:
        """Positions b with b % modulus == low, moved to digit q at `level` if (level, q) is given."""
        b = low + np.arange(self.g.n // modulus) * modulus
        if level_digit is not None:
            level, q = level_digit
            b = b + q * int(self.g.strides[level])
        return b

    def peer(self, rank: int, level: int, q: int) -> int:
        p = int(self.g.pos[rank])
        return self.g.rank_at(p + (q - int(self.g.digit(p, level))) * int(self.g.strides[level]))

    def send(self, name: str, kind: str, pairs: list[tuple[int, int, np.ndarray]]) -> None:
        chips = self.g.chips
        moves = []
        for sender, receiver, vecs in pairs:
            if not len(vecs):
                continue
            tid = self.sched.add(Transfer(int(chips[sender]), int(chips[receiver]), len(vecs) * self.vb,
                                          ready=self.ready[sender, vecs], name=name))
            moves.append(Move(tid, sender, receiver, vecs))
        if kind == "reduce":
            arrived = np.zeros_like(self.ready)
            touched = np.zeros(self.ready.shape, bool)
            for m in moves:
                arrived[m.receiver, m.vectors] = np.maximum(arrived[m.receiver, m.vectors], self.sched.arrivals(m.tid))
                touched[m.receiver, m.vectors] = True
            self.ready = np.where(touched, np.maximum(self.ready, arrived) + self.timing.reduce_cycles, self.ready)
            end = int(self.ready[touched].max()) if touched.any() else 0
        else:
            end = 0
            for m in moves:
                self.ready[m.receiver, m.vectors] = self.sched.arrivals(m.tid) + self.timing.eject_cycles
                end = max(end, int(self.ready[m.receiver, m.vectors].max()))
        self.steps.append(Step(name, kind, moves, end))

    def reduce_scatter(self) -> None:
        g = self.g
        for level, size in enumerate(g.sizes):
            stride = int(g.strides[level])
            pairs = []
            for r in range(g.n):
                p = int(g.pos[r])
                for q in range(size):
                    if q != g.digit(p, level):
                        blocks = self.blocks(p % stride, int(g.strides[level + 1]), (level, q))
                        pairs.append((r, self.peer(r, level, q), self.vectors(blocks)))
            self.send(f"reduce-scatter {g.names[level]}", "reduce", pairs)

    def allgather(self) -> None:
        g = self.g
        for level in reversed(range(len(g.sizes))):
            modulus = int(g.strides[level + 1])
            pairs = []
            for r in range(g.n):
                p = int(g.pos[r])
                vecs = self.vectors(self.blocks(p % modulus, modulus))
                for q in range(g.sizes[level]):
                    if q != g.digit(p, level):
                        pairs.append((r, self.peer(r, level, q), vecs))
            self.send(f"allgather {g.names[level]}", "copy", pairs)

    def scatter_from(self, root: int) -> None:
        """The root sends every other rank the block it will own, directly."""
        self.send("scatter", "copy", [(root, r, self.vectors(np.array([self.g.pos[r]])))
                                      for r in range(self.g.n) if r != root])

    def latency(self, op: str) -> int:
        if op == "reduce-scatter":
            owned = [self.ready[r, self.vectors(np.array([self.g.pos[r]]))] for r in range(self.g.n)]
            return int(max((int(o.max()) for o in owned if len(o)), default=0))
        if op == "send":
            return int(self.ready[1].max()) if self.ready.shape[1] else 0
        return int(self.ready.max()) if self.ready.size else 0


# ---- running on data ----
def run(plan: CollectivePlan, inputs, failed_links: tuple[int, ...] = ()) -> list[np.ndarray]:
    """Move the bytes of every step and return each participant's result, in rank order.

    `inputs`: one array per participant in rank order (for a broadcast or a send only the root's is read;
    pass arrays for all anyway). Raises LinkFailure naming the links if flits go missing."""
    g = plan.groups
    arrays = [np.ascontiguousarray(a) for a in inputs]
    if len(arrays) != g.n:
        raise UserError(f"{plan.op} over {g.n} chips needs {g.n} input arrays, got {len(arrays)}.")
    dtype, shape = arrays[0].dtype, arrays[0].shape
    if any(a.dtype != dtype or a.shape != shape for a in arrays):
        raise UserError(f"every input of a {plan.op} must have the same dtype and shape ({dtype}, {shape}).")
    vb = plan.schedule.topo.spec.flit_payload_bytes
    if vb % dtype.itemsize:
        raise UserError(f"{dtype} elements do not tile a {vb}-byte vector: use 1, 2, 4 or 8-byte elements.")
    expected = plan.nbytes * (g.n if plan.op == "reduce-scatter" else 1)
    if arrays[0].nbytes != expected:
        raise UserError(f"{plan.op} was compiled for {expected} bytes per chip, but the inputs have "
                        f"{arrays[0].nbytes}: compile it for their size.")
    buf = np.zeros((g.n, plan.vectors * vb), np.uint8)
    block = plan.nbytes  # bytes of one rank's block in allgather / reduce-scatter layouts
    for r, a in enumerate(arrays):
        raw = a.reshape(-1).view(np.uint8)
        if plan.op == "allgather":
            lo = int(plan.block_starts[g.pos[r]]) * vb
            buf[r, lo:lo + block] = raw
        elif plan.op == "reduce-scatter":
            for b in range(g.n):
                lo = int(plan.block_starts[b]) * vb
                buf[r, lo:lo + block] = raw[b * block:(b + 1) * block]
        elif plan.root is None or g.chips[r] == plan.root:  # a broadcast or send reads the root's only
            buf[r, :len(raw)] = raw
    vectors = buf.reshape(g.n, plan.vectors, vb)
    typed = vectors.view(dtype)
    check_exclusive(plan.schedule)
    lost = []  # every step runs to its end, as the hardware would, so one run finds every dead link it uses
    for step in plan.steps:
        payloads = {m.tid: vectors[m.sender, m.vectors].copy() for m in step.moves}
        result = execute(plan.schedule, payloads, failed_links, [m.tid for m in step.moves])
        lost += [(step.name, d) for d in result.detections]
        for m in step.moves:
            got = result.received[m.tid].reshape(len(m.vectors), vb)
            if step.kind == "reduce":
                typed[m.receiver, m.vectors] += got.view(dtype)
            else:
                vectors[m.receiver, m.vectors] = got
    if lost:
        name, d = lost[0]
        first = {}  # link -> its first detection
        for _, x in lost:
            first.setdefault(x.link, x)
        raise LinkFailure(f"{name}: link {d.link} delivered nothing to chip {d.chip} at cycle {d.cycle} "
                          f"({len(first)} dead link(s) found).", list(first.values()))
    return _unpack(plan, buf, dtype, shape)


def _unpack(plan: CollectivePlan, buf: np.ndarray, dtype, shape) -> list[np.ndarray]:
    g, vb = plan.groups, plan.schedule.topo.spec.flit_payload_bytes
    out = []
    for r in range(g.n):
        if plan.op == "allgather":
            parts = [buf[r, int(plan.block_starts[g.pos[q]]) * vb:][:plan.nbytes] for q in range(g.n)]
            out.append(np.concatenate(parts).view(dtype).reshape(g.n, *shape))
        elif plan.op == "reduce-scatter":
            lo = int(plan.block_starts[g.pos[r]]) * vb
            out.append(buf[r, lo:lo + plan.nbytes].copy().view(dtype))
        else:
            out.append(buf[r, :plan.nbytes].copy().view(dtype).reshape(shape))
    return out


# ---- closed-form lower bounds (alpha-beta) ----
def lower_bound(plan: CollectivePlan) -> dict[str, Any]:
    """A bound no schedule can beat, from link latency (alpha) and link bandwidth (beta), in cycles.

    alpha: the result at the farthest participant depends on data d hops away: d x (flit + latency).
    beta: every participant must receive (n-1)/n of the data per pass (reduce-scatter, all-gather; an
    all-reduce needs both: 2(n-1)/n x S), through at most all its links; a broadcast's root must send
    the tensor once, a send's source once. The larger of the two; chip time (inject, forward, reduce)
    is left out, so the bound is loose by those cycles."""
    g, topo, timing = plan.groups, plan.schedule.topo, plan.timing
    spec = topo.spec
    origin = int(g.chips[0]) if plan.root is None else plan.root
    hops = int(topo.graph.distances(origin)[g.chips].max())
    alpha = hops * timing.hop_cycles("local") if hops else 0.0
    link_bytes_per_cycle = spec.flit_payload_bytes / timing.flit_cycles
    links = _links_per_chip(topo, np.array([plan.root]) if plan.op == "broadcast" else g.chips)
    n = g.n
    total = plan.vectors * spec.flit_payload_bytes
    passes = {"allreduce": 2, "reduce-scatter": 1, "allgather": 1}
    if n == 1:
        beta = 0.0
    elif plan.op in passes:
        beta = passes[plan.op] * (n - 1) / n * total / (links.min() * link_bytes_per_cycle)
    else:  # the root (or a send's source and destination) must pass the whole tensor once
        beta = total / (links.min() * link_bytes_per_cycle)
    return {"alpha_cycles": alpha, "beta_cycles": beta, "hops": hops, "cycles": max(alpha, beta)}


def _links_per_chip(topo: Topology, chips: np.ndarray) -> np.ndarray:
    return np.bincount(topo.ends.reshape(-1), minlength=topo.chips)[chips]
