"""Small hand-timed programs for the sim tests: stage vectors on streams, run instructions, store results.

Timing is worked out from the instruction table and the floorplan only: a READ issued in cycle t at
position p puts its vector at p in cycle t + d_func(READ) and h hops downstream h cycles later; a WRITE
issued in cycle t takes what its stream holds at its slice in cycle t.
"""

from __future__ import annotations

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.builder import Builder
from openlpu.chip.isa import ISA
from openlpu.chip.operands import Ref
from openlpu.chip.spec import get_chip
from openlpu.sim import fast
from openlpu.sim.exact import run

MINI = get_chip("tsp-mini")
NP = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "fp16": np.float16, "fp32": np.float32}
WEST = ("MEM_W0", "MEM_W1", "MEM_W2", "MEM_W3")  # the four west slices nearest the VXM, nearest first
EAST = ("MEM_E0", "MEM_E1", "MEM_E2", "MEM_E3")
OUT_ADDR = MINI.bank_size  # the first address of bank 1: results never share a bank with inputs at 0..


def earliest(slices, at: str, chip=MINI) -> int:
    """The first cycle in which READs issued from cycle 0 in `slices` can have their vectors at `at`."""
    return ISA["READ"].d_func + max(abs(chip.position[s] - chip.position[at]) for s in slices)


def same_as_exact(exact, other) -> None:
    """Two executors agree: cycles, vector instructions, busy cycles and every output byte."""
    assert (other.cycles, other.vector_instructions, other.busy) == (exact.cycles, exact.vector_instructions,
                                                                     exact.busy)
    assert other.outputs.keys() == exact.outputs.keys()
    for name, value in exact.outputs.items():
        assert other.outputs[name].tobytes() == value.tobytes(), f"the executors disagree on {name}"


def ref(text: str) -> Ref:
    kind = text.rstrip("0123456789")
    return Ref(kind, int(text[len(kind):]))


class Kit:
    """A Builder plus input values, with helpers that time loads and stores by hop counts."""

    def __init__(self, chip="tsp-mini"):
        self.b = Builder(chip)
        self.chip = self.b.chip
        self.inputs: dict[str, np.ndarray] = {}

    def pos(self, slice_: str) -> int:
        return self.chip.position[slice_]

    def emit(self, queue: str, cycle: int, op: str, *args):
        return self.b.emit(queue, cycle, op, *args)

    def repeat(self, queue: str, n: int, d: int = 1):
        return self.b.repeat(queue, n, d)

    def load(self, name: str, values, dtype: str, slices, stream: str, at: str, cycle: int,
             every: int = 1, addr: int = 0) -> None:
        """Store `values` [rows, lanes] in SRAM and READ row r so that it is on the stream group starting
        at `stream`, at slice `at`, in cycle `cycle + r * every`."""
        values = np.asarray(values, dtype=nx.DTYPES[dtype]).reshape(-1, self.chip.lanes)
        slices = tuple(slices)[:nx.width(dtype)]
        first = ref(stream)
        self.b.tensor(name, dtype, len(values), slices, addr)
        self.inputs[name] = values
        for byte, s in enumerate(slices):
            downstream = self.pos(at) - self.pos(s) if first.kind == "e" else self.pos(s) - self.pos(at)
            assert downstream >= 0, f"{s} is not upstream of {at} on {stream}"
            issue = cycle - ISA["READ"].d_func - downstream
            assert issue >= 0, f"load {name} would issue in cycle {issue}"
            self.b.emit(s, issue, "READ", addr, Ref(first.kind, first.index + byte))
            self.b.repeat(s, len(values) - 1, every)

    def store(self, name: str, dtype: str, rows: int, slices, stream: str, at: str, cycle: int,
              every: int = 1, addr: int = OUT_ADDR) -> None:
        """WRITE the stream group starting at `stream`, which holds row r at slice `at` in cycle
        `cycle + r * every`, into an output tensor."""
        slices = tuple(slices)[:nx.width(dtype)]
        first = ref(stream)
        self.b.tensor(name, dtype, rows, slices, addr, output=True)
        for byte, s in enumerate(slices):
            downstream = self.pos(s) - self.pos(at) if first.kind == "e" else self.pos(at) - self.pos(s)
            assert downstream >= 0, f"{s} is not downstream of {at} on {stream}"
            self.b.emit(s, cycle + downstream, "WRITE", addr, Ref(first.kind, first.index + byte))
            self.b.repeat(s, rows - 1, every)

    def program(self):
        program = self.b.build()
        for name, value in self.inputs.items():
            program.set_input(name, value)
        return program

    def run(self, check: bool = True):
        """Run on the cycle-accurate executor, and check that the fast executor gives the same bits."""
        program = self.program()
        result = run(program, check=check)
        same_as_exact(result, fast.run(program, check=False))
        return result


