"""Host time of the fast executor on one llama decode step compiled for tsp-v1 (SmolLM2-135M by default).

Prints the compile time, the fast executor's plan of the program (built once, on its first run), its
first run after that, the best of `--repeat` later runs with new inputs each (as a decode loop runs it), and
the same step through `Graph.evaluate` and the fp32 numpy model for scale. With `--exact` it also runs
the cycle-accurate executor once and checks that the two agree bit for bit and cycle for cycle.

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


def inputs_for(model, cache_len: int, rng) -> dict[str, np.ndarray]:
    """A decode step's inputs: a random token after a random cache half full."""
    c = model.config
    start = cache_len // 2
    inputs = step_inputs(c, model.weights.token_embd[rng.integers(0, c.vocab, 1)], start, cache_len)
    kv = c.n_kv_heads * c.head_dim
    filled = np.arange(cache_len) < start
    for i in range(c.n_layers):
        inputs[f"k{i}"] = (rng.standard_normal((cache_len, kv)) * filled[:, None]).astype(np.float16)
        inputs[f"vt{i}"] = (rng.standard_normal((kv, cache_len)) * filled).astype(np.float16)
    return inputs


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

    t0 = time.perf_counter()
    graph = build_step_graph(model.config, model.weights, args.numerics, 1, args.cache)
    compiled = compile(graph, "tsp-v1", check=False)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast.plan_for(compiled.program)
    plan_s = time.perf_counter() - t0

    inputs = inputs_for(model, args.cache, rng)
    t0 = time.perf_counter()
    first = compiled.run(inputs, executor="fast")
    first_s = time.perf_counter() - t0
    again_s = float("inf")
    for _ in range(args.repeat):
        inputs = inputs_for(model, args.cache, rng)
        t0 = time.perf_counter()
        result = compiled.run(inputs, executor="fast")
        again_s = min(again_s, time.perf_counter() - t0)
    if args.profile:
        cProfile.runctx("compiled.run(inputs, executor='fast')", globals(), {"compiled": compiled, "inputs": inputs},
                        args.profile)
    t0 = time.perf_counter()
    graph.evaluate(inputs, lanes=compiled.chip.lanes)
    evaluate_s = time.perf_counter() - t0
    fp32 = LlamaReference(model.config, model.weights)
    fp32.forward([1] * (args.cache // 2))
    t0 = time.perf_counter()
    fp32.forward([2])
    fp32_s = time.perf_counter() - t0

    print(f"{model.name if not args.tiny else 'tiny GGUF'} {args.numerics} decode step, {args.cache}-slot cache: "
          f"{first.vector_instructions:,} vector instructions, {first.cycles:,} cycles; "
          f"BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"  compile                          {compile_s:8.3f} s")
    print(f"  fast executor plan (once)        {plan_s:8.3f} s")
    print(f"  fast executor, first run         {first_s:8.3f} s   (after the plan)")
    print(f"  fast executor, new inputs        {again_s:8.3f} s   best of {args.repeat}")
    print(f"  Graph.evaluate                   {evaluate_s:8.3f} s")
    print(f"  fp32 numpy model (KV cache)      {fp32_s:8.3f} s   fast executor is {again_s / fp32_s:,.0f}x slower")
    if args.exact:
        t0 = time.perf_counter()
        exact = compiled.run(inputs, executor="exact")
        exact_s = time.perf_counter() - t0
        assert same(exact, result), "the executors disagree"
        print(f"  exact executor                   {exact_s:8.3f} s   agrees bit for bit and cycle for cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
