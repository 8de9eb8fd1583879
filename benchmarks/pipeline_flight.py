"""Requests in flight on a pipeline of chips: the system's simulated tokens/s with N requests on N stages
against the same requests one at a time (runtime/pipeline_flight.py).

Each request is a one-token prompt, so every step is the decode step and the figure is the pipeline's steady
decode throughput; for each chip count it prints the stages' cycles, the system tokens/s in flight and one
request at a time, their ratio (N at best, as far as the slowest stage allows; the pipeline's filling and
draining count against it), the requests' own decode rates in flight added up against one request's alone,
the chips' busy shares and the host seconds. The first request's tokens are checked against the same request alone.

    .venv/bin/python benchmarks/pipeline_flight.py [--model smollm2-135m] [--numerics int8] [--chips 2,4]
        [--tokens 4]
"""

from __future__ import annotations

import argparse
import time

from openlpu.models.registry import DEFAULT_MODEL, load_model
from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.runtime.pipeline_flight import generate_in_flight

WORDS = " The capital of France is Paris and the"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--numerics", default="int8")
    p.add_argument("--chips", default="2,4", help="chip counts, comma-separated; as many requests as chips")
    p.add_argument("--tokens", type=int, default=4, help="new tokens per request")
    args = p.parse_args()
    model = load_model(args.model)
    for chips in (int(n) for n in args.chips.split(",")):
        engine = LpuEngine(model, args.numerics, executor="fast", chips=chips)
        t0 = time.perf_counter()
        engine.prepare(1, args.tokens)
        compile_s = time.perf_counter() - t0
        prompts = [[t] for t in model.tokenizer.encode(WORDS)[:chips]]
        t0 = time.perf_counter()
        flight = generate_in_flight(engine, prompts, args.tokens)
        flight_s = time.perf_counter() - t0
        alone = [engine.generate(p, args.tokens).token_ids for p in prompts[:1]]
        assert [g.token_ids for g in flight.generations[:1]] == alone, "a request's tokens changed in flight"
        decode = flight.generations[0].decode[-1]
        together, one = flight.system_tokens_per_s, flight.one_at_a_time_tokens_per_s
        print(f"{chips} chips, {args.numerics}: layers {engine.layers}")
        print(f"  decode step     {decode.cycles:,} cycles: " +
              ", ".join(f"{name} {cycles:,}" for name, _, cycles in decode.events))
        print(f"  system          {together:,.0f} tokens/s with {chips} requests in flight, {one:,.0f} one at a "
              f"time: {together / one:.2f}x")
        steady = sum(flight.decode_tokens_per_s(r) for r in range(chips))  # each from its first token to its last
        single = flight.generations[0].tokens_per_s
        print(f"  steady decode   {steady:,.0f} tokens/s: the requests' own rates in flight added up, "
              f"{steady / single:.2f}x one request's {single:,.0f}")
        print("  busy            " + ", ".join(f"{name} {share:.0%}" for name, share in flight.utilisation().items()))
        print(f"  host            compile {compile_s:,.0f} s, {chips} x {args.tokens} tokens in flight "
              f"{flight_s:,.0f} s")


if __name__ == "__main__":
    main()
