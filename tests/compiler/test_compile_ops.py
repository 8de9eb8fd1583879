"""row_max, argmax, gather, conv2d, reshape and column moves: compiled programs give the bits of the graph's
reference on both executors, in the same cycles."""

import numpy as np
import pytest

from openlpu.compiler.compile import compile
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError

MINI_LANES = 32
NP = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "fp16": np.float16, "fp32": np.float32}


def _values(rng, dtype, shape, scale=20):
    if dtype.startswith("int"):
        return rng.integers(-scale * 5, scale * 5, shape).astype(NP[dtype])
    return (rng.standard_normal(shape) * scale).astype(NP[dtype])


def _run_both(g, inputs):
    """Compile for tsp-mini (verified), run exact and fast; both must give the reference's bits in one cycle
    count. Returns the outputs."""
    compiled = compile(g, "tsp-mini")
    ref = g.evaluate(inputs, lanes=MINI_LANES)
    exact, fast = compiled.run(inputs, executor="exact"), compiled.run(inputs, executor="fast")
    assert exact.cycles == fast.cycles
    for name, want in ref.items():
        for got in (exact.outputs[name], fast.outputs[name]):
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), name
    return ref


@pytest.mark.parametrize("dtype, shape", [("fp32", (3, 40)), ("int8", (1, 32)), ("fp16", (5, 100)),
                                          ("int32", (2, 7)), ("int16", (140, 70))])
def test_row_max(dtype, shape):
    rng = np.random.default_rng(sum(shape))
    g = Graph()
    g.output("m", g.row_max(g.input("x", shape, dtype)))
    x = _values(rng, dtype, shape)
    assert np.array_equal(_run_both(g, {"x": x})["m"], x.max(1, keepdims=True))


@pytest.mark.parametrize("dtype, shape", [("fp32", (3, 40)), ("int8", (2, 70)), ("fp16", (1, 100)),
                                          ("int16", (2, 7))])
def test_argmax_takes_the_first_maximum(dtype, shape):
    rng = np.random.default_rng(sum(shape) + 1)
    g = Graph()
    g.output("a", g.argmax(g.input("x", shape, dtype)))
    x = _values(rng, dtype, shape)
    x[0, -1] = x[0, 0] = x.max()  # a tie
    assert np.array_equal(_run_both(g, {"x": x})["a"][:, 0], x.argmax(1))


def test_softmax_subtracts_the_row_max():
    g = Graph()
    g.output("p", g.softmax(g.input("x", (2, 40), "fp32")))
    x = np.random.default_rng(2).standard_normal((2, 40)).astype(np.float32) * 30 + 200  # exp(x) alone overflows
    p = _run_both(g, {"x": x})["p"]
    e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("table_dtype, rows, cols, n, index_dtype", [
    ("fp16", 10, 40, 3, "int32"), ("int8", 50, 32, 1, "int16"), ("fp32", 7, 70, 5, "int32"),
    ("int32", 130, 20, 140, "int32")])
def test_gather_rows_of_a_table(table_dtype, rows, cols, n, index_dtype):
    rng = np.random.default_rng(rows + n)
    g = Graph()
    table = g.constant("t", _values(rng, table_dtype, (rows, cols)))
    g.output("y", g.gather(table, g.input("i", (n, 1), index_dtype)))
    i = rng.integers(0, rows, (n, 1)).astype(NP[index_dtype])
    assert np.array_equal(_run_both(g, {"i": i})["y"], table.value[i[:, 0]])


def test_gather_from_an_input_table():
    rng = np.random.default_rng(3)
    g = Graph()
    g.output("y", g.gather(g.input("t", (20, 32), "fp16"), g.input("i", (4, 1), "int32")))
    inputs = {"t": _values(rng, "fp16", (20, 32)), "i": np.array([[19], [0], [7], [7]], np.int32)}
    assert np.array_equal(_run_both(g, inputs)["y"], inputs["t"][[19, 0, 7, 7]])


@pytest.mark.parametrize("build, words", [
    (lambda g: g.argmax(g.input("x", (2, 4), "int32")), "argmax of int32"),
    (lambda g: g.gather(g.input("t", (4, 4), "fp16"), g.input("i", (2, 1), "fp32")), "int16 or int32"),
    (lambda g: g.gather(g.relu(g.input("t", (4, 4), "fp16")), g.input("i", (2, 1), "int32")), "is computed"),
])
def test_bad_new_ops_get_one_sentence(build, words):
    with pytest.raises(UserError, match=words):
        build(Graph())


