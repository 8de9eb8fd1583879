"""The fast executor: the same program as openlpu.sim.exact, a tensor instruction at a time with numpy.

An instruction and its REPEAT (n vectors) run as one batch: its n reads with one call of the ISA's
`read` on arrays with a leading axis of n vectors, then its n commits with one call of `commit`. The
order of batches and where each read's values come from are worked out once per program
(openlpu.sim.plan) and kept with it, so running it again with new inputs (`Program.set_input`) only
does the arithmetic. Results, cycles, vector instruction counts and busy cycles equal the exact
executor's, bit for bit (tests/sim/test_fast.py proves it on the examples, a full-chip matmul and
generated programs). The result carries no per-vector executions: trace with the exact executor.
"""

from __future__ import annotations

import gc
import weakref
from contextlib import contextmanager

import numpy as np

from openlpu.chip.program import Program
from openlpu.sim.fetch import PerVector, Store
from openlpu.sim.plan import BOTH, READ, Chunk, Plan, build
from openlpu.sim.result import RunResult
from openlpu.sim.state import ChipState, Sram
from openlpu.sim.verify import verify

# ops whose read or commit is defined on one vector only: run them vector by vector
_ONE_BY_ONE = frozenset({"IW", "CONFIG", "DESKEW", "SCATTER"})

_plans: dict[int, tuple[weakref.ref, tuple, Plan]] = {}  # id(program) -> (program, fingerprint, plan)


def run(program: Program, check: bool = True) -> RunResult:
    """Run `program` batch by batch. With `check`, the static verifier must accept it first (once)."""
    plan = plan_for(program)
    if check and not plan.verified:
        verify(program)
        plan.verified = True
    if plan.error is not None:
        raise plan.error.with_traceback(None)
    if plan.compiled is None:
        with _gc_paused():
            plan.compiled = _compile(plan, program.chip)
    st = ChipState(program)
    store = Store(len(plan.batches))
    for fn, release in plan.compiled:
        fn(st, store)
        for b in release:
            store.outs[b] = store.typed[b] = None
    outputs = {t.name: st.load_tensor(t) for t in program.tensors.values() if t.output}
    return RunResult(program.chip, plan.cycles, outputs, plan.vectors, dict(plan.busy))


def plan_for(program: Program) -> Plan:
    """The program's static analysis, made on first use and kept while its instructions stay the same."""
    key = (program.chip, tuple((q, tuple(instrs)) for q, instrs in program.queues.items()),
           tuple(program.maps.items()))
    cached = _plans.get(id(program))
    if cached is not None and cached[0]() is program and cached[1] == key:
        return cached[2]
    with _gc_paused():
        plan = build(program)
    _plans[id(program)] = (weakref.ref(program), key, plan)
    weakref.finalize(program, _plans.pop, id(program), None)
    return plan


@contextmanager
def _gc_paused():
    """A plan is millions of long-lived objects, made in one go and free of cycles: the cyclic collector
    would scan them again and again while they are made (a third of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _compile(plan: Plan, chip) -> list:
    """The plan's steps as functions (state, store) -> None, each with the batches to drop after it."""
    out = []
    cells: dict[int, list] = {}  # chunk -> a cell passing its payload from its READ step to its COMMIT step
    reads: list = []  # a run of READ steps, nothing between them
    index = Sram.index(chip)
    for (c, step), release in zip(plan.steps, plan.release, strict=True):
        ch = plan.chunks[c]
        issue = ch.issue() if ch.batch.op.name not in _ONE_BY_ONE else None
        if step == BOTH and ch.batch.op.name == "READ" and ch.whole:
            reads.append((ch, issue, release))
            continue
        if reads:
            out.append(_reads(reads, chip, index))
            reads = []
        if step == BOTH and issue is not None and _plain(ch):
            fn = _direct(ch, issue)
        elif step == BOTH:
            fn = _both(_read(ch, issue), _commit(ch, issue))
        elif step == READ:
            fn = _first(_read(ch, issue), cells.setdefault(c, [None]))
        else:
            fn = _second(_commit(ch, issue), cells.pop(c))
        out.append((fn, release))
    if reads:
        out.append(_reads(reads, chip, index))
    return out


