"""A dynamically routed network on the same wiring, to measure what scheduling buys.

The same transfers, flits, links, latencies and chip cycles as the scheduled network, but nothing is
decided before the run: every chip queues the flits that want a link in a FIFO per link direction and
sends one per flit slot. Routing is either
- "minimal": each transfer takes one minimal route, drawn at random when it starts (oblivious), or
- "adaptive": at every chip, a flit takes the link towards its destination (one hop closer) whose
  queue frees soonest (ties broken at random).
A discrete-event simulation (a heap of flit-arrival events, handled in time order, so each queue is
served first come first served) gives every flit's arrival. What differs from run to run is what
differs on real hardware: the moment each flit is offered to the network (`jitter_cycles`, uniform,
seeded) and the random choices.

Optimistic for the dynamic network on purpose: queues are unbounded (no back-pressure spreading
congestion, no drops), and flits carry no routing header although a real one would need it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import numpy as np

from openlpu.errors import UserError
from openlpu.system.schedule import Router, Transfer, channel_ends, channel_latency, schedule
from openlpu.system.timing import NetworkTiming
from openlpu.system.topology import Topology

ROUTINGS = ("minimal", "adaptive")


@dataclass(frozen=True, eq=False)
class DynamicRun:
    routing: str
    seed: int
    completion: np.ndarray  # per transfer: cycle its last flit is in the destination's SRAM
    flit_hops: int


def simulate(topo: Topology, transfers: list[Transfer], routing: str = "adaptive", seed: int = 0,
             jitter_cycles: int = 0, timing: NetworkTiming | None = None) -> DynamicRun:
    if routing not in ROUTINGS:
        raise UserError(f"unknown routing {routing!r}: use {' or '.join(ROUTINGS)}.")
    timing = timing or NetworkTiming(topo.spec)
    rng = np.random.default_rng(seed)
    router = Router(topo)
    latency = channel_latency(topo, timing).tolist()
    ends_to = channel_ends(topo, np.arange(2 * len(topo.ends)))[1].tolist()
    graph = topo.graph
    next_free = [0] * (2 * len(topo.ends))  # first slot each channel has not yet promised
    forward, inject, eject = timing.forward_cycles, timing.inject_cycles, timing.eject_cycles
    num, den = timing.flit_fraction.numerator, timing.flit_fraction.denominator
    events: list[tuple[int, int, int, int, int]] = []  # (cycle, seq, transfer, chip, hop)
    routes: list[list[int] | None] = []
    seq = 0
    for t, tr in enumerate(transfers):
        flits = -(-tr.nbytes // topo.spec.flit_payload_bytes)
        if tr.src == tr.dst:
            raise UserError(f"transfer {t} goes from chip {tr.src} to itself: drop it.")
        ready = np.full(flits, tr.earliest, np.int64) if tr.ready is None else np.asarray(tr.ready, np.int64)
        offered = ready + inject + (rng.integers(0, jitter_cycles + 1, flits) if jitter_cycles else 0)
        if routing == "minimal":
            options = router.minimal(tr.src, tr.dst)
            routes.append(options[int(rng.integers(len(options)))].channels.tolist())
        else:
            routes.append(None)
        for cycle in offered.tolist():
            events.append((cycle, seq, t, tr.src, 0))
            seq += 1
    heapq.heapify(events)
    first_end = topo.ends[:, 0].tolist()
    completion = np.array([tr.earliest for tr in transfers], np.int64)
    hops = 0
    while events:
        cycle, _, t, chip, hop = heapq.heappop(events)
        dst = transfers[t].dst
        first = (cycle - 1) * den // num + 1  # the first slot starting at or after `cycle`
        route = routes[t]
        if route is not None:
            channel = route[hop]
        else:
            channel = _adaptive(graph, first_end, router.distances_to(dst), chip, next_free, first, rng)
        slot = max(first, next_free[channel])
        next_free[channel] = slot + 1
        arrive = -(-(slot + 1) * num // den) + latency[channel]
        hops += 1
        here = ends_to[channel]
        if here == dst:
            completion[t] = max(completion[t], arrive + eject)
        else:
            heapq.heappush(events, (arrive + forward, seq, t, here, hop + 1))
            seq += 1
    return DynamicRun(routing, seed, completion, hops)


def _adaptive(graph, first_end: list[int], to_dst: np.ndarray, chip: int, next_free: list[int], first: int,
              rng: np.random.Generator) -> int:
    """The channel one hop closer to the destination whose queue frees soonest."""
    nbrs, edges = graph.adjacent(chip)
    best, choices = None, []
    for link in edges[to_dst[nbrs] == to_dst[chip] - 1].tolist():
        channel = 2 * link + (chip != first_end[link])
        wait = max(first, next_free[channel])
        if best is None or wait < best:
            best, choices = wait, [channel]
        elif wait == best:
            choices.append(channel)
    return choices[int(rng.integers(len(choices)))] if len(choices) > 1 else choices[0]


def random_traffic(topo: Topology, count: int, nbytes: int, seed: int = 0, window_cycles: int = 0) -> list[Transfer]:
    """`count` transfers of `nbytes` between random distinct chips, starting uniformly in [0, window)."""
    if topo.chips < 2:
        raise UserError("random traffic needs at least 2 chips.")
    rng = np.random.default_rng(seed)
    src = rng.integers(0, topo.chips, count)
    dst = (src + rng.integers(1, topo.chips, count)) % topo.chips
    start = rng.integers(0, window_cycles + 1, count)
    return [Transfer(int(a), int(b), nbytes, int(c), name="random")
            for a, b, c in zip(src.tolist(), dst.tolist(), start.tolist(), strict=True)]


def compare(topo: Topology, transfers: list[Transfer], seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
            jitter_cycles: int = 0, timing: NetworkTiming | None = None) -> list[dict[str, Any]]:
    """Latency of each transfer (completion - earliest) scheduled and dynamic, over several runs.

    The scheduled network is compiled once, transfers in order of their earliest cycle (first come,
    first served, as the queues of the dynamic network are), and runs the same every time; each dynamic
    run draws its own random choices and jitter. Percentiles pool every run; `spread` is over runs."""
    timing = timing or NetworkTiming(topo.spec)
    earliest = np.array([t.earliest for t in transfers], np.int64)
    order = np.argsort(earliest, kind="stable")
    fixed = np.empty(len(transfers), np.int64)
    fixed[order] = schedule(topo, [transfers[i] for i in order.tolist()], timing).completion - earliest[order]
    rows = [_row("scheduled", [fixed] * len(seeds), timing)]
    for routing in ROUTINGS:
        runs = [simulate(topo, transfers, routing, seed, jitter_cycles, timing).completion - earliest
                for seed in seeds]
        rows.append(_row(f"dynamic {routing}", runs, timing))
    return rows


def _row(mode: str, runs: list[np.ndarray], timing: NetworkTiming) -> dict[str, Any]:
    pooled = np.concatenate(runs)
    worst = np.array([r.max() for r in runs])
    p99 = np.array([np.percentile(r, 99) for r in runs])
    ns = 1e9 / timing.spec.clock_hz
    return {
        "mode": mode,
        "runs": len(runs),
        "mean_ns": float(pooled.mean() * ns),
        "p50_ns": float(np.percentile(pooled, 50) * ns),
        "p99_ns": float(np.percentile(pooled, 99) * ns),
        "max_ns": float(pooled.max() * ns),
        "std_ns": float(pooled.std() * ns),
        "p99_spread_ns": float((p99.max() - p99.min()) * ns),
        "max_spread_ns": float((worst.max() - worst.min()) * ns),
    }
