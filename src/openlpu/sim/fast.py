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

from openlpu.chip import numerics as nx
from openlpu.chip.program import Program
from openlpu.chip.shared import shared
from openlpu.sim.fetch import PerVector, Store
from openlpu.sim.fold import analyse
from openlpu.sim.memory import Memory
from openlpu.sim.plan import BOTH, READ, Chunk, Plan, build, releases
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
            plan.compiled = _compile(plan, program.chip, range(len(plan.steps)), plan.release)
    first = plan.memory is None or not plan.memory.fits(program)
    if first:
        running = {plan.chunks[c].batch.id: plan.chunks[c].batch for c, _ in plan.steps}
        plan.memory, plan.fold = Memory(program, list(running.values())), None
    sram, changed = plan.memory.start(program)
    previous = plan.fold
    if previous and not set(changed) <= previous.variable:
        plan.fold = None  # a value taken as the same at every run changed: what the fold kept is stale
    try:
        if plan.fold is None and not first:
            variable = frozenset(changed) | (previous.variable if previous else frozenset())
            with _gc_paused():
                plan.fold = analyse(plan, program, plan.memory, variable)
        st = ChipState(program, sram)
        if not plan.fold:
            _run(plan.compiled, st, Store(len(plan.batches)))
        elif not plan.fold.seeded:
            _seed(plan, st)
        else:
            _run(plan.fold.compiled, st, _kept(plan))
    except _Misguessed:
        plan.fold = False  # never again for this program
        sram, _ = plan.memory.start(program)  # puts back the rows the stopped run wrote
        st = ChipState(program, sram)
        _run(plan.compiled, st, Store(len(plan.batches)))
    outputs = {t.name: st.load_tensor(t) for t in program.tensors.values() if t.output}
    return RunResult(program.chip, plan.cycles, outputs, plan.vectors, dict(plan.busy))


class _Misguessed(Exception):
    """A SCATTER wrote SRAM rows the fold took it not to write."""


def _run(compiled: list, st: ChipState, store: Store) -> None:
    for fn, release, _, _ in compiled:
        fn(st, store)
        for b in release:
            store.outs[b] = store.typed[b] = None


def _seed(plan: Plan, st: ChipState) -> None:
    """A full run that keeps what later folded runs take from it, then makes their steps."""
    fold = plan.fold
    store = Store(len(plan.batches))
    kept = set(fold.kept)
    for fn, release, k0, k1 in plan.compiled:
        if k0 in fold.restores:
            fold.buffers[k0] = [(p, rows, st.mxm[p].buffer[rows].copy()) for p, rows in fold.restores[k0]]
        fn(st, store)
        if k1 in fold.installs:
            plane = st.mxm[plan.chunks[plan.steps[k1][0]].batch.unit]
            fold.kernels[k1] = (plane.mode, nx.shared_kernel(plane.kernel))
        for b in release:
            if b not in kept:
                store.outs[b] = store.typed[b] = None
    fold.values = {b: (_zeros_shared(store.outs[b]), store.typed[b]) for b in fold.kept}
    steps = [k for k, (c, _) in enumerate(plan.steps) if fold.running[c]]
    with _gc_paused():
        compiled = _compile(plan, st.chip, steps, releases([plan.steps[k] for k in steps], plan.chunks))
    extra = [(k, _install(plan.chunks[plan.steps[k][0]].batch.unit, *fold.kernels[k])) for k in fold.installs]
    extra += [(k, _put_back(buffers)) for k, buffers in fold.buffers.items()]
    # in step order; a buffer put back goes before the IW that reads it
    entries = [(e[2], 1, e) for e in compiled] + [(k, 0, (fn, [], k, k)) for k, fn in extra]
    fold.compiled, fold.seeded = [e for _, _, e in sorted(entries, key=lambda x: x[:2])], True


