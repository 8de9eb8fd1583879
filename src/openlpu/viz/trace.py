"""Perfetto / Chrome trace JSON of a run: one track per instruction queue, ordered west to east.

Open the file at ui.perfetto.dev (or chrome://tracing). Each vector instruction is a slice on its
queue's track from its issue cycle for as long as it occupies the queue; its arguments give the cycles
at which it read its inputs and wrote its results. Time is shown in microseconds at the chip's clock.
"""

from __future__ import annotations

import json
from pathlib import Path

from openlpu.errors import UserError
from openlpu.sim.result import RunResult


def chrome_trace(result: RunResult, pid: int = 0, process_name: str | None = None) -> list[dict]:
    chip = result.chip
    us = 1e6 / chip.clock_hz
    queues = sorted({e.queue for e in result.execs},
                    key=lambda q: (chip.position[chip.queue_target(q)[1]], q))
    tid = {q: i for i, q in enumerate(queues)}
    events: list[dict] = [{"ph": "M", "pid": pid, "name": "process_name",
                           "args": {"name": process_name or f"chip {chip.name}"}}]
    for q, t in tid.items():
        slice_ = chip.queue_target(q)[1]
        label = q if q == slice_ else f"{slice_} / {q}"
        events.append({"ph": "M", "pid": pid, "tid": t, "name": "thread_name", "args": {"name": label}})
        events.append({"ph": "M", "pid": pid, "tid": t, "name": "thread_sort_index", "args": {"sort_index": t}})
    for e in result.execs:
        events.append({
            "ph": "X", "pid": pid, "tid": tid[e.queue], "name": e.op.name, "cat": e.op.unit,
            "ts": e.cycle * us, "dur": e.op.occupancy(e.args) * us,
            "args": {"cycle": e.cycle, "reads_at": e.rcycle, "writes_at": e.wcycle,
                     "operands": {k: str(v) for k, v in e.args.items()}},
        })
    return events


def generation_trace(gen) -> list[dict]:
    """A generation on the simulated system (openlpu.runtime.lpu_engine.Generation): a track per chip with
    each step's programs, and a track per link with each hand-off between pipeline stages or, under tensor
    parallelism, the all-reduces it carries."""
    us = 1e6 / gen.chip.clock_hz
    steps = [("prompt step", s) for s in gen.prefill] + [("decode step", s) for s in gen.decode]
    tracks = list(dict.fromkeys(name for _, s in steps for name, _, _ in s.events))
    tid = {name: i for i, name in enumerate(tracks)}
    events: list[dict] = [{"ph": "M", "pid": 0, "name": "process_name",
                           "args": {"name": f"{gen.chips} x {gen.chip.name}, {gen.numerics}, {gen.parallel}"}}]
    events += [{"ph": "M", "pid": 0, "tid": t, "name": "thread_name", "args": {"name": name}}
               for name, t in tid.items()]
    t = 0
    for k, (kind, step) in enumerate(steps):
        for name, start, cycles in step.events:
            events.append({"ph": "X", "pid": 0, "tid": tid[name], "name": f"{kind} {k}", "cat": name.split()[0],
                           "ts": (t + start) * us, "dur": cycles * us,
                           "args": {"tokens": step.tokens, "cache_slots": step.cache_len, "cycles": cycles}})
        t += step.cycles
    return events


def flight_trace(flight) -> list[dict]:
    """Requests in flight on a pipeline (openlpu.runtime.pipeline_flight.Flight): a track per chip and per link,
    each span named by its request, so that one chip's stage of a request shows beside the next chip's of
    another."""
    us = 1e6 / flight.chip.clock_hz
    tid = {name: i for i, name in enumerate(dict.fromkeys(b.resource for b in flight.busy))}
    events: list[dict] = [{"ph": "M", "pid": 0, "name": "process_name",
                           "args": {"name": f"{flight.chips} x {flight.chip.name}, "
                                            f"{len(flight.generations)} requests in flight"}}]
    events += [{"ph": "M", "pid": 0, "tid": t, "name": "thread_name", "args": {"name": name}}
               for name, t in tid.items()]
    events += [{"ph": "X", "pid": 0, "tid": tid[b.resource], "name": f"request {b.request}",
                "cat": b.resource.split()[0], "ts": b.start * us, "dur": (b.end - b.start) * us,
                "args": {"request": b.request, "cycles": b.end - b.start}} for b in flight.busy]
    return events


def write_trace(path: str | Path, events: list[dict]) -> None:
    try:
        Path(path).write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}))
    except OSError as err:
        raise UserError(f"cannot write the trace to {str(path)!r} ({err.strerror}): choose a writable path.") from None
