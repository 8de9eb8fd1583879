"""Compiled graphs give exactly the bits of the graph's numpy reference, on a verified schedule."""

import numpy as np
import pytest

from openlpu.compiler.compile import compile
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError

MINI_LANES = 32


def _values(rng, dtype, shape):
    if dtype == "int8":
        return rng.integers(-20, 20, shape).astype(np.int8)
    return rng.standard_normal(shape).astype(np.float16 if dtype == "fp16" else np.float32)


def _same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
@pytest.mark.parametrize("m, k, n", [(1, 32, 32), (4, 64, 40), (3, 70, 33), (130, 30, 50)])
def test_matmul_matches_reference_bit_for_bit(dtype, m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    g = Graph()
    x = g.input("x", (m, k), dtype)
    g.output("y", g.matmul(x, g.constant("w", _values(rng, dtype, (k, n)))))
    compiled = compile(g, "tsp-mini")  # compile() runs the verifier on the program
    xv = _values(rng, dtype, (m, k))
    result = compiled.run({"x": xv})
    expected = g.evaluate({"x": xv}, lanes=MINI_LANES)["y"]
    assert _same_bits(result.outputs["y"], expected)
    exact = xv.astype(np.float64) @ g.nodes[1].value.astype(np.float64)
    if dtype == "int8":
        assert np.array_equal(result.outputs["y"], exact.astype(np.int32))
    else:  # one rounding per 32-long K tile, then fp32 adds
        np.testing.assert_allclose(result.outputs["y"], exact, rtol=1e-5, atol=1e-5)


def test_matmul_then_broadcast_bias_scalar_and_cast():
    rng = np.random.default_rng(7)
    g = Graph()
    x = g.input("x", (5, 40), "fp16")
    y = g.matmul(x, g.constant("w", _values(rng, "fp16", (40, 36))))
    z = g.add(y, g.constant("bias", _values(rng, "fp32", (1, 36))))
    z = g.mul(g.relu(z), 0.5)
    g.output("h", g.cast(z, "fp16"))
    xv = _values(rng, "fp16", (5, 40))
    result = compile(g, "tsp-mini").run({"x": xv})
    assert _same_bits(result.outputs["h"], g.evaluate({"x": xv}, lanes=MINI_LANES)["h"])


def test_elementwise_chain_on_inputs_with_rows_split_in_two_parts():
    rng = np.random.default_rng(3)
    g = Graph()
    a = g.input("a", (140, 20), "fp32")
    b = g.input("b", (140, 20), "fp32")
    s = g.sub(g.mul(a, b), g.exp(a))
    g.output("s", g.silu(s))
    inputs = {"a": _values(rng, "fp32", (140, 20)), "b": _values(rng, "fp32", (140, 20))}
    compiled = compile(g, "tsp-mini")
    assert len(compiled.placed["a"].parts) == 2
    result = compiled.run(inputs)
    assert _same_bits(result.outputs["s"], g.evaluate(inputs, lanes=MINI_LANES)["s"])


def test_integer_ops_wrap_and_square_uses_one_stream():
    g = Graph()
    x = g.input("x", (2, 32), "int8")
    g.output("sq", g.mul(x, x))
    xv = np.arange(-32, 32, dtype=np.int8).reshape(2, 32)
    result = compile(g, "tsp-mini").run({"x": xv})
    assert np.array_equal(result.outputs["sq"], (xv.astype(np.int64) ** 2).astype(np.int8))


def test_the_schedule_is_deterministic():
    rng = np.random.default_rng(0)

    def build():
        g = Graph()
        x = g.input("x", (8, 64), "int8")
        g.output("y", g.matmul(x, g.constant("w", np.arange(64 * 48).reshape(64, 48).astype(np.int8))))
        return g

    a, b = compile(build(), "tsp-mini"), compile(build(), "tsp-mini")
    assert a.program.queues == b.program.queues
    xv = _values(rng, "int8", (8, 64))
    assert a.run({"x": xv}).cycles == b.run({"x": xv}).cycles


@pytest.mark.parametrize("build, words", [
    (lambda g: g.matmul(g.input("x", (2, 30), "int8"), g.constant("w", np.zeros((31, 4), np.int8))),
     "inner dimensions differ"),
    (lambda g: g.matmul(g.input("x", (2, 4), "fp32"), g.constant("w", np.zeros((4, 4), np.float32))),
     "cast them first"),
    (lambda g: g.add(g.input("x", (2, 4), "fp32"), g.input("y", (3, 4), "fp32")), "do not broadcast"),
    (lambda g: g.exp(g.input("x", (2, 4), "int8")), "needs a float tensor"),
    (lambda g: g.input("x", (2, 4), "bf16"), "unsupported dtype"),
])
def test_bad_graphs_get_one_sentence(build, words):
    with pytest.raises(UserError, match=words):
        build(Graph())


def test_a_graph_too_big_for_sram_names_the_tensor_and_sizes():
    g = Graph()
    x = g.input("x", (1, 32 * 40), "int8")
    w = np.random.default_rng(0).integers(-9, 9, (32 * 40, 32 * 100)).astype(np.int8)  # distinct tiles
    g.output("y", g.matmul(x, g.constant("w", w)))
    with pytest.raises(UserError, match=r"weights of matmul\d+ needs 1,024 bytes: no 2 slices have room"):
        compile(g, "tsp-mini")
    g = Graph()
    g.output("y", g.relu(g.input("x", (1, 32 * 600), "int8")))
    with pytest.raises(UserError, match="tensor x has 19,200 columns: at most 16,384 fit one bank"):
        compile(g, "tsp-mini")


def test_missing_and_misshapen_inputs():
    g = Graph()
    g.output("y", g.relu(g.input("x", (2, 8), "fp32")))
    compiled = compile(g, "tsp-mini")
    with pytest.raises(UserError, match="input 'x' is missing"):
        compiled.run({})
    with pytest.raises(UserError, match=r"has shape \[3, 8\]"):
        compiled.run({"x": np.zeros((3, 8), np.float32)})


def test_row_sum_rmsnorm_layernorm_and_softmax_against_reference_and_float64():
    rng = np.random.default_rng(11)
    g = Graph()
    x = g.input("x", (3, 40), "fp32")
    w = g.constant("w", rng.standard_normal((1, 40)).astype(np.float32))
    b = g.constant("b", rng.standard_normal((1, 40)).astype(np.float32))
    g.output("sum", g.row_sum(x))
    g.output("rms", g.rmsnorm(x, w, 1e-5))
    g.output("ln", g.layernorm(x, w, b, 1e-5))
    g.output("sm", g.softmax(x))
    xv = _values(rng, "fp32", (3, 40))
    result = compile(g, "tsp-mini").run({"x": xv})
    ref = g.evaluate({"x": xv}, lanes=MINI_LANES)
    for k in ref:
        assert _same_bits(result.outputs[k], ref[k]), k
    x64, w64, b64 = xv.astype(np.float64), w.value.astype(np.float64), b.value.astype(np.float64)
    np.testing.assert_allclose(result.outputs["sum"], x64.sum(1, keepdims=True), rtol=1e-5, atol=1e-5)
    rms = x64 / np.sqrt((x64 ** 2).mean(1, keepdims=True) + 1e-5) * w64
    np.testing.assert_allclose(result.outputs["rms"], rms, rtol=1e-4, atol=1e-4)
    c = x64 - x64.mean(1, keepdims=True)
    np.testing.assert_allclose(result.outputs["ln"], c / np.sqrt((c ** 2).mean(1, keepdims=True) + 1e-5) * w64 + b64,
                               rtol=1e-4, atol=1e-4)
    e = np.exp(x64)
    np.testing.assert_allclose(result.outputs["sm"], e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_int8_and_fp16_matmuls_share_the_planes_one_at_a_time():
    rng = np.random.default_rng(5)
    g = Graph()
    a = g.input("a", (6, 64), "int8")
    x = g.input("x", (6, 64), "fp16")
    g.output("p", g.matmul(a, g.constant("wa", _values(rng, "int8", (64, 64)))))
    g.output("q", g.matmul(x, g.constant("wx", _values(rng, "fp16", (64, 64)))))
    g.output("r", g.matmul(a, g.constant("wb", _values(rng, "int8", (64, 40)))))
    inputs = {"a": _values(rng, "int8", (6, 64)), "x": _values(rng, "fp16", (6, 64))}
    result = compile(g, "tsp-mini").run(inputs)
    ref = g.evaluate(inputs, lanes=MINI_LANES)
    assert all(_same_bits(result.outputs[k], ref[k]) for k in ref)


def test_rope_rotates_adjacent_pairs_like_the_textbook():
    from openlpu.compiler.graph import rope_tables

    rng = np.random.default_rng(9)
    heads, head_dim, positions = 2, 16, [3, 4, 5]
    cos, sin = rope_tables(positions, head_dim, heads, 10000.0)
    g = Graph()
    x = g.input("x", (3, heads * head_dim), "fp32")
    g.output("y", g.rope(x, g.input("cos", cos.shape, "fp32"), g.input("sin", sin.shape, "fp32")))
    inputs = {"x": _values(rng, "fp32", (3, heads * head_dim)), "cos": cos, "sin": sin}
    result = compile(g, "tsp-mini").run(inputs)
    assert _same_bits(result.outputs["y"], g.evaluate(inputs, lanes=MINI_LANES)["y"])
    xv = inputs["x"].astype(np.float64).reshape(3, heads, head_dim // 2, 2)
    angle = np.outer(positions, 10000.0 ** (-np.arange(0, head_dim, 2) / head_dim))[:, None, :]
    even = xv[..., 0] * np.cos(angle) - xv[..., 1] * np.sin(angle)
    odd = xv[..., 1] * np.cos(angle) + xv[..., 0] * np.sin(angle)
    np.testing.assert_allclose(result.outputs["y"], np.stack([even, odd], -1).reshape(3, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
def test_computed_weights_attention_scores_and_transpose(dtype):
    rng = np.random.default_rng(4)
    g = Graph()
    q = g.input("q", (2, 40), dtype)
    k = g.input("k", (37, 40), dtype)  # 37 keys: two N tiles, the second padded with zero rows
    g.output("scores", g.matmul_nt(q, k))
    g.output("kt", g.transpose(k))
    inputs = {"q": _values(rng, dtype, (2, 40)), "k": _values(rng, dtype, (37, 40))}
    result = compile(g, "tsp-mini").run(inputs)
    ref = g.evaluate(inputs, lanes=MINI_LANES)
    assert all(_same_bits(result.outputs[n], ref[n]) for n in ref)
    assert np.array_equal(result.outputs["kt"], inputs["k"].T)


def test_column_and_scalar_inputs_broadcast_after_replication():
    rng = np.random.default_rng(12)
    g = Graph()
    x = g.input("x", (3, 70), "fp32")
    col = g.input("col", (3, 1), "fp32")  # an input column holds its value in lane 0 only: replicated first
    s = g.input("s", (1, 1), "fp32")
    g.output("y", g.add(g.mul(x, col), s))
    inputs = {"x": _values(rng, "fp32", (3, 70)), "col": _values(rng, "fp32", (3, 1)),
              "s": _values(rng, "fp32", (1, 1))}
    result = compile(g, "tsp-mini").run(inputs)
    ref = g.evaluate(inputs, lanes=MINI_LANES)
    assert _same_bits(result.outputs["y"], ref["y"])
    np.testing.assert_allclose(result.outputs["y"], inputs["x"] * inputs["col"] + inputs["s"], rtol=1e-5, atol=1e-5)


def test_slices_and_concatenations_copy_rows_and_whole_tiles():
    rng = np.random.default_rng(13)
    g = Graph()
    x = g.input("x", (140, 70), "fp16")  # two row halves, three column tiles (the last partial)
    y = g.input("y", (5, 32), "fp16")
    g.output("last", g.slice(x, rows=(139, 140)))  # the last row, as prefill's logits want
    g.output("mid", g.slice(x, rows=(60, 80), cols=(32, 64)))  # crosses the halves' boundary
    g.output("rows", g.concat([g.slice(x, rows=(0, 3), cols=(0, 32)), y], axis=0))
    g.output("cols", g.concat([y, g.slice(x, rows=(0, 5), cols=(0, 40))], axis=1))
    inputs = {"x": _values(rng, "fp16", (140, 70)), "y": _values(rng, "fp16", (5, 32))}
    result = compile(g, "tsp-mini").run(inputs)
    x_, y_ = inputs["x"], inputs["y"]
    expected = {"last": x_[139:140], "mid": x_[60:80, 32:64], "rows": np.concatenate([x_[:3, :32], y_]),
                "cols": np.concatenate([y_, x_[:5, :40]], axis=1)}
    ref = g.evaluate(inputs, lanes=MINI_LANES)
    for k, v in expected.items():
        assert np.array_equal(result.outputs[k], v) and np.array_equal(ref[k], v), k


def test_a_slice_outside_the_tensor_is_one_sentence():
    with pytest.raises(UserError, match=r"slice rows 0:2, cols 60:70 is outside x\[2, 64\]"):
        Graph().slice(Graph().input("x", (2, 64), "fp32"), cols=(60, 70))
