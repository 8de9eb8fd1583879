"""Regressions: compiler and graph bugs found while building the llama graph (models/lpu_graph.py)."""

import numpy as np

from openlpu.compiler.compile import compile
from openlpu.compiler.graph import Graph


def _same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_a_computed_scalar_broadcasts_over_a_row():
    # a computed [1, 1] holds its value in lane 0 only: it must be replicated before it broadcasts
    g = Graph()
    x = g.input("x", (1, 8), "fp32")
    s = g.input("s", (1, 1), "fp32")
    g.output("y", g.mul(x, g.add(s, 1.0)))
    inputs = {"x": np.ones((1, 8), np.float32), "s": np.full((1, 1), 2.0, np.float32)}
    result = compile(g, "tsp-mini").run(inputs)
    assert np.array_equal(result.outputs["y"], np.full((1, 8), 3.0, np.float32))


def test_swap_pairs_waits_for_its_operand():
    # an SXM pass reads at the chip edge, farther from the operand than the VXM: it must start later
    g = Graph()
    x = g.input("x", (1, 32), "fp32")
    s = g.input("s", (1, 1), "fp16")
    c = g.input("c", (1, 32), "fp32")
    g.output("y", g.swap_pairs(g.mul(g.mul(x, g.row_sum(s)), c)))
    inputs = {"x": np.arange(32, dtype=np.float32)[None], "s": np.ones((1, 1), np.float16),
              "c": np.ones((1, 32), np.float32)}
    result = compile(g, "tsp-v1").run(inputs)
    assert _same_bits(result.outputs["y"], g.evaluate(inputs)["y"])
    assert np.array_equal(result.outputs["y"][0], np.arange(32, dtype=np.float32).reshape(16, 2)[:, ::-1].ravel())


def test_softmax_is_finite_where_exp_exceeds_fp16():
    g = Graph()
    g.output("p", g.softmax(g.input("x", (1, 2), "fp32")))
    p = g.evaluate({"x": np.array([[30.0, 0.0]], np.float32)})["p"]
    np.testing.assert_allclose(p, [[1 / (1 + np.exp(-30.0)), 1 / (1 + np.exp(30.0))]], rtol=1e-5)


def test_rmsnorm_of_large_activations():
    # SmolLM2's residual stream reaches 22,552: x * x is far beyond fp16
    g = Graph()
    g.output("y", g.rmsnorm(g.input("x", (1, 2), "fp32"), g.constant("w", np.ones((1, 2), np.float32)), 1e-5))
    x = np.array([[22552.0, 400.0]], np.float32)
    y = g.evaluate({"x": x})["y"]
    np.testing.assert_allclose(y, x / np.sqrt((x.astype(np.float64) ** 2).mean() + 1e-5), rtol=1e-4)
    assert _same_bits(compile(g, "tsp-mini").run({"x": x}).outputs["y"], y)


def test_row_sum_after_rsqrt_of_a_partial_tile():
    # rsqrt of a partial tile's zero padding lanes must stay finite: the MXM multiplies them by zero weights
    g = Graph()
    g.output("s", g.row_sum(g.cast(g.rsqrt(g.input("x", (1, 2), "fp32")), "fp16")))
    result = compile(g, "tsp-mini").run({"x": np.full((1, 2), 0.25, np.float32)})
    assert np.array_equal(result.outputs["s"], np.full((1, 1), 4.0, np.float32))  # got NaN


def test_one_tile_matmuls_use_both_hemispheres():
    # N tiles dealt from plane 0 every time filled the west hemisphere while the east stayed empty
    rng = np.random.default_rng(0)
    g = Graph()
    x = g.input("x", (1, 32), "int8")
    for i in range(200):  # 200 KB of weights on a 512 KB chip
        g.output(f"y{i}", g.matmul(x, g.constant(f"w{i}", rng.integers(-100, 100, (32, 32)).astype(np.int8))))
    compiled = compile(g, "tsp-mini", check=False)
    xv = rng.integers(-100, 100, (1, 32)).astype(np.int8)
    assert _same_bits(compiled.run({"x": xv}, executor="fast").outputs["y199"], g.evaluate({"x": xv}, lanes=32)["y199"])


def test_a_long_chain_reuses_sram():
    # a dead tensor's SRAM is handed back: 100 ops of 8 KB fit a 512 KB chip
    g = Graph()
    y = g.input("x", (8, 256), "fp32")  # 8 KB on tsp-mini, whose SRAM is 512 KB
    for _ in range(100):
        y = g.neg(y)
    g.output("y", y)
    x = np.arange(8 * 256, dtype=np.float32).reshape(8, 256)
    assert np.array_equal(compile(g, "tsp-mini", check=False).run({"x": x}, executor="fast").outputs["y"], x)


def test_queue_intervals_stay_exact_when_claims_overlap():
    # a latch MOV and its NOP claim overlapping spans of one ALU queue; free() looked at one neighbour only
    from openlpu.compiler.resources import Intervals

    q = Intervals()
    q.claim(0, 10)
    q.claim(2, 4)
    q.claim(20, 25)
    assert not q.free(5, 6)
    assert q.next_free(5, 8) == 5  # the shift to [10, 13)
    assert q.next_free(9, 19) == 1  # [10, 20) is free
    assert q.next_free(9, 21) == 16  # past [20, 25): [25, 37)
    assert q.free(10, 20)

