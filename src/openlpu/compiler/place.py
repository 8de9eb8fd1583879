"""Placing a template in time: find the first start cycle at which everything it uses is free.

A template step, given a start cycle t, lists the instructions it would emit and the pipes and SRAM
ports it would use. `place` tries t, t+1, ... (jumping over busy queue intervals) until all are free,
then claims them and emits the instructions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from openlpu.chip.builder import Builder
from openlpu.chip.isa import ISA
from openlpu.compiler.resources import Pipe, Port, Resources
from openlpu.errors import UserError

SEARCH_LIMIT = 2_000_000  # cycles past the earliest start before giving up
IFETCH_GAP = 1  # a queue slot left free after every emitted group, where an IFETCH can go


@dataclass(frozen=True)
class Emit:
    """`n` issues of one instruction, `d` cycles apart (one instruction plus REPEAT n-1, d)."""

    queue: str
    cycle: int
    op: str
    args: tuple
    n: int = 1
    d: int = 1

    def occupancy(self) -> int:
        occ = ISA[self.op].occupancy(dict(zip((o.name for o in ISA[self.op].operands), self.args, strict=True)))
        return occ + (self.n - 1) * self.d

    def busy(self) -> int:
        """Cycles the queue's unit is taken. A VXM ALU also owns its output latch until its last result
        lands there (d_func after the last issue): a later op on that ALU must not overwrite a latched
        value another ALU is still reading."""
        extra = ISA[self.op].d_func if self.queue.startswith("VXM.") else 0
        return self.occupancy() + extra


@dataclass
class Step:
    emits: list[Emit] = field(default_factory=list)
    pipes: list[Pipe] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)


def fits(res: Resources, step: Step) -> int:
    """0 if the step fits; otherwise a shift (>= 1) worth trying next."""
    for e in step.emits:
        start = e.cycle
        end = start + e.busy() + IFETCH_GAP
        q = res.queue(e.queue)
        if not q.free(start, end):
            return max(1, q.next_free(start, end))
        if start < 0:
            return -start
    for p in step.ports:
        if p.start < 0:
            return -p.start
        if shift := res.port_shift(p):
            return shift
    for pipe in step.pipes:
        if not res.stream_free(pipe):
            return 1
    return 0


def self_conflict(step: Step) -> str | None:
    """Does the step collide with itself (then no start cycle can work)?"""
    spans: dict[str, list[tuple[int, int]]] = {}
    for e in step.emits:
        spans.setdefault(e.queue, []).append((e.cycle, e.cycle + e.occupancy()))
    for q, ss in spans.items():
        ss.sort()
        if any(b[0] < a[1] for a, b in zip(ss, ss[1:], strict=False)):
            return f"queue {q} is used twice at once ({[e for e in step.emits if e.queue == q]})"
    for i, p in enumerate(step.ports):
        for o in step.ports[i + 1:]:
            if o.slice == p.slice and p.meets(o) and (o.kind == p.kind or o.banks & p.banks):
                return f"slice {p.slice} is accessed twice in one cycle"
    return None


def place(res: Resources, builder: Builder, make: Callable[[int], Step | None], t_min: int,
          what: str) -> tuple[int, Step]:
    """Claim and emit the step at the first start cycle >= t_min where it fits.

    `make(t)` returns None when the step cannot be built at t (no free stream or unit, say)."""
    t = t_min
    checked = False
    while True:
        step = make(t)
        if step is not None and not checked:  # a clash within the step would not move with t
            checked = True
            if clash := self_conflict(step):
                raise AssertionError(f"internal compiler error in {what}: {clash}")
        shift = 1 if step is None else fits(res, step)
        if not shift:
            break
        t += shift
        if t - t_min > SEARCH_LIMIT:
            raise UserError(f"cannot schedule {what}: no free resources within {SEARCH_LIMIT:,} cycles.")
    for e in step.emits:
        res.queue(e.queue).claim(e.cycle, e.cycle + e.busy() + IFETCH_GAP)
        builder.emit(e.queue, e.cycle, e.op, *e.args)
        if e.n > 1:
            builder.repeat(e.queue, e.n - 1, e.d)
    for p in step.ports:
        res.claim_port(p)
    for pipe in step.pipes:
        res.claim_stream(pipe)
    return t, step
