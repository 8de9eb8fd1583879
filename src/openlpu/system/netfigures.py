"""The scheduled network's latencies next to the published ones: each figure is computed by scheduling
real transfers on the built wiring, never typed; the published numbers are only compared with."""

from __future__ import annotations

from typing import Any

import numpy as np

from openlpu.sources import sources
from openlpu.system import topology
from openlpu.system.collectives import compile_collective
from openlpu.system.published import PUBLISHED
from openlpu.system.schedule import Scheduler, Transfer, schedule
from openlpu.system.spec import GROQ_V1, SystemSpec
from openlpu.system.timing import NetworkTiming
from openlpu.system.topology import Topology


def reduce_chain(spec: SystemSpec = GROQ_V1, chips: int | None = None) -> np.ndarray:
    """A pipelined reduction along the chips of a node, 0 -> 1 -> ... : each chip adds its own vector to
    the one arriving and sends the sum on. Returns the cycle each hop's vector arrives."""
    topo = topology.node(chips or spec.chips_per_node, spec)
    sched = Scheduler(topo)
    ready, arrivals = 0, []
    for chip in range(topo.chips - 1):
        tid = sched.add(Transfer(chip, chip + 1, spec.flit_payload_bytes, ready, name="reduce chain"))
        arrivals.append(int(sched.arrivals(tid)[0]))
        ready = arrivals[-1] + sched.timing.reduce_cycles
    return np.array(arrivals)


def pipelined_hop_cycles(spec: SystemSpec = GROQ_V1) -> float:
    """Mean cycles per hop of the reduce chain: slot wait, flit, link, receive-add-send."""
    arrivals = reduce_chain(spec)
    return float((arrivals[-1] - arrivals[0]) / (len(arrivals) - 1))


def farthest_pair(topo: Topology) -> tuple[int, int]:
    """Two chips a diameter apart (sources: one per symmetry orbit)."""
    sources_ = np.arange(topo.symmetry_step)
    src = int(sources_[np.argmax(topo.graph.eccentricities(sources_))])
    return src, int(np.argmax(topo.graph.distances(src)))


def worst_vector_cycles(topo: Topology) -> tuple[int, int]:
    """(cycles, hops) for one vector between the two farthest chips, from the source's SRAM to the
    destination's, scheduled on an idle network."""
    src, dst = farthest_pair(topo)
    sched = schedule(topo, [Transfer(src, dst, topo.spec.flit_payload_bytes)])
    return int(sched.completion[0]), sched.paths[int(sched.flit_route[0])].hops


def detour_crossover_flits(spec: SystemSpec = GROQ_V1, most: int = 64) -> int:
    """The smallest transfer (in flits) between two chips of a node that finishes sooner when the scheduler
    may also use the 2-hop detours through the other chips of the node than on the direct link alone."""
    topo = topology.node(spec.chips_per_node, spec)
    for flits in range(1, most + 1):
        transfer = [Transfer(0, 1, flits * spec.flit_payload_bytes)]
        if schedule(topo, transfer, spread_bytes=0).makespan < schedule(topo, transfer, nonminimal=False).makespan:
            return flits
    return most + 1


def figures(spec: SystemSpec = GROQ_V1) -> list[dict[str, Any]]:
    """Model vs published rows: pipelined all-reduce hop, worst-case vector latencies, detour break-even."""
    cite = sources(PUBLISHED)
    timing = NetworkTiming(spec)
    ns = 1 / spec.clock_hz
    rows = []

    def row(figure: str, model: float, field: str, unit: str, detail: str) -> None:
        published = getattr(PUBLISHED, field)
        rows.append({"figure": figure, "model": model, "published": published, "unit": unit,
                     "ratio": model / published, "source": cite[field], "detail": detail})

    hop = pipelined_hop_cycles(spec)
    row("pipelined all-reduce hop", hop * ns, "pipelined_hop_s", "s",
        f"{hop:.1f} cycles: slot wait + flit {timing.flit_cycles:.1f} + link {timing.latency_cycles('local')} + "
        f"reduce {timing.reduce_cycles} + inject {timing.inject_cycles}")
    node_ar = compile_collective("allreduce", topology.node(spec.chips_per_node, spec), spec.flit_payload_bytes)
    row("8-way all-reduce of one vector, per hop (2 hops)", node_ar.latency / 2 * ns, "pipelined_hop_s", "s",
        f"{node_ar.latency} cycles for reduce-scatter + all-gather")
    for topo, field, label in (
        (topology.dragonfly(1, spec), "rack_end_to_end_s", "rack: worst-case vector, SRAM to SRAM"),
        (topology.fully_connected_nodes(spec.max_fully_connected_nodes, spec), "fully_connected_worst_s",
         f"{spec.max_fully_connected_nodes * spec.chips_per_node} chips: worst-case vector"),
        (topology.dragonfly(spec.max_racks, spec), "full_scale_latency_s",
         f"{spec.max_chips:,} chips: worst-case vector, end to end"),
    ):
        cycles, hops = worst_vector_cycles(topo)
        row(label, cycles * ns, field, "s", f"{cycles} cycles over {hops} link hops")
    flits = detour_crossover_flits(spec)
    row("smallest transfer in a node that detours speed up", flits * spec.flit_payload_bytes,
        "nonminimal_no_gain_bytes", "B", f"{flits} flits (closed-form floor: {timing.spread_min_flits} flits, "
        "n x flit > hop + forward)")
    return rows
