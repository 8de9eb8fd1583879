"""Build a `Program` from Python: place tensors, emit instructions at chosen cycles.

The compiler and the benchmarks use it; hand-written programs use the assembler. Operands are given
as values (`Ref`, int, str) or as assembly text (`"e5"`), and checked like the assembler checks them.
"""

from __future__ import annotations

from openlpu.chip.isa import ISA
from openlpu.chip.operands import OperandError
from openlpu.chip.program import Instr, Program, Tensor
from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.errors import UserError


class Builder:
    def __init__(self, chip: ChipSpec | str = "tsp-mini"):
        self.chip = get_chip(chip)
        self.program = Program(self.chip)

    def hops(self, src: str, dst: str) -> int:
        """Stream-register hops from slice `src` to slice `dst` (positive either way)."""
        return abs(self.chip.position[dst] - self.chip.position[src])

    def tensor(self, name: str, dtype: str, rows: int, slices: tuple[str, ...] | str, addr: int = 0,
               init: str = "zeros", output: bool = False) -> Tensor:
        slices = (slices,) if isinstance(slices, str) else tuple(slices)
        t = Tensor(name, dtype, rows, slices, addr, init, output)
        self.program.tensors[name] = t
        return t

    def emit(self, queue: str, cycle: int, op: str, *args) -> Instr:
        self.chip.queue_target(queue)
        opdef = ISA.get(op)
        if opdef is None:
            raise UserError(f"unknown instruction {op!r}.")
        if len(args) != len(opdef.operands):
            raise UserError(f"{op} takes {len(opdef.operands)} operands, got {len(args)}.")
        values = []
        for operand, value in zip(opdef.operands, args, strict=True):
            # one path of checks for text and values alike: the assembler's
            text = value if isinstance(value, str) else operand.format(value)
            try:
                values.append(operand.parse(text))
            except OperandError as err:
                raise UserError(f"{op} at cycle {cycle} in {queue}: {err}.") from None
        ins = Instr(op, tuple(values), cycle)
        self.program.queues.setdefault(queue, []).append(ins)
        return ins

    def repeat(self, queue: str, n: int, d: int = 1) -> Instr | None:
        """Repeat the queue's last instruction n more times, d cycles apart (nothing when n == 0)."""
        if n <= 0:
            return None
        prev = self.program.queues[queue][-1]
        return self.emit(queue, prev.cycle + prev.occupancy, "REPEAT", n, d)

    def build(self) -> Program:
        for instrs in self.program.queues.values():
            instrs.sort(key=lambda i: i.cycle)
        return self.program
