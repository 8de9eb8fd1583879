"""Compile time of one Llama-2-70B decoder layer shard for one chip, and its scheduled cycles.

The shard is what one chip of an 8-way tensor-parallel group holds for decode (batch 1): the q, k, v and
output projections (d 8192 -> 1024, 128, 128; 1024 -> 8192), the SwiGLU FFN (8192 -> 3584 -> 8192),
two RMSNorms and the residual adds, int8 weights with fp32 vector math. Attention over the KV cache is
not in it yet (the LLM issue builds it). Weights are zeros: their values do not change the schedule.
"""

from __future__ import annotations

import time

import numpy as np

import openlpu

D, Q, KV, FFN = 8192, 1024, 128, 3584


def build() -> openlpu.Graph:
    g = openlpu.Graph()

    def proj(h, k, n, name):
        return g.cast(g.matmul(h, g.constant(name, np.zeros((k, n), np.int8))), "fp32")

    x = g.input("x", (1, D), "fp32")
    h = g.cast(g.rmsnorm(x, g.constant("norm1", np.ones((1, D), np.float32)), 1e-5), "int8")
    q = proj(h, D, Q, "wq")
    g.output("k", proj(h, D, KV, "wk"))
    g.output("v", proj(h, D, KV, "wv"))
    x = g.add(x, proj(g.cast(q, "int8"), Q, D, "wo"))
    h = g.cast(g.rmsnorm(x, g.constant("norm2", np.ones((1, D), np.float32)), 1e-5), "int8")
    act = g.mul(g.silu(proj(h, D, FFN, "wgate")), proj(h, D, FFN, "wup"))
    g.output("y", g.add(x, proj(g.cast(act, "int8"), FFN, D, "wdown")))
    return g


def main() -> None:
    graph = build()
    t0 = time.perf_counter()
    compiled = openlpu.compile(graph, "tsp-v1", check=False)
    seconds = time.perf_counter() - t0
    cycles = compiled.cycles_scheduled
    print(f"Llama-2-70B decoder layer shard (1/8, no attention) on tsp-v1: compiled in {seconds:.1f} s, "
          f"{compiled.program.instructions():,} instructions, scheduled in {cycles:,} cycles = "
          f"{cycles / compiled.chip.clock_hz * 1e6:.1f} us")


if __name__ == "__main__":
    main()
