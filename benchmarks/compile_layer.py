"""Compile time of one Llama-2-70B decoder layer shard for one chip, and its scheduled cycles.

The shard is what one chip of an 8-way tensor-parallel group holds for decode (batch 1), exactly as
`openlpu predict` compiles it (openlpu.perf.shard): the attention block (RMSNorm, the chip's q, k, v
projections, RoPE, attention over a KV cache of 4,096 tokens, its share of the output projection) and the
MLP block (RMSNorm, its columns of gate and up, SiLU, its rows of down), int8 weights, random but fixed
(the compiler stores equal weight tiles once, so zeros would understate the weight loads).
"""

from __future__ import annotations

import time

import openlpu
from openlpu.chip.spec import get_chip
from openlpu.models.zoo import load_config
from openlpu.perf.shard import ShardShape, attention_block, mlp_block

CACHE = 4096


def main() -> None:
    shape = ShardShape.of(load_config("llama2-70b-4096"), tp=8, numerics="int8")
    total_s = total_cycles = 0
    clock = get_chip("tsp-v1").clock_hz
    for name, graph in (("attention", attention_block(shape, 1, 1, CACHE)), ("mlp", mlp_block(shape, 1))):
        t0 = time.perf_counter()
        compiled = openlpu.compile(graph, "tsp-v1", check=False)
        seconds = time.perf_counter() - t0
        cycles = compiled.cycles_scheduled
        total_s, total_cycles = total_s + seconds, total_cycles + cycles
        print(f"{name:>9} block: compiled in {seconds:.1f} s, {compiled.program.instructions():,} instructions, "
              f"scheduled in {cycles:,} cycles = {cycles / clock * 1e6:.1f} us")
    print(f"Llama-2-70B decoder layer shard (1/8, decode, {CACHE:,}-token cache) on tsp-v1: {total_s:.1f} s to "
          f"compile, {total_cycles:,} cycles = {total_cycles / clock * 1e6:.1f} us before the all-reduces")


if __name__ == "__main__":
    main()