def _zeros_shared(outputs: list | None) -> list | None:
    """Kept outputs, the all-zero ones (the zero rows of one-row Gram matrices' loads, most of what a decode
    step keeps) one array for every program (chip/shared.py)."""
    return outputs and [shared(o) if isinstance(o, np.ndarray) and not o.any() else o for o in outputs]


def _kept(plan: Plan) -> Store:
    store = Store(len(plan.batches))
    for b, (outs, typed) in plan.fold.values.items():
        store.outs[b], store.typed[b] = outs, typed
    return store


def _install(unit: int, mode: str, kernel):
    def fn(st, store):
        plane = st.mxm[unit]
        plane.mode, plane.kernel = mode, kernel
    return fn


def _put_back(buffers: list):
    def fn(st, store):
        for p, rows, values in buffers:
            st.mxm[p].buffer[rows] = values
    return fn


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


def _compile(plan: Plan, chip, steps, drops: list) -> list:
    """Steps of the plan (by index) as functions (state, store) -> None, each with the batches to drop after
    it and the first and last step it runs."""
    out = []
    cells: dict[int, list] = {}  # chunk -> a cell passing its payload from its READ step to its COMMIT step
    reads: list = []  # a run of READ steps, nothing between them
    index = Sram.index(chip)
    for k, release in zip(steps, drops, strict=True):
        c, step = plan.steps[k]
        ch = plan.chunks[c]
        issue = ch.issue() if ch.batch.op.name not in _ONE_BY_ONE else None
        if step == BOTH and ch.batch.op.name == "READ" and ch.whole:
            reads.append((ch, issue, release, k))
            continue
        if reads:
            out.append(_reads(reads, chip, index))
            reads = []
        if step == BOTH and issue is not None and _plain(ch):
            fn = _direct(ch, issue)
        elif step == BOTH:
            fn = _both(_read(ch, issue), _commit(ch, issue, plan))
        elif step == READ:
            fn = _first(_read(ch, issue), cells.setdefault(c, [None]))
        else:
            fn = _second(_commit(ch, issue, plan), cells.pop(c))
        out.append((fn, release, k, k))
    if reads:
        out.append(_reads(reads, chip, index))
    return out


def _reads(reads: list, chip, index: dict[str, int]) -> tuple:
    """A run of READ steps with nothing between them as one step: SRAM does not change within the run, so one
    gather of all their rows from the SRAM block copies what each READ would; each then commits its own."""
    if len(reads) == 1:
        ch, issue, release, k = reads[0]
        return _direct(ch, issue), release, k, k
    commit = reads[0][0].batch.op.commit
    rows, members, release, at = [], [], [], 0
    for ch, issue, dropped, _ in reads:
        addr = issue.args["addr"]
        rows.append(Sram.row(index[ch.batch.slice], chip.mem_addresses, addr))
        members.append((ch.batch.id, issue, at, at + len(rows[-1])))
        release += dropped
        at += len(rows[-1])
    rows = np.concatenate(rows)

    def fn(st, store):
        values = st.mem.rows.take(rows, axis=0)
        for i, issue, lo, hi in members:
            store.outs[i] = commit(st, issue, values[lo:hi])
    return fn, release, reads[0][3], reads[-1][3]


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


def _commit(ch: Chunk, issue, plan: Plan):
    """The commit step of a chunk: (state, store, payload) -> None, keeping what it emits in the store."""
    b = ch.batch
    commit, whole, i = b.op.commit, ch.whole, b.id
    if b.op.name in _ONE_BY_ONE:
        issues = ch.vector_issues()
        scatter = b.op.name == "SCATTER"

        def vector_by_vector(st, store, payloads):
            for one, p in zip(issues, payloads, strict=True):
                if scatter:  # the SRAM is kept for the next run, which puts these rows back
                    rows = plan.memory.log_scatter(one.slice, p[0])
                    if plan.fold and not np.isin(rows, plan.fold.allowed, assume_unique=True).all():
                        raise _Misguessed
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