def _reads(reads: list, chip, index: dict[str, int]) -> tuple:
    """A run of READ steps with nothing between them as one step: SRAM does not change within the run, so one
    gather of all their rows from the SRAM block copies what each READ would; each then commits its own."""
    if len(reads) == 1:
        ch, issue, release = reads[0]
        return _direct(ch, issue), release
    commit = reads[0][0].batch.op.commit
    rows, members, release, at = [], [], [], 0
    for ch, issue, dropped in reads:
        addr = issue.args["addr"]
        addr = np.arange(addr.start, addr.stop) if isinstance(addr, slice) else np.asarray(addr)
        rows.append(index[ch.batch.slice] * chip.mem_addresses + addr)
        members.append((ch.batch.id, issue, at, at + len(addr)))
        release += dropped
        at += len(addr)
    rows = np.concatenate(rows)

    def fn(st, store):
        values = st.mem.rows.take(rows, axis=0)
        for i, issue, lo, hi in members:
            store.outs[i] = commit(st, issue, values[lo:hi])
    return fn, release


def _plain(ch: Chunk) -> bool:
    return (ch.whole and ch.batch.op.name not in ("SEND", "RECEIVE")
            and not any(isinstance(f, PerVector) for f in ch.fetches))


def _direct(ch: Chunk, issue):
    """Read and commit of a whole batch in one function, the common case (fewer Python calls per step)."""
    b = ch.batch
    read, commit, i, typed = b.op.read, b.op.commit, b.id, b.op.unit == "VXM"
    fetches = ch.fetches
    single = fetches[0] if len(fetches) == 1 else None

    def fn(st, store):
        inputs = (single(store),) if single is not None else [f(store) for f in fetches] if fetches else ()
        payload = read(st, issue, inputs)
        outputs = commit(st, issue, payload)
        if typed:
            store.typed[i] = payload
        if outputs:
            store.outs[i] = outputs
    return fn


def _both(read, commit):
    return lambda st, store: commit(st, store, read(st, store))


def _first(read, cell: list):
    def fn(st, store):
        cell[0] = read(st, store)
    return fn


def _second(commit, cell: list):
    def fn(st, store):
        commit(st, store, cell[0])
        cell[0] = None
    return fn


def _read(ch: Chunk, issue):
    """The read step of a chunk: (state, store) -> payload."""
    b = ch.batch
    read, fetches = b.op.read, ch.fetches
    if b.op.name == "RECEIVE":  # the vector a SEND put on the link (plan pairs them statically)
        return lambda st, store: ch.link(store)
    one_by_one = b.op.name in _ONE_BY_ONE
    if one_by_one or any(isinstance(f, PerVector) for f in fetches):
        issues = ch.vector_issues()

        def vector_by_vector(st, store):
            inputs = [None if isinstance(f, PerVector) else f(store) for f in fetches]
            payloads = []
            for j, one in enumerate(issues):
                row = [f.one(store, j) if x is None else x[j] for f, x in zip(fetches, inputs, strict=True)]
                payloads.append(read(st, one, row))
            return payloads if one_by_one else np.stack(payloads)
        return vector_by_vector
    if not fetches:
        return lambda st, store: read(st, issue, ())
    if len(fetches) == 1:
        f = fetches[0]
        return lambda st, store: read(st, issue, (f(store),))
    return lambda st, store: read(st, issue, [f(store) for f in fetches])


def _commit(ch: Chunk, issue):
    """The commit step of a chunk: (state, store, payload) -> None, keeping what it emits in the store."""
    b = ch.batch
    commit, whole, i = b.op.commit, ch.whole, b.id
    if b.op.name in _ONE_BY_ONE:
        issues = ch.vector_issues()

        def vector_by_vector(st, store, payloads):
            for one, p in zip(issues, payloads, strict=True):
                commit(st, one, p)
        return vector_by_vector
    typed = b.op.unit == "VXM" or b.op.name == "SEND"  # the latch value, the vector on the link
    if b.op.name == "SEND":  # the link itself is resolved statically
        def keep(st, store, payload):
            store.typed[i] = payload if whole else _put(store.typed[i], ch, payload)
        return keep
    if whole and not typed:
        def plain(st, store, payload):
            outputs = commit(st, issue, payload)
            if outputs:
                store.outs[i] = outputs
        return plain

    def batch(st, store, payload):
        outputs = commit(st, issue, payload)
        if typed:
            store.typed[i] = payload if whole else _put(store.typed[i], ch, payload)
        if outputs:
            if whole:
                store.outs[i] = outputs
            else:
                held = store.outs[i] or [None] * len(outputs)
                store.outs[i] = [_put(h, ch, o) for h, o in zip(held, outputs, strict=True)]
    return batch


def _put(held, ch: Chunk, value: np.ndarray) -> np.ndarray:
    """Rows lo..hi of a split batch's values, gathered into one array for the batch."""
    if held is None:
        held = np.empty((ch.batch.n, *value.shape[1:]), value.dtype)
    assert held.dtype == value.dtype
    held[ch.lo:ch.hi] = value
    return held
