"""State in SRAM across runs (`Graph.state`, `write_rows` on MEM SCATTER): run after run, a verified program's
outputs and state equal the reference's, whose state is carried between evaluations, on both executors."""

import numpy as np
import pytest

from openlpu.compiler.compile import compile, pin_states
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError

MINI_LANES = 32
NP = {"int8": np.int8, "int32": np.int32, "fp16": np.float16, "fp32": np.float32}


def _cache_graph(rows: int, cols: int, dtype: str, tokens: int, write_first: bool) -> Graph:
    """y = x . S^T read from the state S [rows, cols]; x's rows (doubled in fp16) written into S at `pos`.
    `write_first` builds the write before the read: the read must still see the old rows."""
    g = Graph()
    s = g.state("S", (rows, cols), dtype)
    x = g.input("x", (tokens, cols), dtype)
    pos = g.input("pos", (1, 1), "int32")
    new = x if dtype != "fp16" else g.cast(g.mul(g.cast(x, "fp32"), 2.0), "fp16")

    def read():
        if dtype in ("fp16", "int8"):
            g.output("y", g.matmul_nt(x, s))
        else:
            g.output("y", g.add(g.slice(s, rows=(0, tokens)), x))

    if not write_first:
        read()
    g.write_rows(s, new, pos)
    if write_first:
        read()
    return g


def _values(rng, dtype, shape):
    if dtype.startswith("int"):
        return rng.integers(-100, 100, shape).astype(NP[dtype])
    return rng.standard_normal(shape).astype(NP[dtype])


@pytest.mark.parametrize("rows, cols, dtype, tokens, write_first", [
    (20, 24, "fp16", 3, False),   # one tile, a few rows at a time
    (40, 70, "fp16", 1, True),    # three tiles (the last partial), written before read in graph order
    (33, 32, "int8", 5, False),
    (16, 40, "fp32", 2, True),    # four byte planes
    (200, 32, "fp16", 130, False),  # the value in two row parts, one per hemisphere
])
def test_state_persists_and_equals_reference(rows, cols, dtype, tokens, write_first):
    g = _cache_graph(rows, cols, dtype, tokens, write_first)
    compiled = compile(g, "tsp-mini")  # verified
    rng = np.random.default_rng(rows + cols)
    ref_state, fast_state = {}, {}
    for k, pos in enumerate([0, min(tokens, rows - tokens), rows - tokens, 1]):
        inputs = {"x": _values(rng, dtype, (tokens, cols)), "pos": np.array([[pos]], np.int32)}
        want = g.evaluate(inputs, lanes=MINI_LANES, state=ref_state)
        exact = compiled.run(inputs, executor="exact")
        fast = compiled.run(inputs, executor="fast", state=fast_state)
        assert exact.cycles == fast.cycles
        for got in (exact.outputs["y"], fast.outputs["y"]):
            assert np.array_equal(got.view(np.uint8), want["y"].view(np.uint8)), k
        for got in (compiled.state["S"], fast_state["S"]):
            assert np.array_equal(got.view(np.uint8), ref_state["S"].view(np.uint8)), k
    assert np.any(ref_state["S"] != 0)


def test_reference_keeps_its_own_state():
    g = _cache_graph(8, 4, "fp32", 2, False)
    one = {"x": np.ones((2, 4), np.float32), "pos": np.array([[3]], np.int32)}
    g.evaluate(one, lanes=MINI_LANES)
    assert np.array_equal(g.state_values["S"][3:5], np.ones((2, 4)))
    assert not np.any(g.state_values["S"][:3]) and not np.any(g.state_values["S"][5:])


