"""What later runs of a program may skip: the steps whose values are the same at every run.

A decode step reads a model's weights from SRAM, loads them into the MXM weight buffers and installs them:
the same work at every run, while only the activations and the KV cache change. Given the tensors whose
values change from run to run (`variable`), one pass over the plan's steps in their order marks the
vectors whose values depend on them (dynamic), keeping for every piece of ChipState whether it holds a
dynamic value and which chunk wrote it last: SRAM rows, weight buffer rows, installed weights,
activation buffers, accumulator slots (a value in the store comes with its vector). A later run then runs

- the chunks with a dynamic vector, and CONFIG, DESKEW and SCATTER;
- static chunks whose effect on ChipState a running chunk reads (a WRITE of a row a running READ reads or
  an output holds, an ABC or ACC a running ACC reads), and in turn what they read;
- in place of a static IW, the weights it installed in the seeding run (a full run that keeps what later
  runs need), and before a running IW, the rows of its weight buffer that skipped LWs left.

Static values that running chunks fetch are kept from the seeding run too. SCATTER addresses come from
data: the analysis takes it that a SCATTER writes only rows of variable tensors (a KV cache). The executor
checks every SCATTER against that and runs the program without folding if one writes elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openlpu.sim.plan import COMMIT, READ, Plan
from openlpu.sim.state import Sram

_ALWAYS = frozenset({"CONFIG", "DESKEW", "SCATTER"})  # cheap, or checked as they run


@dataclass
class Fold:
    variable: frozenset[str]
    running: np.ndarray  # per chunk
    installs: set[int]  # steps (a static IW's commit) that install the weights kept from the seeding run
    restores: dict[int, list]  # step (a running IW's read) -> [(plane, weight buffer rows to put back)]
    kept: list[int]  # static batches whose values running chunks fetch
    allowed: np.ndarray  # the SRAM rows (Sram.rows, sorted) a SCATTER may write
    # kept by the seeding run
    values: dict = field(default_factory=dict)  # batch -> (outputs, typed payload)
    kernels: dict = field(default_factory=dict)  # install step -> (mode, installed weights)
    buffers: dict = field(default_factory=dict)  # restore step -> [(plane, rows, their bytes)]
    seeded: bool = False
    compiled: list | None = None  # the running steps as functions, made by the executor


def analyse(plan: Plan, program, memory, variable: frozenset[str]) -> Fold:
    chip = program.chip
    A = chip.mem_addresses
    var = np.zeros(len(memory.tensors), bool)  # by tensor
    for name in variable:
        var[memory.order[name]] = True
    sram = np.zeros(len(memory.sram.rows), bool)  # per SRAM row: does it hold a varying tensor's value
    sram[memory.held] = var[memory.held_by]
    allowed = sram.copy()
    writer = np.full(len(sram), -1, np.int64)  # the chunk that last wrote each row
    bs = plan.batches
    dv = np.zeros(plan.vectors, bool)
    dyn = np.zeros(len(plan.chunks), bool)
    deps: dict[int, list] = {}  # a static chunk -> the chunks whose ChipState it read
    needed: set[int] = set()
    buf = np.zeros((chip.mxm_planes + 1, chip.mxm_size), bool)  # + 1: as plan._Locs
    stale = np.zeros_like(buf)  # rows a skipped LW wrote last
    kern = np.zeros(chip.mxm_planes + 1, bool)
    act: dict = {}  # (plane, buffer) -> (dynamic, writer)
    acc: dict = {}  # (plane, dtype) -> (dynamic, writer) per slot
    pending: dict[int, np.ndarray] = {}
    restores: dict[int, list] = {}
    installs: set[int] = set()

    def accumulators(key):
        if key not in acc:
            acc[key] = (np.zeros(chip.mxm_acc_slots, bool), np.full(chip.mxm_acc_slots, -1, np.int64))
        return acc[key]

    for k, (c, step) in enumerate(plan.steps):
        ch = plan.chunks[c]
        b = ch.batch
        name, u = b.op.name, b.unit
        a = ch.issue().args
        if step != COMMIT:
            t = np.zeros(ch.hi - ch.lo, bool)
            for f in (*ch.fetches, ch.link):
                for w, rows, at in f.reads() if f is not None else ():
                    t[at] |= dv[bs[w].v0:bs[w].v0 + bs[w].n][rows]
            read = np.zeros(0, np.int64)  # the chunks whose ChipState this one reads
            if name in ("READ", "GATHER"):
                rows = Sram.row(memory.index[b.slice], A, a["addr"] if name == "READ" else slice(0, A))
                t |= sram[rows] if name == "READ" else sram[rows].any()
                read = writer[rows]
            elif name == "IW":
                planes = [u, u + 1] if a["dtype"] == "fp16" else [u]
                t |= buf[planes].any()
            elif name == "ACC":
                t |= kern[u]
                if a["src"].kind == "b":
                    held = [act.get((u, i), (False, -1)) for i in np.broadcast_to(a["src"].index, t.shape).tolist()]
                    t |= np.array([d for d, _ in held], bool)
                    read = np.array([w for _, w in held], np.int64)
                if a["mode"] == "acc":
                    d, w = accumulators((u, a["dtype"]))
                    t |= d[a["slot"]]
                    read = np.concatenate([read, np.atleast_1d(w[a["slot"]])])
            dyn[c] |= t.any()
            if dyn[c]:
                needed.update(w for w in np.unique(read).tolist() if w >= 0 and not dyn[w])
                if name == "IW":
                    put_back = [(p, np.flatnonzero(stale[p])) for p in planes if stale[p].any()]
                    if put_back:
                        restores[k] = put_back
                    stale[planes] = False
            else:
                deps[c] = read
            if step == READ:
                pending[c] = t
                continue
        else:
            t = pending.pop(c)
        if name == "WRITE":
            rows = Sram.row(memory.index[b.slice], A, a["addr"])
            sram[rows], writer[rows] = t, c
        elif name == "SCATTER":
            # it may write any allowed row, or not: the rows keep their last writer (a SCATTER always runs)
            rows = Sram.row(memory.index[b.slice], A, slice(0, A))
            sram[rows[allowed[rows]]] |= t.any()
        elif name == "LW":
            rows = np.add.outer(a["row"], np.arange(a["count"]))
            buf[u][rows] = t[:, None] if rows.ndim == 2 else t.any()
            stale[u][rows] = not dyn[c]
        elif name == "IW":
            kern[u] = t.any()
            if not dyn[c]:
                installs.add(k)
        elif name == "ABC":
            for i, d in zip(np.broadcast_to(a["buf"].index, t.shape).tolist(), t.tolist(), strict=True):
                act[u, i] = (d, c)
        elif name == "ACC":
            d, w = accumulators((u, a["dtype"]))
            d[a["slot"]], w[a["slot"]] = t, c
        dv[b.v0 + ch.lo:b.v0 + ch.hi] |= t

    for t in program.tensors.values():  # an output's rows as the run leaves them
        if t.output:
            for s in t.slices:
                needed.update(w for w in np.unique(writer[Sram.row(memory.index[s], A, slice(t.addr, t.addr + t.rows))])
                              .tolist() if w >= 0 and not dyn[w])
    work = list(needed)
    while work:
        for w in deps.get(work.pop(), ()):
            if w >= 0 and not dyn[w] and w not in needed:
                needed.add(w)
                work.append(w)
    running = dyn.copy()
    running[list(needed)] = True
    for c, ch in enumerate(plan.chunks):
        running[c] |= ch.batch.op.name in _ALWAYS
    partial = {ch.batch.id for c, ch in enumerate(plan.chunks) if not running[c]}
    kept = {w for c, ch in enumerate(plan.chunks) if running[c] for f in (*ch.fetches, ch.link)
            for w in getattr(f, "sources", ()) if w in partial}
    return Fold(variable, running, installs, restores, sorted(kept), np.flatnonzero(allowed))
