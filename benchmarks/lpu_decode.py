"""The llama step graph on the simulated LPU: compile time, simulated cycles per token, host speed.

Generates greedy tokens after a short prompt with `openlpu.runtime.lpu_engine` on the fast executor and checks
them against the step graph's numpy reference (`Graph.evaluate`, same numerics); prints the decode program's
scheduled and run cycles, the tokens/s they imply at the chip's clock, the compile time, and host seconds
per token for the fast executor, the graph reference and the fp32 numpy model (with KV cache).

`--layers` keeps the first N layers (the output head stays): the whole SmolLM2-135M needs more SRAM than
today's compiler leaves (docs/lpu.md). With several counts (`--layers 4,16`) it also fits cycles per token
as a line in the layer count and extrapolates to the model's full depth, marked as such.

    .venv/bin/python benchmarks/lpu_decode.py [--model smollm2-135m] [--numerics int8] [--layers 4,16]
        [--tokens 4] [--cache 64] [--exact]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np

from openlpu.errors import UserError
from openlpu.models.evaluation import eval_token_ids, score, teacher_forced_logits
from openlpu.models.reference import LlamaReference, greedy
from openlpu.models.registry import DEFAULT_MODEL, load_model
from openlpu.runtime.lpu_engine import PREFILL_TOKENS, LpuEngine

PROMPT = "What is the capital of France?"


def run(model, layers: int, args) -> int:
    """One layer count: generate, check, print; returns the decode cycles per token."""
    model = replace(model, config=replace(model.config, n_layers=layers),
                    weights=replace(model.weights, layers=model.weights.layers[:layers]))
    prompt = model.tokenizer.encode_chat([{"role": "user", "content": PROMPT}])
    lpu = LpuEngine(model, args.numerics, executor="fast", cache_bucket=args.cache, prefill_tokens=args.prefill)
    gen = lpu.generate(prompt, args.tokens)
    decode = lpu.step(1, gen.decode[-1].cache_len)
    (program,) = decode.stages  # one chip
    inputs = _decode_inputs(lpu, gen)
    t0 = time.perf_counter()
    program.compiled.run(inputs, executor="fast")
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    program.graph.evaluate(inputs, lanes=lpu.chip.lanes)
    evaluate_s = time.perf_counter() - t0
    reference = LpuEngine(model, args.numerics, executor="reference", cache_bucket=args.cache,
                          prefill_tokens=args.prefill).generate(prompt, args.tokens)
    fp32 = LlamaReference(model.config, model.weights)
    fp32_tokens = greedy(fp32, prompt, args.tokens)
    t0 = time.perf_counter()
    for token in fp32_tokens:
        fp32.forward([token])
    fp32_s = (time.perf_counter() - t0) / len(fp32_tokens)
    clock = lpu.chip.clock_hz
    print(f"layers           {layers} of {args.full_layers}, {args.numerics}, cache bucket {args.cache}, "
          f"{len(prompt)} prompt tokens in steps of {args.prefill}")
    print(f"compile          {decode.compile_s:.1f} s decode step, {gen.compile_s:.1f} s all steps "
          f"({len(program.graph.nodes):,} graph nodes)")
    print(f"decode cycles    {program.compiled.cycles_scheduled:,} scheduled, {gen.decode[-1].cycles:,} run "
          f"({decode.cache_len}-slot cache) -> {clock / gen.decode[-1].cycles:,.0f} tokens/s at {clock / 1e6:.0f} MHz; "
          f"mean over the generation {gen.cycles_per_token:,.0f} -> {gen.tokens_per_s:,.0f} tokens/s")
    print(f"prefill          {gen.prefill_cycles:,} cycles -> time to first token {gen.ttft_s * 1e6:,.0f} us")
    print(f"tokens           {gen.token_ids} {'==' if gen.token_ids == reference.token_ids else '!='} graph "
          f"reference; fp32 {fp32_tokens}")
    print(f"host per token   fast executor {fast_s:.2f} s, graph reference {evaluate_s:.2f} s, fp32 numpy "
          f"{fp32_s:.3f} s")
    if args.exact:
        t0 = time.perf_counter()
        result = program.compiled.run(inputs, executor="exact")
        print(f"exact executor   {time.perf_counter() - t0:.1f} s for one decode step, "
              f"{result.vector_instructions:,} vector instructions, {result.cycles:,} cycles")
    return gen.decode[-1].cycles


def quality(model, args) -> int:
    """Teacher-forced next-token agreement with the fp32 model and perplexity, through the step graph's numpy
    reference (the LPU's numerics, bit for bit) in prefill steps of the engine's default size."""
    ids = eval_token_ids(model.tokenizer, args.quality)
    t0 = time.perf_counter()
    engine = LpuEngine(model, args.numerics, executor="reference", cache_bucket=args.cache)
    ours = engine.teacher_forced_logits(ids)[:-1]
    seconds = time.perf_counter() - t0
    fp32 = teacher_forced_logits(LlamaReference(model.config, model.weights), ids)
    mine, base = score(ours, ids, fp32), score(fp32, ids)
    print(f"quality          {args.numerics}: agreement with fp32 {mine.agreement:.1%}, "
          f"perplexity {mine.perplexity:.2f} (fp32 {base.perplexity:.2f}) over {mine.n_predictions} predictions "
          f"of the evaluation text ({seconds:.0f} s)")
    return 0


def _decode_inputs(engine: LpuEngine, gen) -> dict[str, np.ndarray]:
    """Inputs of a decode step at the end of `gen` (against the program's own cache state: the timing does not
    depend on data)."""
    from openlpu.models.lpu_graph import step_inputs

    cache_len = gen.decode[-1].cache_len
    return step_inputs(engine.model.config, engine.model.weights.token_embd[gen.token_ids[-1:]], cache_len - 1,
                       cache_len)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or .gguf path")
    parser.add_argument("--numerics", default="int8", help="int8 or fp16")
    parser.add_argument("--layers", default="", help="comma-separated layer counts (default: all)")
    parser.add_argument("--tokens", type=int, default=4, help="greedy tokens to generate")
    parser.add_argument("--cache", type=int, default=64, help="cache bucket (slots)")
    parser.add_argument("--prefill", type=int, default=PREFILL_TOKENS, help="prompt tokens per prefill step")
    parser.add_argument("--exact", action="store_true", help="also time one step on the cycle-accurate executor")
    parser.add_argument("--quality", type=int, default=0, metavar="N",
                        help="only score the first N tokens of the evaluation text, teacher-forced, against fp32")
    args = parser.parse_args()
    try:
        model = load_model(args.model)
        if args.quality:
            return quality(model, args)
        args.full_layers = model.config.n_layers
        counts = [int(n) for n in args.layers.split(",")] if args.layers else [args.full_layers]
        cycles = [run(model, n, args) for n in counts]
    except UserError as err:
        print(f"lpu_decode: {err}", file=sys.stderr)
        return 2
    if len(counts) > 1:
        slope, base = np.polyfit(counts, cycles, 1)
        full = slope * args.full_layers + base
        print(f"extrapolated     {slope:,.0f} cycles per layer + {base:,.0f} (head): {full:,.0f} cycles per token "
              f"for all {args.full_layers} layers -> {900e6 / full:,.0f} tokens/s at 900 MHz (not run: see above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