# Operand a comes from the west slices on eastward streams, operand b from the east slices on westward
# streams, both reaching the VXM in cycle VXM_AT (two cycles of slack so that tests can issue earlier).
VXM_AT = earliest(WEST + EAST, "VXM") + 2
SXM_AT = earliest(WEST, "SXM_W")  # the west slices reach the west switch on westward streams
MXM_AT = earliest(WEST, "MXM_W")  # ... and the west MXM planes


def vxm(op: str, dtype: str, a, b=None, *, out_dtype: str | None = None, to: str | None = None,
        alu: int = 0, config: str | None = None, check: bool = True) -> np.ndarray:
    """Run one VXM instruction on rows of `a` (and `b`) and return its stored result.

    `op` is the mnemonic; for CAST, `dtype` is the source and `to` the target dtype. With `config`, a
    `CONFIG vxm.round, <config>` runs before the operation.
    """
    kit = Kit()
    a = np.asarray(a, nx.DTYPES[dtype]).reshape(-1, kit.chip.lanes)
    rows = len(a)
    kit.load("a", a, dtype, WEST, "e0", "VXM", VXM_AT)
    operands: list = [dtype]
    if op == "CAST":
        operands.append(to)
    operands.append("e0")
    if b is not None:
        kit.load("b", b, dtype, EAST, "w0", "VXM", VXM_AT)
        operands.append("w0")
    if config is not None:
        kit.emit("VXM.15", 0, "CONFIG", "vxm.round", config)
    queue = f"VXM.{alu}"
    kit.emit(queue, VXM_AT, op, *operands, "e4")
    kit.repeat(queue, rows - 1)
    out = out_dtype or to or dtype
    kit.store("out", out, rows, EAST, "e4", "VXM", VXM_AT + ISA[op].d_func)
    return kit.run(check=check).outputs["out"]


def loopback(receive_at: int | None = None, deskew_at: int | None = 0,
             send_at: int = max(SXM_AT, ISA["DESKEW"].d_func) + 4):
    """DESKEW link 0 (unless deskew_at is None), SEND a vector from SXM_W in `send_at`, RECEIVE it in
    `receive_at` (default: the cycle it arrives) and store it in MEM_W3.

    Returns (the vector, its arrival cycle, the program).
    """
    kit = Kit()
    x = np.random.default_rng(11).integers(-128, 128, (1, kit.chip.lanes)).astype(np.int8)
    if deskew_at is not None:
        kit.emit("SXM_W.1", deskew_at, "DESKEW", 0)
    kit.load("x", x, "int8", ["MEM_W0"], "w5", "SXM_W", send_at)
    kit.emit("SXM_W.0", send_at, "SEND", 0, "w5")
    arrival = send_at + ISA["SEND"].d_func + kit.chip.c2c_loopback_cycles
    at = arrival if receive_at is None else receive_at
    kit.emit("SXM_W.2", at, "RECEIVE", 0, "e7")
    kit.store("y", "int8", 1, ["MEM_W3"], "e7", "SXM_W", at + ISA["RECEIVE"].d_func)
    return x, arrival, kit.program()