def test_gather_index_out_of_range_and_a_table_too_big():
    g = Graph()
    g.output("y", g.gather(g.input("t", (4, 8), "fp16"), g.input("i", (1, 1), "int32")))
    with pytest.raises(UserError, match="index 4 is outside the 4 rows of t"):
        g.evaluate({"t": np.zeros((4, 8), np.float16), "i": np.array([[4]], np.int32)}, lanes=MINI_LANES)
    g = Graph()
    g.output("y", g.gather(g.input("t", (600, 8), "fp16"), g.input("i", (1, 1), "int32")))
    with pytest.raises(UserError, match="gather table t.*more than a bank's 512"):
        compile(g, "tsp-mini")


def _direct_conv(x, w, h, wd, stride, pad):
    """float64 convolution of an NHWC image (zero padded), [Ho*Wo, Cout]."""
    k, cin, cout = w.shape[0], w.shape[2], w.shape[3]
    img = np.zeros((h + 2 * pad, wd + 2 * pad, cin))
    img[pad:pad + h, pad:pad + wd] = x.reshape(h, wd, cin)
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - w.shape[1]) // stride + 1
    out = np.array([[np.tensordot(img[a * stride:a * stride + k, b * stride:b * stride + w.shape[1]],
                                  w.astype(np.float64), 3) for b in range(wo)] for a in range(ho)])
    pooled = np.array([[img[a * stride:a * stride + k, b * stride:b * stride + w.shape[1]].max((0, 1))
                        for b in range(wo)] for a in range(ho)])
    return out.reshape(ho * wo, cout), pooled.reshape(ho * wo, cin)


@pytest.mark.parametrize("dtype, h, w, cin, cout, k, stride, pad", [
    ("int8", 5, 6, 3, 8, 3, 1, 1), ("fp16", 6, 6, 40, 20, 3, 2, 1), ("int8", 4, 4, 8, 40, 1, 1, 0),
    ("int8", 7, 5, 4, 6, 1, 2, 0), ("fp16", 6, 5, 3, 4, 2, 1, 0), ("int8", 12, 12, 16, 16, 3, 1, 1)])
def test_conv2d_and_max_pool2d(dtype, h, w, cin, cout, k, stride, pad):
    rng = np.random.default_rng(h * w + cin)
    weights = _values(rng, dtype, (k, k, cin, cout), scale=1)
    g = Graph()
    x = g.input("x", (h * w, cin), dtype)
    g.output("y", g.conv2d(x, weights, (h, w), stride, pad))
    g.output("pool", g.max_pool2d(x, (h, w), k, stride, pad))
    xv = _values(rng, dtype, (h * w, cin), scale=1)
    ref = _run_both(g, {"x": xv})
    conv, pooled = _direct_conv(xv, weights, h, w, stride, pad)
    np.testing.assert_allclose(ref["y"], conv, rtol=1e-3, atol=1e-2)
    assert np.array_equal(ref["pool"], pooled.astype(xv.dtype))


@pytest.mark.parametrize("build, words", [
    (lambda g: g.conv2d(g.input("x", (16, 3), "int8"), np.zeros((3, 3, 4, 2), np.int8), (4, 4)), "Cin = 3"),
    (lambda g: g.conv2d(g.input("x", (16, 3), "int8"), np.zeros((3, 3, 3, 2), np.int8), (4, 5)), "not the 4x5"),
    (lambda g: g.conv2d(g.input("x", (4, 3), "int8"), np.zeros((3, 3, 3, 2), np.int8), (2, 2)), "no output"),
    (lambda g: g.conv2d(g.input("x", (4, 3), "fp32"), np.zeros((1, 1, 3, 2)), (2, 2)), "int8 or fp16"),
])
def test_bad_convolutions_get_one_sentence(build, words):
    with pytest.raises(UserError, match=words):
        build(Graph())


