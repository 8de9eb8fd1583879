"""`Program`: what runs on a chip. Per queue, instructions with their issue cycles; tensors in SRAM.

The issue cycle of every instruction is part of the program (determinism: timing is a property of the
compiled program). `queue_cycles` computes them for instructions written without an explicit cycle,
as the ICU would dispatch them: back to back, NOP n waits n cycles, REPEAT n,d occupies n*d cycles and
SYNC parks the queue until the matching NOTIFY has reached it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.isa import ISA
from openlpu.chip.operands import Operand
from openlpu.chip.spec import ChipSpec
from openlpu.errors import UserError


@dataclass(frozen=True)
class Instr:
    op: str
    args: tuple  # operand values in the order of ISA[op].operands
    cycle: int  # issue cycle at superlane 0
    line: int = field(default=0, compare=False)  # source line, for messages

    @property
    def kwargs(self) -> dict:
        return dict(zip((o.name for o in ISA[self.op].operands), self.args, strict=True))

    @property
    def occupancy(self) -> int:
        return ISA[self.op].occupancy(self.kwargs)

    def text(self) -> str:
        return " ".join([self.op, ", ".join(Operand.format(a) for a in self.args)]).strip()


@dataclass(frozen=True)
class Tensor:
    """A [rows, lanes] tensor in SRAM: byte plane b lives in slices[b] at addresses addr..addr+rows-1."""

    name: str
    dtype: str
    rows: int
    slices: tuple[str, ...]
    addr: int
    init: str = "zeros"  # zeros | iota | random(SEED)
    output: bool = False


@dataclass
class Program:
    chip: ChipSpec
    queues: dict[str, list[Instr]] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    maps: dict[str, tuple[int, ...]] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # inputs set by the caller

    def instructions(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def set_input(self, name: str, value) -> None:
        t = self.tensor(name)
        arr = np.asarray(value)
        shape = (t.rows, self.chip.lanes)
        if arr.shape != shape:
            raise UserError(f"input {name!r} has shape {arr.shape}; the program's tensor is {shape}.")
        self.values[name] = arr.astype(nx.dtype_of(t.dtype))

    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise UserError(
                f"no tensor {name!r} in the program: it has {', '.join(self.tensors) or 'none'}."
            ) from None

    def initial_value(self, t: Tensor) -> np.ndarray:
        shape = (t.rows, self.chip.lanes)
        dt = nx.dtype_of(t.dtype)
        if t.name in self.values:
            return self.values[t.name]
        if t.init == "zeros":
            return np.zeros(shape, dt)
        if t.init == "iota":
            return (np.arange(np.prod(shape)) % 127).reshape(shape).astype(dt)
        seed = int(t.init[len("random("):-1])
        rng = np.random.default_rng(seed)
        if t.dtype in nx.INT_DTYPES:
            info = np.iinfo(dt)
            return rng.integers(max(info.min, -128), min(info.max, 127), size=shape, endpoint=True).astype(dt)
        return rng.standard_normal(shape).astype(dt)


def queue_cycles(chip: ChipSpec, queues: dict[str, list[tuple[str, tuple, int | None]]]) -> dict[str, list[int]]:
    """Issue cycles for (op, args, explicit cycle or None) entries of every queue, as the ICU dispatches.

    All NOTIFYs must sit in one queue; the k-th SYNC of any queue waits for the k-th NOTIFY.
    """
    notify_queues = {q for q, entries in queues.items() if any(op == "NOTIFY" for op, _, _ in entries)}
    if len(notify_queues) > 1:
        raise UserError(
            f"NOTIFY appears in queues {', '.join(sorted(notify_queues))}: put every NOTIFY in one queue."
        )
    notifies: list[int] = []
    cycles = {q: [] for q in queues}
    state = {q: [0, 0, 0] for q in queues}  # next index, cursor cycle, SYNCs passed
    pending = set(queues)
    while pending:
        progressed = False
        for q in sorted(pending):
            entries = queues[q]
            idx, cursor, syncs = state[q]
            while idx < len(entries):
                op, args, explicit = entries[idx]
                if op == "SYNC" and explicit is None and syncs >= len(notifies):
                    notify_done = not notify_queues or all(
                        state[n][0] >= len(queues[n]) for n in notify_queues
                    )
                    if notify_done:
                        raise UserError(
                            f"SYNC number {syncs + 1} in queue {q} waits for a NOTIFY that never comes: "
                            f"add a NOTIFY or remove the SYNC."
                        )
                    break
                cycle = cursor if explicit is None else explicit
                cycles[q].append(cycle)
                cursor = cycle + ISA[op].occupancy(dict(zip((o.name for o in ISA[op].operands), args, strict=True)))
                if op == "NOTIFY":
                    notifies.append(cycle)
                if op == "SYNC":
                    if syncs < len(notifies):
                        cursor = max(cursor, notifies[syncs] + chip.notify_cycles)
                    syncs += 1
                idx += 1
                progressed = True
            state[q] = [idx, cursor, syncs]
            if idx >= len(entries):
                pending.discard(q)
        if not progressed and pending:
            raise UserError(
                f"queues {', '.join(sorted(pending))} wait on each other at SYNC: a NOTIFY must come first."
            )
    return cycles


def sync_releases(chip: ChipSpec, program: Program) -> list[int]:
    """Cycle at which the k-th barrier releases parked queues (k-th NOTIFY + the notify latency)."""
    notifies = sorted(i.cycle for q in program.queues.values() for i in q if i.op == "NOTIFY")
    return [c + chip.notify_cycles for c in notifies]
