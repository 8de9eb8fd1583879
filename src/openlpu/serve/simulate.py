"""`openlpu bench --simulate`: LLMPerf's workload on a predicted LPU system, in simulated time.

No weights and no host compute: a zoo model's timing comes from `openlpu.perf.predict` (compiled layer
shards, scheduled collectives and hand-offs), and the requests are placed on the slots of the system with
the live scheduler's `Timeline` (FIFO, the slot that frees first). The system runs as many requests at once
as the prediction has users in flight, and no more than its slowest pipeline stage lets through.

The workload is LLMPerf's closed loop: `concurrency` clients, each sending its next request the moment its
previous answer ends, `requests` in all, every prompt `input_tokens` long and every answer `output_tokens`
(LLMPerf asks for no end-of-sequence token). A request that starts at s after arriving at a has
ttft = (s - a) + the predicted TTFT of its prompt, then a token per predicted decode step, so its metrics
are LLMPerf's with the simulated clock in place of the wall clock.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from openlpu.errors import UserError
from openlpu.perf.predict import Prediction
from openlpu.serve.llmperf import RequestMetrics
from openlpu.serve.scheduler import Timeline


@dataclass(frozen=True)
class SimulatedRun:
    results: list[RequestMetrics]
    queue_times: list[float]  # simulated seconds each request waited for a slot, in order of arrival
    makespan_s: float  # simulated seconds from the first request to the end of the last


def slots(prediction: Prediction) -> int:
    """Requests the system runs at once: its users in flight, as many as its slowest stage can pass."""
    p = prediction.plan
    stage_bound = math.floor(prediction.decode_s / prediction.slowest_stage_s) * p.batch
    return max(1, min(p.users_in_flight * p.batch, stage_bound))


def simulate_load(prediction: Prediction, *, input_tokens: int, output_tokens: int, concurrency: int,
                  requests: int) -> SimulatedRun:
    for name, value in (("--input-tokens", input_tokens), ("--output-tokens", output_tokens),
                        ("--concurrency", concurrency), ("--requests", requests)):
        if value < 1:
            raise UserError(f"{name} {value} must be at least 1")
    context = prediction.plan.context
    if input_tokens + output_tokens > context:
        raise UserError(f"{input_tokens} input plus {output_tokens} output tokens exceed the context of {context}; "
                        "ask for fewer tokens")
    if input_tokens != prediction.prompt_tokens:
        raise UserError(f"the prediction is for {prediction.prompt_tokens}-token prompts, not {input_tokens}; "
                        "predict with prompt_tokens equal to --input-tokens")
    prefill_s, decode_s = prediction.ttft_s, prediction.decode_s
    service_s = prefill_s + (output_tokens - 1) * decode_s
    timeline = Timeline(slots(prediction))
    every_slot = range(len(timeline.free_at))
    arrivals = [(0.0, client) for client in range(min(concurrency, requests))]  # (time, client): ties by client
    results, queue_times, end = [], [], 0.0
    while arrivals and len(results) < requests:
        arrival, client = heapq.heappop(arrivals)
        slot, start = timeline.place(arrival, every_slot)
        finish = start + service_s
        timeline.release(slot, finish)
        e2e = finish - arrival
        results.append(RequestMetrics(
            ttft_s=start - arrival + prefill_s,
            inter_token_latency_s=e2e / output_tokens,  # LLMPerf's: the gaps, the TTFT included, per token
            end_to_end_latency_s=e2e,
            request_output_throughput_token_per_s=output_tokens / e2e,
            number_input_tokens=input_tokens,
            number_output_tokens=output_tokens))
        queue_times.append(start - arrival)
        end = max(end, finish)
        heapq.heappush(arrivals, (finish, client))
    return SimulatedRun(results, queue_times, end)
