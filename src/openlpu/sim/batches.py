"""A program as batches: an instruction and the REPEAT after it, n vectors issued d cycles apart.

The fast executor's unit of work. Vectors are numbered as `timeline.expand` numbers its executions
(queue by queue, instruction by instruction, repetition by repetition), so the tie-breaks of
`timeline.action_order` are reproduced without expanding the program.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlpu.chip.isa import ISA, OpDef
from openlpu.chip.program import Instr, Program
from openlpu.sim.timeline import TIMING_ONLY


@dataclass(eq=False)
class Batch:
    id: int
    queue: str
    instr: Instr  # the repeated instruction
    op: OpDef
    base: dict  # its operands
    r0: int  # repetition number of the first vector (0: the instruction itself)
    n: int  # vectors
    d: int  # cycles between them
    v0: int  # number of the first vector
    slice: str
    pos: int
    unit: int
    ins: list  # [(Ref, dtype)] read by every vector (a REPEAT moves only addresses, rows, slots, buffers)
    outs: list  # [(Ref, dtype)] written by every vector

    def cycles(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Issue cycles of vectors lo..hi-1."""
        return self.instr.cycle + (self.r0 + np.arange(lo, self.n if hi is None else hi)) * self.d

    def args(self, lo: int, hi: int) -> dict:
        """Operands of vectors lo..hi-1: arrays for those a REPEAT advances."""
        return self.op.step(self.base, self.r0 + np.arange(lo, hi))

    def vector_args(self, j: int) -> dict:
        return self.op.step(self.base, self.r0 + j)


def batches(program: Program) -> list[Batch]:
    chip = program.chip
    out: list[Batch] = []
    v = 0
    for q, instrs in program.queues.items():
        _, slice_, unit = chip.queue_target(q)
        pos = chip.position[slice_]
        prev: Instr | None = None  # what a REPEAT repeats (as in timeline.expand)
        extend: Batch | None = None  # prev's batch while the next REPEAT may extend it
        for ins in instrs:
            if ins.op == "REPEAT":
                if prev is not None:
                    a = ins.kwargs
                    if extend is not None:
                        extend.n, extend.d = 1 + a["n"], a["d"]
                    else:  # a second REPEAT repeats the instruction again from repetition 1
                        op = ISA[prev.op]
                        out.append(Batch(len(out), q, prev, op, prev.kwargs, 1, a["n"], a["d"], v, slice_, pos,
                                         unit, *op.io(prev.kwargs)))
                    v += a["n"]
                extend = None
                continue
            if ins.op in TIMING_ONLY:
                prev = extend = None
                continue
            op, args = ISA[ins.op], ins.kwargs
            extend = Batch(len(out), q, ins, op, args, 0, 1, 1, v, slice_, pos, unit, *op.io(args))
            out.append(extend)
            prev = ins
            v += 1
    return out
