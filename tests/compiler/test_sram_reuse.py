"""SRAM reuse: dead tensors' space serves later ones, never while a value in it is still to be read."""

import dataclasses

import numpy as np
import pytest

from openlpu.chip.spec import get_chip
from openlpu.compiler.alloc import FRESH, SramAllocator, SramFull
from openlpu.compiler.compile import compile
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError

MINI = get_chip("tsp-mini")


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_a_long_chain_with_skips_reuses_sram_and_stays_exact():
    # 121 tensors of 8 KB (968 KB) on a 512 KB chip: only a few are live at once. Each block adds its
    # input back (a skip), so a tensor must outlive many dead ones around it: reusing its space early
    # would change the bits.
    g = Graph()
    x = g.input("x", (8, 256), "fp32")
    y = x
    for _ in range(40):
        y = g.add(g.swap_pairs(g.neg(y)), y)
    g.output("y", y)
    tensor_bytes = len(g.nodes) * 8 * 256 * 4
    assert tensor_bytes > MINI.sram_bytes
    compiled = compile(g, MINI, check=True)
    assert compiled.sram_bytes <= tensor_bytes / 10
    xv = np.random.default_rng(0).standard_normal((8, 256)).astype(np.float32)
    want = g.evaluate({"x": xv}, lanes=MINI.lanes)["y"]
    for executor in ("exact", "fast"):
        assert _same_bits(compiled.run({"x": xv}, executor=executor).outputs["y"], want)


def test_freed_neighbours_coalesce_into_one_run():
    a = SramAllocator(MINI)
    group = [("MEM_W0",)]
    spots = [a.alloc_anywhere(group, 100, "t", not_before=0) for _ in range(6)]
    assert sorted(addr for _, bank, addr in spots if bank == 0) == [0, 100, 200]  # the roomier bank first
    a.free(("MEM_W0",), 0, 0, 100, 10)
    a.free(("MEM_W0",), 0, 100, 100, 20)
    # 200 addresses freed in two pieces hold one tensor of 150, below the fresh room
    assert a.alloc_anywhere(group, 150, "t", not_before=20) == (("MEM_W0",), 0, 0)


def test_a_range_is_reused_only_once_its_last_reader_is_done():
    a = SramAllocator(MINI)
    group = [("MEM_W0",)]
    a.alloc_anywhere(group, 100, "t", not_before=0)
    a.free(("MEM_W0",), 0, 0, 100, 50)
    assert a.alloc_anywhere(group, 100, "t", not_before=49)[1:] != (0, 0)  # inputs ready before 50: elsewhere
    assert a.alloc_anywhere(group, 100, "t", not_before=50)[1:] == (0, 0)


def test_constants_take_fresh_addresses_only():
    a = SramAllocator(MINI)
    group = [("MEM_W0",)]
    a.alloc_anywhere(group, 100, "t", not_before=0)
    a.free(("MEM_W0",), 0, 0, 100, 0)
    # written at load, before the hole's old value is read: never in the hole
    assert a.alloc_anywhere(group, 10, "constant")[1:] != (0, 0)
    assert a.alloc_anywhere(group, 10, "t", not_before=FRESH)[1:] != (0, 0)
    assert a.alloc_anywhere(group, 10, "t", not_before=0)[1:] == (0, 0)


def test_weights_fill_banks_from_the_top_apart_from_activations():
    a = SramAllocator(MINI)
    slices = [f"MEM_W{i}" for i in range(4)]
    top = {0: MINI.bank_size, 1: 2 * MINI.bank_size}
    for _ in range(4):
        _, bank, addrs = a.alloc_roomiest(slices, 4, 16, "weights")
        assert addrs == (top[bank] - 16,) * 4
        top[bank] -= 16
        _, bank, addr = a.alloc_anywhere([tuple(slices[:1])], 8, "t", not_before=0)
        assert addr < top[bank] - 100  # activations grow from the bottom
    with pytest.raises(UserError, match="does not fit"):
        a.alloc_roomiest(slices, 4, MINI.bank_size, "weights")


