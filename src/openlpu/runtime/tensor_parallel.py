"""A step split by tensor parallelism over the chips of a node (models/tp_graph.py): each segment runs on
every chip at once, then the chips all-reduce their partial sums over the node's links.

A segment's programs start together (the chips are aligned, see system/clocks.py) and the all-reduce starts
when the slowest has its partial sum, so a segment costs the slowest chip's cycles plus the all-reduce's
latency; the step is their sum, the head's program on chip 0 last. The all-reduce is compiled into a link
schedule once per step shape and moved by the network executor with real bytes, fp32 adds on arrival. A
link that loses flits is noticed by the chip that expected them; every link is probed, every step's
all-reduce re-planned around the dead ones, and the all-reduce replayed, as the pipeline's hand-offs are.

The KV cache of chip r's heads lives in its programs' state `k{i}`, `v{i}`; the sequence keeps them under
`chip{r}.k{i}`, one image per chip.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from openlpu.compiler.compile import Compiled, compile
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError
from openlpu.models.lpu_graph import step_inputs
from openlpu.models.tp_graph import Shard, build_segment_graph, segments
from openlpu.system.collectives import CollectivePlan, LinkFailure, compile_collective, run

if TYPE_CHECKING:  # lpu_engine imports this module
    from openlpu.runtime.lpu_engine import LpuEngine, Span

TRACK_ALLREDUCE = "all-reduce"


@dataclass
class Segment:
    kind: str  # attn, ffn or head
    layer: int
    graphs: list[Graph]  # one per chip (head: chip 0's only)
    compiled: list[Compiled] | None  # None on the reference executor


@dataclass
class TensorStep:
    tokens: int
    cache_len: int
    segments: list[Segment]
    allreduce: CollectivePlan  # of a [tokens, d_model] fp32 partial sum over the group's chips
    compile_s: float


def build_step(engine: LpuEngine, shards: list[Shard], tokens: int, cache_len: int,
               sampling: str = "greedy") -> TensorStep:
    """Every segment's graph for every chip, compiled unless the executor is the reference, and the
    all-reduce's link schedule; refused before compiling when a chip's weights and cache exceed its SRAM.
    `sampling`: how the head chooses `next` (models/sampling_graph.py)."""
    t0 = time.perf_counter()
    c, w = engine.model.config, engine.model.weights
    built = [Segment(kind, layer, [build_segment_graph(c, w, s, kind, layer, engine.numerics, tokens, cache_len,
                                                       engine.chip, sampling)
                                   for s in (shards[:1] if kind == "head" else shards)], None)
             for kind, layer in segments(c)]
    resident = [sum(_resident_bytes(seg.graphs[r]) for seg in built if r < len(seg.graphs))
                for r in range(len(shards))]
    _check_fits(engine, resident, 0)
    if engine.executor != "reference":
        for seg in built:
            seg.compiled = [compile(g, engine.chip, check=False) for g in seg.graphs]
            for r, cp in enumerate(seg.compiled):  # every segment's instructions stay in SRAM too
                resident[r] += cp.program.instructions() * engine.chip.instruction_bytes
        transient = max(cp.sram_bytes - _resident_bytes(cp.graph) for seg in built for cp in seg.compiled)
        _check_fits(engine, resident, transient)
    plan = plan_allreduce(engine, len(shards), tokens)
    return TensorStep(tokens, cache_len, built, plan, time.perf_counter() - t0)


def _resident_bytes(graph: Graph) -> int:
    """Bytes a segment keeps in SRAM for good: its weights and constants, and its part of the KV cache."""
    return graph.constant_bytes + sum(
        int(np.prod(n.shape)) * 2 for n in graph.nodes if n.op == "state")


def _check_fits(engine: LpuEngine, resident: list[int], transient: int) -> None:
    """Every segment's weights, cache and instructions stay in a chip's SRAM together; one segment's activations
    at a time."""
    worst = int(np.argmax(resident))
    if resident[worst] + transient > engine.chip.sram_bytes:
        c, ways = engine.model.config, len(resident)
        raise UserError(f"{c.name} at {engine.numerics} split {ways} ways puts {resident[worst] / 2**20:,.0f} MiB of "
                        f"weights, cache and instructions (plus {transient / 2**20:,.0f} MiB of activations) on chip "
                        f"{worst}, more than its {engine.chip.sram_bytes / 2**20:,.0f} MiB of SRAM: use more chips or "
                        "--numerics int8.")


def plan_allreduce(engine: LpuEngine, ways: int, tokens: int) -> CollectivePlan:
    nbytes = tokens * engine.model.config.d_model * 4  # the fp32 partial sums
    return compile_collective("allreduce", engine.topology, nbytes, list(range(ways)),
                              failed_links=engine.known_failed)


def run_step(engine: LpuEngine, step: TensorStep, shards: list[Shard], cache: dict[str, np.ndarray], x: np.ndarray,
             position: int, draws: dict[str, np.ndarray]) -> Generator[Span, None, tuple[dict, int, int, list]]:
    """One step of embeddings x at `position` (`draws`: the head's sampling inputs). Yields (resource, cycles)
    per segment ("chips") and per all-reduce; returns the head's outputs, the step's cycles, the all-reduces'
    share of them, and the trace events (track, start, cycles) from the step's start."""
    c = engine.model.config
    inputs = [step_inputs(c, x, position, step.cache_len, len(s.heads), len(s.kv_heads)) for s in shards]
    xs = [x] * len(shards)
    reduced: list[np.ndarray] | None = None
    cycles = link_cycles = 0
    events: list[tuple[str, int, int]] = []
    for seg in step.segments:
        partials, spent = [], []
        for r, graph in enumerate(seg.graphs):
            feed = {"x": xs[r]} | ({"reduced": reduced[r]} if reduced is not None else {})
            if seg.kind == "attn":
                feed |= {k: v for k, v in inputs[r].items() if k != "x"}
            elif seg.kind == "head":
                feed |= draws
            state = {k: cache[f"chip{r}.{k}"] for k in (f"k{seg.layer}", f"v{seg.layer}")
                     if f"chip{r}.{k}" in cache}
            if seg.compiled is None:
                outputs = graph.evaluate(feed, lanes=engine.chip.lanes, state=state)
                spent.append(0)
            else:
                result = seg.compiled[r].run(feed, executor=engine.executor, state=state)
                outputs = result.outputs
                spent.append(result.cycles)
                events.append((f"chip {r}", cycles, result.cycles))
            cache.update({f"chip{r}.{k}": v for k, v in state.items()})
            xs[r] = outputs.get("x_out", xs[r])
            partials.append(outputs.get("partial"))
        cycles += max(spent)
        yield "chips", max(spent)
        if seg.kind == "head":
            break
        reduced, latency = _allreduce(engine, step, partials)
        if seg.compiled is not None:
            events += [(track, cycles + start, length) for track, start, length in _link_events(step.allreduce)]
            cycles, link_cycles = cycles + latency, link_cycles + latency
        yield TRACK_ALLREDUCE, latency if seg.compiled is not None else 0
    return outputs, cycles, link_cycles, events


def _allreduce(engine: LpuEngine, step: TensorStep, partials: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Every chip's copy of the sum and the cycles it took, a lost attempt's included (see the module doc)."""
    try:
        return run(step.allreduce, partials, engine.failed_links), step.allreduce.latency
    except LinkFailure as failure:
        lost = step.allreduce.latency
        engine.link_failed(failure.detections[0])
        sums, cycles = _allreduce(engine, step, partials)
        return sums, lost + cycles


def _link_events(plan: CollectivePlan) -> list[tuple[str, int, int]]:
    """(link a-b, first departure, busy cycles until the last arrival) of every link the all-reduce uses."""
    s = plan.schedule
    events = []
    for link in np.unique(s.hop_link).tolist():
        on = s.hop_link == link
        start, end = int(s.hop_depart[on].min()), int(s.hop_arrive[on].max())
        a, b = s.topo.ends[link].tolist()
        events.append((f"link {a}-{b}", start, end - start))
    return events
