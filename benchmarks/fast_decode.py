"""Host time of the fast executor on one llama decode step compiled for tsp-v1 (SmolLM2-135M by default).

Prints the compile time, the fast executor's plan of the program (built once, on its first run), its
first run after that, its second (which finds the work that is the same at every run and keeps its
results: openlpu.sim.fold), the best of `--repeat` later runs (a decode loop runs it again and again with
new inputs and KV cache), and the same step through `Graph.evaluate` and the fp32 numpy model for scale.
With `--exact` it also runs the cycle-accurate executor once and checks that the two agree bit for bit
and cycle for cycle.

    .venv/bin/python benchmarks/fast_decode.py [--model smollm2-135m | --tiny] [--numerics int8]
        [--cache 64] [--repeat 3] [--exact] [--profile FILE]

`--profile FILE` writes a cProfile of one later run (read it with `python -m pstats FILE`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS; see fast_vs_exact.py

import argparse  # noqa: E402
import cProfile  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from openlpu.compiler.compile import compile  # noqa: E402
from openlpu.models.lpu_graph import build_step_graph, step_inputs  # noqa: E402
from openlpu.models.reference import LlamaReference  # noqa: E402
from openlpu.models.registry import DEFAULT_MODEL, load_model  # noqa: E402
from openlpu.models.tiny_gguf import write_tiny_gguf  # noqa: E402
from openlpu.sim import fast  # noqa: E402


def inputs_for(model, cache_len: int, rng) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A decode step's inputs and KV cache (the program's state): a random token after a random cache half
    full."""
    c = model.config
    start = cache_len // 2
    inputs = step_inputs(c, model.weights.token_embd[rng.integers(0, c.vocab, 1)], start, cache_len)
    kv = c.n_kv_heads * c.head_dim
    filled = (np.arange(cache_len) < start)[:, None]
    cache = {f"{kind}{i}": (rng.standard_normal((cache_len, kv)) * filled).astype(np.float16)
             for i in range(c.n_layers) for kind in "kv"}
    return inputs, cache


def timed(fn, repeat: int = 1):
    """Best wall and CPU seconds of `repeat` calls, and the last result (CPU time moves less with the machine's
    load than wall time)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu, out


def same(a, b) -> bool:
    return ((a.cycles, a.vector_instructions, a.busy) == (b.cycles, b.vector_instructions, b.busy)
            and all(a.outputs[k].tobytes() == b.outputs[k].tobytes() for k in a.outputs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or .gguf path")
    parser.add_argument("--tiny", action="store_true", help="the tiny GGUF (2 layers, d_model 64) instead")
    parser.add_argument("--numerics", default="int8", help="int8 or fp16")
    parser.add_argument("--cache", type=int, default=64, help="cache slots")
    parser.add_argument("--repeat", type=int, default=3, help="later runs; the best is shown")
    parser.add_argument("--exact", action="store_true", help="also run the cycle-accurate executor and compare")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of one later run")
    args = parser.parse_args()
    if args.tiny:
        args.model = str(write_tiny_gguf(os.path.join(tempfile.mkdtemp(), "tiny.gguf")))
    model = load_model(args.model)
    rng = np.random.default_rng(0)

    graph = build_step_graph(model.config, model.weights, args.numerics, 1, args.cache)
    compile_s, _, compiled = timed(lambda: compile(graph, "tsp-v1", check=False))
    plan = timed(lambda: fast.plan_for(compiled.program))
    inputs, cache = inputs_for(model, args.cache, rng)
    first = timed(lambda: compiled.run(inputs, executor="fast", state=dict(cache)))
    inputs, cache = inputs_for(model, args.cache, rng)
    second = timed(lambda: compiled.run(inputs, executor="fast", state=dict(cache)))
    inputs, cache = inputs_for(model, args.cache, rng)
    again = timed(lambda: compiled.run(inputs, executor="fast", state=dict(cache)), args.repeat)
    result = again[2]
    if args.profile:
        cProfile.runctx("compiled.run(inputs, executor='fast', state=dict(cache))", globals(),
                        {"compiled": compiled, "inputs": inputs, "cache": cache}, args.profile)
    evaluate_s = timed(lambda: graph.evaluate(inputs, lanes=compiled.chip.lanes, state=dict(cache)))[0]
    fp32 = LlamaReference(model.config, model.weights)
    fp32.forward([1] * (args.cache // 2))
    fp32_s = timed(lambda: fp32.forward([2]))[0]

    print(f"{model.name if not args.tiny else 'tiny GGUF'} {args.numerics} decode step, {args.cache}-slot cache: "
          f"{result.vector_instructions:,} vector instructions, {result.cycles:,} cycles; "
          f"BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}")
    print("                                       wall s     CPU s")
    print(f"  compile (graph built before)     {compile_s:8.3f}")
    print(f"  fast executor plan (once)        {plan[0]:8.3f}  {plan[1]:8.3f}")
    print(f"  fast executor, first run         {first[0]:8.3f}  {first[1]:8.3f}   (after the plan)")
    print(f"  fast executor, second run        {second[0]:8.3f}  {second[1]:8.3f}   (finds what stays the same)")
    print(f"  fast executor, later runs        {again[0]:8.3f}  {again[1]:8.3f}   best of {args.repeat}")
    print(f"  Graph.evaluate                   {evaluate_s:8.3f}")
    print(f"  fp32 numpy model (KV cache)      {fp32_s:8.3f}             later runs (wall) are "
          f"{again[0] / fp32_s:,.1f}x slower")
    if args.exact:
        exact_s, _, exact = timed(lambda: compiled.run(inputs, executor="exact", state=dict(cache)))
        assert same(exact, result), "the executors disagree"
        print(f"  exact executor                   {exact_s:8.3f}             agrees bit for bit and cycle for cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