def test_units_sharing_weight_tiles_keep_one_copy_in_one_hemisphere():
    # [8, 64] x [64, 64] int8: 2 N tiles for 4 units, so two units take each tile's rows in halves. Matmuls
    # alternate their first unit; the second one's pairs once straddled the hemispheres and stored each tile
    # in both (a SmolLM2 prefill step's o and down weights twice over: P = 8 did not fit one tsp-v1).
    g, rng = Graph(), np.random.default_rng(0)
    x = g.input("x", (8, 64), "int8")
    y = x
    for k in range(4):
        w = g.constant(f"w{k}", rng.integers(-127, 128, (64, 64)), "int8")
        y = g.cast(g.matmul(y, w), "int8")
    g.output("y", y)
    compiled = compile(g, MINI, check=True)
    weight_vectors = sum(t.rows for name, t in compiled.program.tensors.items() if name.startswith("__w"))
    assert weight_vectors == 4 * 2 * 2 * MINI.lanes  # 4 matmuls of 2 x 2 tiles, each tile's rows stored once
    xv = rng.integers(-127, 128, (8, 64)).astype(np.int8)
    assert _same_bits(compiled.run({"x": xv}, executor="fast").outputs["y"],
                      g.evaluate({"x": xv}, lanes=MINI.lanes)["y"])


def test_weights_filling_three_quarters_of_sram_fit_when_stored_once():
    # a SmolLM2 prefill step in small: 96 matmuls of 8 rows by 2 x 2 weight tiles, whose weights take 75% of
    # tsp-mini's SRAM stored once (each tile in one hemisphere) and 112% when every other matmul stored its
    # tiles twice; weights also leave the slices away from the activations for any with room once those fill
    g, rng = Graph(), np.random.default_rng(1)
    x = g.input("x", (8, 64), "int8")
    y = x
    for k in range(96):
        y = g.cast(g.matmul(y, g.constant(f"w{k}", rng.integers(-127, 128, (64, 64)), "int8")), "int8")
    g.output("y", y)
    compiled = compile(g, MINI, check=False)
    weights = sum(t.rows for name, t in compiled.program.tensors.items() if name.startswith("__w"))
    assert weights * MINI.vector_bytes == 0.75 * MINI.sram_bytes
    xv = rng.integers(-127, 128, (8, 64)).astype(np.int8)
    assert _same_bits(compiled.run({"x": xv}, executor="fast").outputs["y"],
                      g.evaluate({"x": xv}, lanes=MINI.lanes)["y"])


def test_a_program_s_instructions_count_against_its_sram():
    """The instructions are fetched from SRAM (IFETCH), so a program whose tensors fit can still be too big."""
    g = Graph()
    x = g.input("x", (4, 300), "fp32")
    y = x
    for _ in range(6):
        y = g.add(g.mul(y, 1.5), x)
    g.output("y", y)
    fits = compile(g, "tsp-mini")
    assert fits.program.instructions() == 220
    assert fits.sram_bytes < 2**19 < 220 * 2560  # the tensors fit tsp-mini's 512 KiB; 2.5 KiB instructions do not
    wide = dataclasses.replace(get_chip("tsp-mini"), instruction_bytes=2560, ifetch_bytes=2560)
    with pytest.raises(SramFull, match=r"its 220 instructions \(0.54 MiB\) exceed tsp-mini's 0.50 MiB of SRAM"):
        compile(g, wide)


def test_programs_with_the_same_weights_share_one_host_copy_of_them():
    # tensor parallelism compiles a program per layer and chip, and their masks and folds are the same bytes:
    # each program keeps its constants, so equal ones are one read-only array
    def build(seed):
        g = Graph()
        w = g.constant("w", np.random.default_rng(seed).integers(-127, 128, (64, 64)), "int8")
        g.output("y", g.matmul(g.input("x", (8, 64), "int8"), w))
        return compile(g, MINI).program.values

    a, b, other = build(0), build(0), build(1)
    names = [n for n in a if n.startswith("__w")]
    assert names and all(a[n] is b[n] and not a[n].flags.writeable for n in names)
    assert not any(a[n] is other[n] for n in names)
