"""The fast executor and SRAM: values that go through it are read where they were made, later runs reuse
the SRAM and the static work of the runs before, and all still agree with the cycle-accurate executor bit
for bit, whatever changed between runs."""

from __future__ import annotations

import numpy as np
import pytest

from openlpu.chip.asm import assemble, load
from openlpu.chip.spec import get_chip
from openlpu.compiler.compile import compile
from openlpu.compiler.graph import Graph
from openlpu.models.registry import load_model
from openlpu.models.tiny_gguf import write_tiny_gguf
from openlpu.runtime.lpu_engine import LpuEngine
from openlpu.sim import exact, fast


def assert_same(program):
    a, b = exact.run(program), fast.run(program)
    assert (b.cycles, b.vector_instructions, b.busy) == (a.cycles, a.vector_instructions, a.busy)
    for name, value in a.outputs.items():
        assert b.outputs[name].tobytes() == value.tobytes(), name


def test_new_inputs_run_folded_and_a_changed_constant_is_seen(examples_dir):
    program = load(examples_dir / "matmul_int8.s")
    rng = np.random.default_rng(1)
    for _ in range(4):
        program.set_input("x", rng.integers(-128, 128, (8, 320)))
        assert_same(program)
    fold = fast.plan_for(program).fold
    assert fold.seeded and fold.variable == {"x"} and not fold.running.all()
    program.set_input("w3", rng.integers(-128, 128, (40, 320)))  # a weight the fold took as constant
    assert_same(program)
    fold = fast.plan_for(program).fold
    assert fold.variable == {"x", "w3"}
    for _ in range(3):
        program.set_input("x", rng.integers(-128, 128, (8, 320)))
        assert_same(program)
    assert fast.plan_for(program).fold is fold


def test_values_the_executor_keeps_are_read_only(examples_dir):
    program = load(examples_dir / "matmul_int8.s")
    program.set_input("x", np.ones((8, 320), np.int8))
    fast.run(program)
    with pytest.raises(ValueError):
        program.values["x"][0, 0] = 5
    program.values["x"] = np.full((8, 320), 2, np.int8)  # a new array is a new value
    assert_same(program)




def test_programs_installing_the_same_weights_keep_one_kernel_for_them():
    # every layer's program installs the same masks: the kernels later runs put back are shared, not copied
    def build(seed):
        g, rng = Graph(), np.random.default_rng(seed)
        same = g.constant("same", np.random.default_rng(0).integers(-127, 128, (64, 64)), "int8")
        own = g.constant("own", rng.integers(-127, 128, (64, 64)), "int8")
        g.output("y", g.matmul(g.cast(g.matmul(g.input("x", (8, 64), "int8"), same), "int8"), own))
        return g, compile(g, get_chip("tsp-mini"))

    (ga, a), (gb, b) = build(1), build(2)
    rng = np.random.default_rng(3)
    for _ in range(3):
        for g, compiled in ((ga, a), (gb, b)):
            x = rng.integers(-127, 128, (8, 64)).astype(np.int8)
            got = compiled.run({"x": x}, executor="fast").outputs["y"]
            assert got.tobytes() == g.evaluate({"x": x}, lanes=compiled.chip.lanes)["y"].tobytes()
    ka, kb = ([k for _, k in fast.plan_for(c.program).fold.kernels.values()] for c in (a, b))
    shared = [x is y for x, y in zip(ka, kb, strict=True)]
    assert ka and shared.count(True) == len(shared) // 2  # the first matmul's, and none of the second's

SCATTER = """
.chip tsp-v1
.tensor addrs int16 1 at MEM_E0,MEM_E1:0 = iota
.tensor table int8 128 at MEM_E2:0 = random(7) output
.tensor vals int8 1 at MEM_E3:0 = random(3)
.queue MEM_E0
    @4 READ 0, e0
.queue MEM_E1
    @5 READ 0, e1
.queue MEM_E3
    @5 READ 0, w2
.queue MEM_E2
    @8 SCATTER e0, w2
"""


def test_a_scatter_into_a_constant_table_is_run_again_without_folding():
    """The fold takes it that SCATTERs write only rows whose values change (a KV cache); this one writes a
    table that stays the same."""
    program = assemble(SCATTER)
    rng = np.random.default_rng(2)
    for _ in range(4):
        program.set_input("addrs", rng.integers(0, 128, (1, 320)))
        program.set_input("vals", rng.integers(-128, 128, (1, 320)))
        assert_same(program)
    assert fast.plan_for(program).fold is False


THROUGH = """
.chip tsp-v1
.tensor addrs int16 1 at MEM_E0,MEM_E1:0 = iota
.tensor src int8 1 at MEM_E3:0 = random(3)
.tensor vals int8 1 at MEM_E4:0 = random(4)
.tensor out int8 2 at MEM_E5:0 output
.queue MEM_E3
    @0 READ 0, w2
.queue MEM_E0
    @4 READ 0, e0
.queue MEM_E1
    @5 READ 0, e1
.queue MEM_E4
    @4 READ 0, w3
.queue MEM_E2
    @3 WRITE 5, w2
    @8 SCATTER e0, w3
    @12 READ 5, e4
    @13 READ 6, e5
.queue MEM_E5
    @17 WRITE 0, e4
    @18 WRITE 1, e5
"""


@pytest.mark.parametrize("rows", [(5,), (6,), (5, 6), (7,)])
def test_a_row_written_then_partly_scattered_over_is_read_whole(rows):
    """READ 5 sees the WRITE's value in the lanes the SCATTER left alone, and the SCATTER's in the others."""
    program = assemble(THROUGH)
    rng = np.random.default_rng(len(rows))
    for _ in range(3):
        program.set_input("addrs", rng.choice(rows, (1, 320)))
        program.set_input("src", rng.integers(-128, 128, (1, 320)))
        assert_same(program)


def test_a_decode_step_keeps_its_all_zero_values_once(tmp_path):
    # a later run reads the zero rows of attention's one-row Gram loads from the seeding run: most of what a
    # decode step keeps, and the same zeros in every program
    model = load_model(str(write_tiny_gguf(tmp_path / "tiny.gguf")))
    engine = LpuEngine(model, "fp16", executor="fast", prefill_tokens=1)
    engine.generate(model.tokenizer.encode("hello there"), 4, ())
    (step,) = engine._steps.values()
    fold = fast.plan_for(step.stages[0].compiled.program).fold
    kept = [o for outs, _ in fold.values.values() if outs for o in outs]
    zeros = [o for o in kept if o.dtype.kind in "uib" and not o.any()]
    assert len(zeros) > len(kept) // 2
    assert len({id(o) for o in zeros}) == len({(o.shape, o.dtype.str) for o in zeros})
    assert not any(o.flags.writeable for o in zeros)
