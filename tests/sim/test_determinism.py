"""Determinism: a valid program gives the same bytes and cycles every time, whatever order its queues are
listed in, after a trip through the disassembler and on the fast executor; and the cycle-accurate
executor's stream state does not grow with idle cycles."""

import numpy as np
import pytest
from chipkit import EAST, MINI, NP, WEST, Kit
from hypothesis import given, settings
from hypothesis import strategies as st

import openlpu.sim.exact as exact
from openlpu.chip.asm import assemble, disassemble
from openlpu.chip.isa import ISA
from openlpu.chip.operands import Ref
from openlpu.chip.program import Program
from openlpu.sim import fast
from openlpu.sim.exact import run
from openlpu.sim.state import ChipState
from openlpu.sim.verify import check

DTYPES = ("int8", "int16", "int32", "fp16", "fp32")
BINARY = ("ADD", "ADD.SAT", "SUB", "SUB.SAT", "MUL", "MUL.SAT", "MAX", "MIN")
UNARY = ("NEG", "NEG.SAT", "ABS", "ABS.SAT", "RELU", "MOV")
FLOAT_ONLY = ("EXP", "TANH", "RSQRT")


def random_values(rng, dt, rows):
    if dt in ("fp16", "fp32"):
        return (rng.standard_normal((rows, 32)) * 4).astype(NP[dt])
    info = np.iinfo(NP[dt])
    return rng.integers(info.min, info.max, (rows, 32), endpoint=True).astype(NP[dt])


