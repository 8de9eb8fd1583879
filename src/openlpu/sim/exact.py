"""The cycle-accurate executor: every vector instruction, every stream register hop, in cycle order.

Event driven: it visits only the cycles where something reads or writes, in the order fixed by
`timeline.action_order`. It trusts the schedule (no interlocks, as on the chip): run the verifier
first, as `run` does unless told not to.
"""

from __future__ import annotations

from openlpu.chip.program import Program
from openlpu.sim.result import RunResult
from openlpu.sim.state import ChipState
from openlpu.sim.timeline import action_order, expand
from openlpu.sim.verify import verify


def run(program: Program, check: bool = True) -> RunResult:
    """Run `program` cycle by cycle. With `check`, the static verifier must accept it first."""
    if check:
        verify(program)
    execs = expand(program)
    st = ChipState(program)
    n = len(execs)
    payloads: list = [None] * n
    read, write = st.read, st.write
    for a in action_order(execs).tolist():
        if a >= n:
            ex = execs[a - n]
            pos, c = ex.pos, ex.rcycle
            inputs = [read(ref, dt, pos, c) for ref, dt in ex.ins]
            payloads[a - n] = ex.op.read(st, ex, inputs)
        else:
            ex = execs[a]
            outputs = ex.op.commit(st, ex, payloads[a])
            payloads[a] = None
            pos, c = ex.pos, ex.wcycle
            for (ref, dt), value in zip(ex.outs, outputs, strict=True):
                write(ref, dt, pos, c, value)
    return finish(program, st, execs)


def finish(program: Program, st: ChipState, execs) -> RunResult:
    """Cycles (last write plus the superlane stagger), outputs and busy cycles of a finished run."""
    chip = program.chip
    last = max((e.wcycle for e in execs), default=-1)
    cycles = last + chip.superlanes if execs else 0
    busy: dict[str, int] = {}
    for e in execs:
        if e.op.unit != "ICU":
            busy[e.op.unit] = busy.get(e.op.unit, 0) + e.op.occupancy(e.args)
    outputs = {t.name: st.load_tensor(t) for t in program.tensors.values() if t.output}
    return RunResult(chip, cycles, outputs, len(execs), busy, execs)