@pytest.mark.parametrize("dtype", ["int8", "fp16", "fp32", "int32"])
def test_slices_and_concatenations_off_tile_edges(dtype):
    # int8 once caught a concat that copied its ready part into SRAM free only when its last part was ready
    rng = np.random.default_rng(len(dtype))
    g = Graph()
    x = g.input("x", (140, 70), dtype)  # two row halves, three column tiles
    y = g.input("y", (5, 13), dtype)
    g.output("s1", g.slice(x, cols=(5, 20)))
    g.output("s2", g.slice(x, rows=(60, 80), cols=(30, 70)))
    g.output("c", g.concat([y, g.slice(x, rows=(0, 5), cols=(3, 40)), y], axis=1))
    xv, yv = _values(rng, dtype, (140, 70)), _values(rng, dtype, (5, 13))
    if dtype == "fp32":  # bytes move, not values: NaN, inf and -0 keep their bits
        xv[0, 5], xv[1, 6], xv[2, 7] = np.nan, -np.inf, -0.0
    ref = _run_both(g, {"x": xv, "y": yv})
    want = {"s1": xv[:, 5:20], "s2": xv[60:80, 30:70], "c": np.concatenate([yv, xv[:5, 3:40], yv], axis=1)}
    for k, v in want.items():
        assert np.array_equal(ref[k].view(np.uint8), v.view(np.uint8)), k


@pytest.mark.parametrize("dtype, shape, new", [
    ("int8", (4, 6), (3, 8)), ("fp16", (2, 64), (4, 32)), ("fp32", (6, 10), (2, 30)), ("int32", (3, 40), (5, 24)),
    ("fp16", (1, 96), (3, 32)), ("int16", (4, 8), (4, 8))])
def test_reshape_is_numpys(dtype, shape, new):
    rng = np.random.default_rng(sum(shape) + sum(new))
    g = Graph()
    g.output("y", g.reshape(g.input("x", shape, dtype), new))
    x = _values(rng, dtype, shape)
    assert np.array_equal(_run_both(g, {"x": x})["y"], x.reshape(new))


def test_take_rows_repeats_and_reorders_rows():
    g = Graph()
    x = g.input("x", (140, 40), "fp16")  # rows in two halves
    rows = [139, 0, 1, 2, 70, 69, 5, 5]
    g.output("y", g.take_rows(x, rows))
    xv = _values(np.random.default_rng(1), "fp16", (140, 40))
    assert np.array_equal(_run_both(g, {"x": xv})["y"], xv[rows])


def test_a_row_slice_of_a_row_sum_broadcasts_over_columns_as_it_is():
    """row_sum leaves each row's sum in every lane and a slice copies whole vectors, so the slice broadcasts
    over column tiles with no replication of its own."""
    g = Graph()
    x = g.input("x", (6, 70), "fp16")
    part = g.slice(g.row_sum(x), rows=(2, 5))
    g.output("y", g.add(g.cast(g.slice(x, rows=(0, 3)), "fp32"), part))
    assert part.attrs.get("replicated") and not any(n.op == "row_sum" for n in g.nodes[g.nodes.index(part):])
    xv = _values(np.random.default_rng(2), "fp16", (6, 70))
    want = xv[:3].astype(np.float32) + xv[2:5].astype(np.float32).sum(1, keepdims=True)
    np.testing.assert_allclose(_run_both(g, {"x": xv})["y"], want, rtol=1e-3)


@pytest.mark.parametrize("build, words", [
    (lambda g: g.reshape(g.input("x", (4, 6), "int8"), (5, 5)), r"cannot reshape x\[4, 6\] \(24 values\)"),
    (lambda g: g.take_rows(g.input("x", (4, 6), "int8"), [0, 4]), "row numbers in 0..3"),
])
def test_bad_reshapes_get_one_sentence(build, words):
    with pytest.raises(UserError, match=words):
        build(Graph())


@pytest.mark.parametrize("rows", [3, 140])
def test_an_elementwise_chain_runs_as_one_pass_through_alu_latches(rows):
    # requantisation: int32 -> fp32, times a per-column scale, plus a bias, ReLU, -> int8, all in one pass
    rng = np.random.default_rng(rows)
    g = Graph()
    x = g.input("x", (rows, 70), "int32")
    scale = g.constant("scale", rng.uniform(0.01, 0.1, (1, 70)).astype(np.float32))
    bias = g.constant("bias", rng.uniform(-3, 3, (1, 70)).astype(np.float32))
    g.output("y", g.cast(g.relu(g.add(g.mul(g.cast(x, "fp32"), scale), bias)), "int8"))
    compiled = compile(g, "tsp-mini")
    assert len({(s.start, s.end) for s in compiled.ops if s.op not in ("input", "constant")}) == 1
    xv = rng.integers(-3000, 3000, (rows, 70)).astype(np.int32)
    want = np.clip(np.rint(np.maximum(xv * scale.value + bias.value, 0)), -128, 127).astype(np.int8)
    assert np.array_equal(_run_both(g, {"x": xv})["y"], want)