@st.composite
def vxm_programs(draw):
    """A random valid program: rows of a (and b) meet at the VXM, one ALU computes, another may chain on
    its latch; results go east (and west) into SRAM."""
    dt = draw(st.sampled_from(DTYPES))
    rows = draw(st.integers(1, 4))
    at = draw(st.integers(8, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ops = BINARY + UNARY + (FLOAT_ONLY if dt.startswith("fp") else ()) + ("CAST",)
    op = draw(st.sampled_from(ops))
    alu, chained_alu = draw(st.lists(st.integers(0, 15), min_size=2, max_size=2, unique=True))
    kit = Kit()
    kit.load("a", random_values(rng, dt, rows), dt, WEST, "e0", "VXM", at)
    operands = [dt]
    out = dt
    if op == "CAST":
        out = draw(st.sampled_from(DTYPES))
        operands.append(out)
    operands.append("e0")
    if op in BINARY:
        kit.load("b", random_values(rng, dt, rows), dt, EAST, "w0", "VXM", at)
        operands.append("w0")
    if draw(st.booleans()):
        kit.emit("SXM_E.0", 0, "CONFIG", "vxm.round", draw(st.sampled_from(["nearest", "zero"])))
    dst = draw(st.sampled_from([4, 8, 12]))
    kit.emit(f"VXM.{alu}", at, op, *operands, f"e{dst}")
    kit.repeat(f"VXM.{alu}", rows - 1)
    done = at + ISA[op].d_func
    kit.store("y", out, rows, EAST, f"e{dst}", "VXM", done)
    if draw(st.booleans()):  # chain on the latch: y2 = y op2 y, sent west
        op2 = draw(st.sampled_from(("ADD", "MUL", "MAX", "NEG", "ABS")))
        srcs = [f"alu{alu}"] * (2 if op2 in BINARY else 1)
        dst2 = draw(st.sampled_from([4, 8, 12]))
        kit.emit(f"VXM.{chained_alu}", done, op2, out, *srcs, f"w{dst2}")
        kit.repeat(f"VXM.{chained_alu}", rows - 1)
        kit.store("y2", out, rows, WEST, f"w{dst2}", "VXM", done + ISA[op2].d_func)
    return kit.program()


def fingerprint(result):
    return result.cycles, result.busy, {k: v.tobytes() for k, v in sorted(result.outputs.items())}


def reordered(program: Program) -> Program:
    """The same program with its queues listed in reverse order."""
    return Program(program.chip, dict(reversed(program.queues.items())), dict(program.tensors),
                   dict(program.maps), dict(program.values))


def reassembled(program: Program) -> Program:
    again = assemble(disassemble(program))
    for name, value in program.values.items():
        again.set_input(name, value)
    return again


@settings(max_examples=40, deadline=None, derandomize=True)
@given(program=vxm_programs())
def test_a_random_valid_program_gives_the_same_bytes_and_cycles_every_time(program):
    assert check(program) == []
    first = fingerprint(run(program))
    assert first[0] > 0 and first[2]
    assert fingerprint(run(program)) == first
    assert fingerprint(run(reordered(program))) == first
    assert fingerprint(run(reassembled(program))) == first
    assert fingerprint(fast.run(program)) == first  # and the fast executor agrees, bit for bit


# ---------------------------------------------------------------- memory does not grow with idle cycles


class Recording(ChipState):
    """A ChipState that remembers itself, so a test can look at the executor's state after a run."""

    last: ChipState | None = None

    def __init__(self, program):
        super().__init__(program)
        Recording.last = self


def _stream_every(gap: int, n: int) -> Program:
    """ALU 1 latches one vector; ALU 0 puts it on e4 n + 1 times, `gap` cycles apart."""
    kit = Kit()
    kit.load("x", np.ones((1, 32), np.int8), "int8", ["MEM_W0"], "e0", "VXM", 3)
    kit.emit("VXM.1", 3, "MOV", "int8", "e0", None)
    kit.emit("VXM.0", 5, "MOV", "int8", "alu1", "e4")
    kit.repeat("VXM.0", n, gap)
    return kit.program()


def test_live_stream_values_stay_bounded_as_idle_cycles_grow(monkeypatch):
    """50,000 vectors, each gone off the chip long before the next when the gap is large: the executor
    must forget most of them, and hold about as many values whatever the gap."""
    monkeypatch.setattr(exact, "ChipState", Recording)
    n = 50_000
    registers = 2 * MINI.streams_per_direction * len(MINI.floorplan)
    live = {}
    for gap in (1, 10**7):
        program = _stream_every(gap, n)
        result = run(program, check=gap == 1)
        assert result.cycles > gap * n
        live[gap] = Recording.last.live_values()
        assert live[gap] <= n // 4
    assert abs(live[1] - live[10**7]) <= registers


LAST = len(MINI.floorplan) - 1


@pytest.mark.parametrize("direction, edge", [("e", LAST), ("w", 0)])
def test_a_value_is_live_while_on_the_edge_slice_and_pruned_one_cycle_later(direction, edge):
    state = ChipState(Kit().program())
    state.write(Ref(direction, 3), "int8", edge, 100, np.full(32, 7, np.uint8))
    state.prune(100)
    assert state.live_values() == 1 and state.read(Ref(direction, 3), "int8", edge, 100)[0] == 7
    state.prune(101)
    assert state.live_values() == 0


@settings(max_examples=30, deadline=None, derandomize=True)
@given(writes=st.lists(st.tuples(st.sampled_from("ew"), st.integers(0, 15), st.integers(0, LAST),
                                 st.integers(0, 8)), min_size=1, max_size=60),
       later=st.integers(0, LAST + 2))
def test_prune_forgets_exactly_the_values_that_left_the_chip(writes, later):
    """Write values at increasing cycles, prune, and compare with an independent model of the registers:
    a value written at position p in cycle w is at p + (c - w) eastward (p - (c - w) westward) in cycle c."""
    state = ChipState(Kit().program())
    cycle = 0
    model = {}  # (dir, stream, position now) -> value, maintained by moving every value each cycle
    log = []
    for k, (d, s, p, dt) in enumerate(writes):
        cycle += dt
        value = np.full(32, k % 256, np.uint8)
        state.write(Ref(d, s), "int8", p, cycle, value)
        log.append((d, s, p, cycle, k % 256))
    now = cycle + later
    for d, s, p, w, v in log:  # replay in time order: a later write on a register replaces an earlier
        here = p + (now - w) if d == "e" else p - (now - w)
        if 0 <= here <= LAST:
            model[(d, s, here)] = v
    state.prune(now)
    assert state.live_values() == len(model)
    for (d, s, here), v in model.items():
        assert state.read(Ref(d, s), "int8", here, now)[0] == v


@pytest.mark.parametrize("idle", [0, 10**9])
def test_idle_cycles_before_a_program_change_nothing_but_the_cycle_count(idle):
    """Shifting every instruction by `idle` cycles shifts the cycle count by exactly that and keeps the bytes."""
    rng = np.random.default_rng(5)
    x, y = rng.integers(-128, 128, (2, 3, 32)).astype(np.int8)

    def program(start):
        kit = Kit()
        kit.load("x", x, "int8", WEST, "e0", "VXM", start + 8)
        kit.load("y", y, "int8", EAST, "w0", "VXM", start + 8)
        kit.emit("VXM.0", start + 8, "ADD", "int8", "e0", "w0", "e4")
        kit.repeat("VXM.0", 2)
        kit.store("z", "int8", 3, EAST, "e4", "VXM", start + 10)
        return kit.program()

    base, shifted = run(program(0)), run(program(idle))
    assert shifted.cycles == base.cycles + idle
    assert np.array_equal(shifted.outputs["z"], base.outputs["z"])
    assert np.array_equal(base.outputs["z"], (x.astype(np.int16) + y).astype(np.int8))