def test_bad_state_writes_are_refused():
    g = _cache_graph(8, 4, "fp32", 2, False)
    compiled = compile(g, "tsp-mini", check=False)
    bad = {"x": np.ones((2, 4), np.float32), "pos": np.array([[7]], np.int32)}
    for run in (lambda: g.evaluate(bad, lanes=MINI_LANES), lambda: compiled.run(bad, executor="fast")):
        with pytest.raises(UserError, match="position 7 .* give a position in 0..6"):
            run()
    g = Graph()
    s = g.state("S", (8, 4), "fp32")
    pos = g.input("pos", (1, 1), "int32")
    with pytest.raises(UserError, match="must be an input"):
        g.write_rows(s, g.input("x", (1, 4), "fp32"), g.add(pos, 1))
    with pytest.raises(UserError, match="columns and dtype"):
        g.write_rows(s, g.input("h", (1, 4), "fp16"), pos)
    w = g.write_rows(s, g.input("v", (1, 4), "fp32"), pos)
    with pytest.raises(UserError, match="write it once per run"):
        g.write_rows(s, g.input("u", (1, 4), "fp32"), pos)
    g.output("w", w)
    with pytest.raises(UserError, match="has no value"):
        compile(g, "tsp-mini", check=False)


def test_addresses_made_early_keep_their_sram_until_the_write():
    """The address vectors are ready long before a value at the end of a chain of matmuls, whose dead
    intermediates free SRAM meanwhile: the addresses may only take space free by the time their own input is
    ready (a bug once let later-freed space hold them, and a dead intermediate's writes overwrote them)."""
    g = Graph()
    s = g.state("S", (16, 32), "fp16")
    x = g.input("x", (2, 32), "fp16")
    pos = g.input("pos", (1, 1), "int32")
    value, rng = x, np.random.default_rng(0)
    for k in range(8):
        value = g.cast(g.matmul(value, g.constant(f"w{k}", np.eye(32)[rng.permutation(32)], "fp16")), "fp16")
    g.write_rows(s, value, pos)
    g.output("y", g.matmul_nt(x, s))
    compiled, ref = compile(g, "tsp-mini"), {}
    for pos_ in (0, 2, 9):
        inputs = {"x": _values(rng, "fp16", (2, 32)), "pos": np.array([[pos_]], np.int32)}
        want = g.evaluate(inputs, lanes=MINI_LANES, state=ref)
        assert np.array_equal(compiled.run(inputs, executor="fast").outputs["y"].view(np.uint8),
                              want["y"].view(np.uint8))
        assert np.array_equal(compiled.state["S"].view(np.uint8), ref["S"].view(np.uint8))


def test_pinned_state_stays_at_its_addresses_from_program_to_program():
    """Two programs of one graph shape but 16 and 40 state rows, pinned to one region of 40 rows: each finds
    the state where the other left it (three tiles, each 40 addresses apart in both), so the SRAM image goes
    from one to the next as it is, while the reference pads its rows on the host."""
    small, large = _cache_graph(16, 70, "fp16", 3, False), _cache_graph(40, 70, "fp16", 3, False)
    states = pin_states(large, "tsp-mini", 40)
    programs = {16: compile(small, "tsp-mini", states=states), 40: compile(large, "tsp-mini", states=states)}
    region = states["S"]
    for c in programs.values():
        t = c.program.tensors["S"]
        assert (t.slices, t.addr, t.rows) == (region.slices, region.addr, 3 * 40)
    rng, sram, ref = np.random.default_rng(1), {}, np.zeros((40, 70), np.float16)
    for pos, rows in [(0, 16), (3, 16), (13, 16), (16, 40), (37, 40), (5, 16)]:
        g = small if rows == 16 else large
        inputs = {"x": _values(rng, "fp16", (3, 70)), "pos": np.array([[pos]], np.int32)}
        view = {"S": ref[:rows]}
        want = g.evaluate(inputs, lanes=MINI_LANES, state=view)
        ref[:rows] = view["S"]
        for executor in ("exact", "fast") if rows == 40 else ("fast",):
            image = dict(sram)
            got = programs[rows].run(inputs, executor=executor, state=image)
            assert np.array_equal(got.outputs["y"].view(np.uint8), want["y"].view(np.uint8)), pos
            assert np.array_equal(image["S"].view(np.uint8), ref.view(np.uint8)), pos
        sram = image
    with pytest.raises(UserError, match="region of 16 rows"):
        compile(large, "tsp-mini", states=pin_states(small, "tsp-mini", 16))
