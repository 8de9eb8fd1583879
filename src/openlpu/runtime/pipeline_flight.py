"""Several requests in flight on a pipeline of chips: stage k works on one request's step while stage k + 1
works on another's.

Each request is an LpuEngine generation advanced a span at a time (`LpuEngine.generation`): a step's stage on
its chip, then its hand-off on the link to the next stage, and so on to the last stage, whose logits give the
token that the request's next step takes. The chips and the links are resources busy over intervals of cycles.
A span starts when its input is there (the end of the request's previous span: the hand-off into its stage,
or for a step's first stage the step before, since a decode token needs the last one's logits) and its
resource is free. Spans are taken in the order their inputs become ready, first come first served on every
resource (ties in the order they became ready), and the host runs them in that order, so a chip runs the
stages of the requests in the order the hardware would. A span's cycles are its compiled program's as it ran
(the hand-off's scheduled makespan for a link), so the timeline is exact for the programs. One request alone
gets `generate`'s figures: its spans follow one another.

Each request has its own KV cache, loaded into the stage programs' state SRAM when its step runs (not counted
in the cycles; a chip would keep one cache region per request in flight, SmolLM2's 1.5 MB each at 64 slots),
so its tokens are the ones it gets alone. The prompt's own prefill steps follow one another like its decode
steps, though their inputs are known at the start: overlapping them on the stages would shorten the time to
first token further.
"""

from __future__ import annotations

import heapq
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from openlpu.chip.spec import ChipSpec
from openlpu.errors import UserError
from openlpu.runtime.lpu_engine import GREEDY, Generation, LpuEngine, Progress
from openlpu.runtime.sampling import SamplingParams


@dataclass(frozen=True)
class Busy:
    """A resource ("chip k" or "link k->k+1") busy on one request's span over cycles [start, end)."""

    resource: str
    request: int
    start: int
    end: int


@dataclass
class Flight:
    """Requests that shared the pipeline: their generations and the timeline of every span."""

    generations: list[Generation]
    busy: list[Busy]
    chip: ChipSpec
    chips: int
    host_s: float  # wall seconds for all of it (compiling apart)

    @property
    def lpu(self) -> bool:
        """The timeline has cycles: the reference executor runs no program."""
        return self.generations[0].executor != "reference"

    def step_ends(self, request: int) -> list[int]:
        """The cycle each step of `request` ends, prompt steps first: the end of the span where its spans'
        cycles add up to the steps' own (StepRun.cycles)."""
        gen = self.generations[request]
        spans = iter(b for b in self.busy if b.request == request)
        ends, spent, last = [], 0, 0
        for cycles in accumulate(s.cycles for s in gen.prefill + gen.decode):
            while spent < cycles:
                span = next(spans)
                spent, last = spent + span.end - span.start, span.end
            ends.append(last)
        return ends

    @property
    def makespan(self) -> int:
        """Cycles from the start to the last token."""
        return max(b.end for b in self.busy)

    @property
    def makespan_s(self) -> float:
        return self.makespan / self.chip.clock_hz

    def ttft_s(self, request: int) -> float:
        """Simulated time from the start (every request arrives at cycle 0) to its first token."""
        return self.step_ends(request)[len(self.generations[request].prefill) - 1] / self.chip.clock_hz

    def decode_tokens_per_s(self, request: int) -> float:
        """Simulated decode tokens per second of `request` in flight: its tokens after the first over the
        time from its first token to its last."""
        gen, ends = self.generations[request], self.step_ends(request)
        span = ends[-1] - ends[len(gen.prefill) - 1]
        return len(gen.decode) * self.chip.clock_hz / span if span else 0.0

    @property
    def completion_tokens(self) -> int:
        return sum(g.completion_tokens for g in self.generations)

    @property
    def system_tokens_per_s(self) -> float:
        """System tokens per second: all requests' new tokens over the time to the last one."""
        return self.completion_tokens * self.chip.clock_hz / self.makespan if self.lpu else 0.0

    @property
    def one_at_a_time_tokens_per_s(self) -> float:
        """System tokens per second of the same requests run one after the other (each one's cycles alone)."""
        total = sum(g.prefill_cycles + g.decode_cycles for g in self.generations)
        return self.completion_tokens * self.chip.clock_hz / total if self.lpu else 0.0

    def utilisation(self) -> dict[str, float]:
        """Each chip's and each link's busy share of the makespan."""
        busy: dict[str, int] = defaultdict(int)
        for b in self.busy:
            busy[b.resource] += b.end - b.start
        return {name: cycles / self.makespan if self.lpu else 0.0 for name, cycles in busy.items()}

    def summary(self) -> dict:
        requests = [{"text": g.text, "token_ids": g.token_ids, "finish_reason": g.finish_reason,
                     "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                     "ttft_s": self.ttft_s(r), "tokens_per_s": self.decode_tokens_per_s(r),
                     "finish_s": self.step_ends(r)[-1] / self.chip.clock_hz,
                     "alone": {"ttft_s": g.ttft_s, "tokens_per_s": g.tokens_per_s}}
                    for r, g in enumerate(self.generations)]
        first = self.generations[0]
        return {"requests": requests, "chips": self.chips, "chip": self.chip.name, "numerics": first.numerics,
                "executor": first.executor, "completion_tokens": self.completion_tokens,
                "makespan_s": self.makespan_s, "tokens_per_s": self.system_tokens_per_s,
                "one_at_a_time_tokens_per_s": self.one_at_a_time_tokens_per_s,
                "utilisation": self.utilisation(), "host_s": self.host_s}


def generate_in_flight(engine: LpuEngine, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                       stop_ids: Iterable[int] = (), sampling: SamplingParams = GREEDY,
                       progress: Progress | None = None) -> Flight:
    """Generate for every prompt at once on the engine's pipeline, each up to `max_new_tokens` tokens chosen
    by `sampling` (a seed gives every request the same draws it gets alone)."""
    if not prompts:
        raise UserError("no prompts: give at least one request.")
    t0 = time.perf_counter()
    stops = frozenset(stop_ids)
    totals = {"prompt": sum(len(p) for p in prompts), "decode": len(prompts) * max_new_tokens}
    counts: dict[tuple[str, int], int] = {}  # (phase, request) -> its count

    def report(r: int) -> Progress:  # request r's progress callback: each phase summed over the requests
        def update(phase: str, count: int, _total: int) -> None:
            counts[phase, r] = count
            progress(phase, sum(n for (p, _), n in counts.items() if p == phase), totals[phase])
        return update

    runs = [engine.generation(p, max_new_tokens, stops, sampling, report(r) if progress else None)
            for r, p in enumerate(prompts)]  # every prompt checked before any runs
    ready = [(0, r, r) for r in range(len(runs))]  # (cycle its next span's input is there, arrival order, request)
    free: dict[str, int] = defaultdict(int)  # the cycle each resource frees
    busy: list[Busy] = []
    gens: list[Generation | None] = [None] * len(runs)
    arrivals = len(runs)
    while ready:
        cycle, _, r = heapq.heappop(ready)
        try:
            resource, cycles = next(runs[r])
        except StopIteration as end:
            gens[r] = end.value
            continue
        start = max(cycle, free[resource])
        free[resource] = start + cycles
        busy.append(Busy(resource, r, start, start + cycles))
        heapq.heappush(ready, (start + cycles, arrivals, r))
        arrivals += 1
    return Flight(gens, busy, engine.chip, engine.chips, time.perf_counter() - t0)

