"""ResNet-50 v2 as compiled units: the units cover the zoo's network, and a unit's program is its reference."""

import numpy as np
import pytest

from openlpu.compiler.compile import compile
from openlpu.models.resnet_graph import Unit, unit_graph, units


def test_units_cover_the_sixteen_bottlenecks_of_the_zoo():
    found = units()
    blocks = [(u, n) for u, n in found if "_block" in u.name]
    assert sum(n for _, n in blocks) == 16
    assert {u.kind for u, _ in found} == {"stem", "pool", "first", "middle", "last", "head"}


@pytest.mark.parametrize("unit", [Unit("conv2_block1", 6, 8, 4, 1, "first"), Unit("conv2_block3", 6, 16, 4, 2, "last"),
                                  Unit("head", 3, 16, 10, 1, "head"),
                                  Unit("stem_pool", 8, 8, 0, 2, "pool")])
def test_a_small_unit_runs_its_reference_on_both_executors(unit):
    rng = np.random.default_rng(0)
    g = unit_graph(unit, rng)
    compiled = compile(g, "tsp-mini")
    x = rng.integers(-60, 60, g.nodes[0].shape).astype(np.int8)
    ref = g.evaluate({"x": x}, lanes=32)
    exact, fast = compiled.run({"x": x}), compiled.run({"x": x}, executor="fast")
    assert exact.cycles == fast.cycles
    for k in ref:
        assert np.array_equal(exact.outputs[k].view(np.uint8), ref[k].view(np.uint8))
        assert np.array_equal(fast.outputs[k].view(np.uint8), ref[k].view(np.uint8))


def test_the_stem_pool_on_parity_ordered_rows_is_a_windowed_max():
    from openlpu.compiler.graph import Graph
    from openlpu.models.resnet_graph import parity_max_pool, parity_rows

    hw = 8
    img = np.random.default_rng(2).integers(-100, 100, (hw * hw, 5)).astype(np.int8)
    g = Graph()
    g.output("y", parity_max_pool(g, g.input("x", (hw * hw, 5), "int8"), hw))
    result = compile(g, "tsp-mini").run({"x": img[parity_rows(hw)]}, executor="fast")
    image = img.reshape(hw, hw, 5)
    windows = [[image[max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2].max((0, 1)) for j in range(hw // 2)]
               for i in range(hw // 2)]
    assert np.array_equal(result.outputs["y"], np.array(windows).reshape(-1, 5))
