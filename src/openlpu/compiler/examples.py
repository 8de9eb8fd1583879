"""Builtin example graphs for `openlpu compile`, each a function of the chip's lane count."""

from __future__ import annotations

import numpy as np

from openlpu.compiler.graph import Graph


def matmul(lanes: int) -> Graph:
    """An fp16 matmul with fp32 accumulation, two K tiles and three N tiles."""
    rng = np.random.default_rng(0)
    g = Graph()
    x = g.input("x", (8, 2 * lanes), "fp16")
    g.output("y", g.matmul(x, g.constant("w", rng.standard_normal((2 * lanes, 3 * lanes)).astype(np.float16))))
    return g


def gemv(lanes: int) -> Graph:
    """The decode case: one int8 row times a square int8 matrix, int32 results."""
    rng = np.random.default_rng(1)
    g = Graph()
    x = g.input("x", (1, 4 * lanes), "int8")
    g.output("y", g.matmul(x, g.constant("w", rng.integers(-8, 8, (4 * lanes, 4 * lanes)).astype(np.int8))))
    return g


def mlp(lanes: int) -> Graph:
    """A transformer MLP block: fp16 matmul, bias, GELU, back to fp16, a second matmul."""
    rng = np.random.default_rng(2)
    d, f = lanes, 4 * lanes
    g = Graph()
    x = g.input("x", (4, d), "fp16")
    h = g.matmul(x, g.constant("w1", (rng.standard_normal((d, f)) / np.sqrt(d)).astype(np.float16)))
    h = g.gelu(g.add(h, g.constant("b1", rng.standard_normal((1, f)).astype(np.float32) * 0.1)))
    y = g.matmul(g.cast(h, "fp16"), g.constant("w2", (rng.standard_normal((f, d)) / np.sqrt(f)).astype(np.float16)))
    g.output("y", y)
    return g


EXAMPLES = {"matmul": matmul, "gemv": gemv, "mlp": mlp}


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for n in graph.nodes:
        if n.op == "input":
            if n.dtype.startswith("int"):
                out[n.name] = rng.integers(-8, 8, n.shape).astype(n.dtype)
            else:
                out[n.name] = rng.standard_normal(n.shape).astype(np.float16 if n.dtype == "fp16" else np.float32)
    return out
