"""A program expanded into vector-level executions, each with the cycle of its reads and its writes.

Both the verifier and the executors walk this one expansion, in one order (`action_order`): at each
cycle, writes land before reads, so a value written at cycle w is readable at cycle w.
"""

from __future__ import annotations

import numpy as np

from openlpu.chip.isa import ISA, OpDef
from openlpu.chip.operands import Ref
from openlpu.chip.program import Instr, Program

TIMING_ONLY = frozenset({"NOP", "REPEAT", "SYNC", "NOTIFY", "IFETCH"})


class Exec:
    """One issue of one instruction on one vector (a REPEAT makes several)."""

    __slots__ = ("id", "queue", "index", "rep", "op", "args", "cycle", "rcycle", "wcycle",
                 "slice", "pos", "unit", "kind", "ins", "outs", "instr")

    def __init__(self, id_, queue, index, rep, op: OpDef, args, cycle, slice_, pos, unit, kind, instr, io=None):
        self.id = id_
        self.queue = queue
        self.index = index
        self.rep = rep
        self.op = op
        self.args = args
        self.cycle = cycle
        self.rcycle = cycle + op.d_skew
        self.wcycle = cycle + op.d_func
        self.slice = slice_
        self.pos = pos
        self.unit = unit
        self.kind = kind
        self.ins, self.outs = io or op.io(args)
        self.instr: Instr = instr

    def describe(self) -> str:
        rep = f" (repeat {self.rep})" if self.rep else ""
        line = f", line {self.instr.line}" if self.instr.line else ""
        return f"{self.op.name} in queue {self.queue}{rep} issued at cycle {self.cycle}{line}"


def expand(program: Program) -> list[Exec]:
    chip = program.chip
    execs: list[Exec] = []
    for q, instrs in program.queues.items():
        kind, slice_, unit = chip.queue_target(q)
        pos = chip.position[slice_]
        prev: Instr | None = None
        for index, ins in enumerate(instrs):
            op = ISA[ins.op]
            if ins.op == "REPEAT":
                if prev is not None:
                    a = ins.kwargs
                    pop = ISA[prev.op]
                    base = prev.kwargs
                    # a repeat moves addresses, rows and slots; its streams change only for buffer refs
                    io = None if _steps_refs(pop, base) else pop.io(base)
                    for r in range(1, a["n"] + 1):
                        execs.append(Exec(len(execs), q, index, r, pop, pop.step(base, r),
                                          prev.cycle + r * a["d"], slice_, pos, unit, kind, prev, io))
                continue
            if ins.op not in TIMING_ONLY:
                execs.append(Exec(len(execs), q, index, 0, op, ins.kwargs, ins.cycle, slice_, pos, unit, kind, ins))
            prev = ins if ins.op not in TIMING_ONLY else None
    return execs


def _steps_refs(op: OpDef, args: dict) -> bool:
    return any(isinstance(args[k], Ref) for k in op.repeat_step)


def action_order(execs: list[Exec]) -> np.ndarray:
    """Indices i < n are the write (commit) of execs[i], i >= n the read of execs[i - n], in time order."""
    n = len(execs)
    keys = np.empty(2 * n, dtype=np.int64)
    keys[:n] = [2 * e.wcycle for e in execs]
    keys[n:] = [2 * e.rcycle + 1 for e in execs]
    return np.argsort(keys, kind="stable")
