"""The static verifier: the chip has no interlocks, so a mistimed program must be caught before it runs.

It checks, naming the instruction, the cycle and the resource:
- queues: an instruction in a slot another still occupies, an op on the wrong kind of queue, REPEAT
  with nothing to repeat, issue while parked at SYNC, queue underrun (an instruction dispatched before
  an IFETCH brought it);
- operands: addresses, streams (range and pair/group alignment), latches, buffers, slots, maps, links;
- streams: a read that no value has reached, a value overwritten before anything reads it, two writers
  on one stream register in one cycle, a value written off the chip edge;
- SRAM: two accesses to one bank in a cycle (one read and one write per cycle, in different banks);
- MXM: ACC before weights are installed or with the wrong dtype; C2C: RECEIVE before the vector arrives,
  a link used before DESKEW.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.isa import CONFIG_KEYS, ISA, queue_kind
from openlpu.chip.operands import EAST, Ref
from openlpu.chip.program import Program, sync_releases
from openlpu.errors import UserError
from openlpu.sim.timeline import TIMING_ONLY, Exec, action_order, expand


@dataclass(frozen=True)
class Violation:
    kind: str  # slot | queue | sync | underrun | operand | stream-early | stream-overwrite | ...
    message: str


class VerifyError(UserError):
    def __init__(self, violations: list[Violation]):
        self.violations = violations
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        super().__init__(violations[0].message + more)


def verify(program: Program) -> None:
    """Raise VerifyError naming the first problem (and counting the rest) unless the program is sound."""
    found = check(program)
    if found:
        raise VerifyError(found)


def check(program: Program) -> list[Violation]:
    found = _check_queues(program)
    if found:
        return found  # timing is meaningless until the queues are sound
    execs = expand(program)
    found += _check_operands(program, execs)
    if found:
        return found
    found += _check_dataflow(program, execs)
    found += _check_banks(program, execs)
    found += _check_units(program, execs)
    return found


def _check_queues(program: Program) -> list[Violation]:
    chip = program.chip
    out: list[Violation] = []
    releases = sync_releases(chip, program)
    for q, instrs in program.queues.items():
        qkind = chip.queue_target(q)[0]
        busy_until, busy_by = 0, None
        syncs = 0
        ifetch_cycles = [i.cycle for i in instrs if i.op == "IFETCH"]
        parked_until = 0
        prev = None
        for index, ins in enumerate(instrs):
            op = ISA[ins.op]
            where = f"{ins.op} in queue {q} at cycle {ins.cycle}" + (f" (line {ins.line})" if ins.line else "")
            kind = queue_kind(op)
            if kind is not None and kind != qkind:
                out.append(Violation("queue", f"{where}: a {op.unit} instruction cannot issue on queue {q}."))
            if ins.cycle < busy_until:
                out.append(Violation(
                    "slot", f"two instructions in one queue slot: {where} issues while {busy_by} occupies "
                            f"queue {q} until cycle {busy_until}."))
            if ins.cycle < parked_until:
                out.append(Violation(
                    "sync", f"{where} issues while the queue is parked at SYNC until cycle {parked_until}."))
            available = _fetched_at(chip, ifetch_cycles, index)
            if available is None or ins.cycle < available:
                when = "no IFETCH brings it" if available is None else f"it arrives at cycle {available}"
                out.append(Violation("underrun", f"queue underrun: {where} is dispatched but {when}."))
            if ins.op == "REPEAT":
                if prev is None or prev.op in TIMING_ONLY:
                    out.append(Violation("queue", f"{where}: REPEAT must follow an instruction to repeat."))
                elif ins.cycle != prev.cycle + prev.occupancy:
                    out.append(Violation(
                        "queue", f"{where}: REPEAT must issue right after the {prev.op} it repeats "
                                 f"(cycle {prev.cycle + prev.occupancy})."))
                elif ins.kwargs["d"] < prev.occupancy:
                    out.append(Violation(
                        "slot", f"{where}: repeats {prev.op} every {ins.kwargs['d']} cycle(s) but it occupies "
                                f"its unit for {prev.occupancy}."))
            if ins.op == "SYNC":
                if syncs >= len(releases):
                    out.append(Violation("sync", f"{where} waits for a NOTIFY that never comes."))
                else:
                    parked_until = max(ins.cycle + 1, releases[syncs])
                syncs += 1
            busy_until, busy_by = ins.cycle + ins.occupancy, f"{ins.op} issued at cycle {ins.cycle}"
            prev = ins
    return out


def _fetched_at(chip, ifetch_cycles: list[int], index: int) -> int | None:
    """Cycle at which instruction `index` of a queue is in the queue's buffer (None: never fetched).

    The first queue_preload instructions are loaded before start; the k-th IFETCH brings the next block.
    (An IFETCH's own index is below the block it brings, so counting all of a queue's IFETCHes is right.)"""
    if index < chip.queue_preload:
        return 0
    block = (index - chip.queue_preload) // chip.ifetch_instructions  # 0 = first IFETCH
    if block >= len(ifetch_cycles):
        return None
    return ifetch_cycles[block] + ISA["IFETCH"].d_func


def _check_operands(program: Program, execs: list[Exec]) -> list[Violation]:
    chip = program.chip
    out: list[Violation] = []
    last = len(chip.floorplan) - 1

    def bad(ex: Exec, msg: str) -> None:
        out.append(Violation("operand", f"{ex.describe()}: {msg}"))

    for ex in execs:
        a = ex.args
        for ref, dt in ex.ins + ex.outs:
            _check_ref(chip, ex, ref, dt, bad)
        for ref, _dt in ex.outs:
            if ref.is_stream and ((ref.kind == EAST and ex.pos == last) or (ref.kind != EAST and ex.pos == 0)):
                bad(ex, f"writes {ref} off the chip edge at {ex.slice}; use the other direction.")
        if "addr" in a and not 0 <= a["addr"] < chip.mem_addresses:
            bad(ex, f"address {a['addr']} is outside 0..{chip.mem_addresses - 1}.")
        for buf in (a.get("buf"), a.get("src")):
            if isinstance(buf, Ref) and buf.kind == "b" and buf.index >= chip.mxm_act_buffers:
                bad(ex, f"activation buffer {buf} is outside b0..b{chip.mxm_act_buffers - 1}.")
        if "slot" in a and not a["slot"] < chip.mxm_acc_slots:
            bad(ex, f"accumulator slot {a['slot']} is outside 0..{chip.mxm_acc_slots - 1}.")
        if ex.op.name == "LW" and a["row"] + a["count"] > chip.mxm_size:
            bad(ex, f"weight rows {a['row']}..{a['row'] + a['count'] - 1} exceed the plane's {chip.mxm_size}.")
        if ex.op.name in ("IW", "ACC", "ABC") and a["dtype"] == "fp16" and ex.unit % 2:
            bad(ex, f"fp16 pairs planes (0,1) and (2,3): issue it on the even plane {ex.unit - 1}.")
        if "map" in a:
            _check_map(program, ex, bad)
        if "link" in a:
            if not 0 <= a["link"] < chip.c2c_links:
                bad(ex, f"link {a['link']} is outside 0..{chip.c2c_links - 1}.")
            elif chip.link_slice(a["link"]) != ex.slice:
                bad(ex, f"link {a['link']} hangs off {chip.link_slice(a['link'])}, not {ex.slice}.")
        if ex.op.name == "CONFIG" and a["value"] not in CONFIG_KEYS[a["key"]]:
            bad(ex, f"{a['key']} takes one of {', '.join(CONFIG_KEYS[a['key']])}, not {a['value']!r}.")
    return out


def _check_ref(chip, ex: Exec, ref: Ref, dt: str, bad) -> None:
    if ref.is_stream:
        w = nx.width(dt)
        if ref.index % w:
            bad(ex, f"{dt} on stream {ref} must use an aligned group of {w} (a stream index divisible by {w}).")
        if ref.index + w > chip.streams_per_direction:
            bad(ex, f"stream {ref} ({dt}, {w} stream(s)) exceeds the {chip.streams_per_direction} "
                    f"streams per direction.")
    elif ref.kind == "alu" and ref.index >= chip.vxm_alus_per_lane:
        bad(ex, f"ALU latch {ref} is outside alu0..alu{chip.vxm_alus_per_lane - 1}.")
    elif ref.kind == "b" and ref.index >= chip.mxm_act_buffers:
        bad(ex, f"activation buffer {ref} is outside b0..b{chip.mxm_act_buffers - 1}.")


def _check_map(program: Program, ex: Exec, bad) -> None:
    name = ex.args["map"]
    if name not in program.maps:
        bad(ex, f"map {name!r} is not declared: add `.map {name} = ...`.")
        return
    m = np.asarray(program.maps[name])
    lanes = program.chip.lanes
    if ex.op.name == "PERMUTE" and sorted(m.tolist()) != list(range(lanes)):
        bad(ex, f"map {name!r} must be a permutation of 0..{lanes - 1} for PERMUTE.")
    if ex.op.name == "DISTRIBUTE" and (len(m) != 16 or m.min() < 0 or m.max() > 15):
        bad(ex, f"map {name!r} must have 16 entries in 0..15 for DISTRIBUTE.")


def _check_dataflow(program: Program, execs: list[Exec]) -> list[Violation]:
    """Replay the schedule with writer tags instead of values."""
    out: list[Violation] = []
    n = len(execs)
    lines: dict[tuple[int, int, int], list] = {}  # (dir, stream, line) -> [writer, write cycle, was read]
    latch_written: set[int] = set()
    reported_overwrite: set[int] = set()

    def line_key(ref: Ref, i: int, pos: int, cycle: int):
        d = 0 if ref.kind == EAST else 1
        return d, ref.index + i, (pos - cycle if d == 0 else pos + cycle)

    for a in action_order(execs).tolist():
        if a >= n:
            ex = execs[a - n]
            for ref, dt in ex.ins:
                if ref.kind == "alu":
                    if ref.index not in latch_written:
                        out.append(Violation(
                            "stream-early", f"{ex.describe()} reads ALU latch {ref} in cycle {ex.rcycle} "
                                            f"before any instruction has written it."))
                    continue
                if not ref.is_stream:
                    continue
                for i in range(nx.width(dt)):
                    key = line_key(ref, i, ex.pos, ex.rcycle)
                    entry = lines.get(key)
                    if entry is None:
                        out.append(Violation(
                            "stream-early",
                            f"{ex.describe()} reads stream {Ref(ref.kind, ref.index + i)} at {ex.slice} in cycle "
                            f"{ex.rcycle} before any value reaches it{_nearest(execs, ref, i, ex)}."))
                    else:
                        entry[2] = True
        else:
            ex = execs[a]
            if ex.op.unit == "VXM":
                latch_written.add(ex.unit)
            for ref, dt in ex.outs:
                for i in range(nx.width(dt)):
                    key = line_key(ref, i, ex.pos, ex.wcycle)
                    old = lines.get(key)
                    stream = Ref(ref.kind, ref.index + i)
                    if old is not None and old[1] == ex.wcycle:
                        out.append(Violation(
                            "stream-conflict", f"two writers on stream {stream} at {ex.slice} in cycle "
                                               f"{ex.wcycle}: {old[0].describe()} and {ex.describe()}."))
                    elif old is not None and not old[2] and old[0].id not in reported_overwrite:
                        reported_overwrite.add(old[0].id)
                        out.append(Violation(
                            "stream-overwrite",
                            f"the value {old[0].describe()} wrote on stream {stream} is overwritten at "
                            f"{ex.slice} in cycle {ex.wcycle} by {ex.describe()} before any instruction "
                            f"reads it."))
                    lines[key] = [ex, ex.wcycle, False]
    return out


def _nearest(execs: list[Exec], ref: Ref, i: int, reader: Exec) -> str:
    """Describe the producer whose value passes the reader's slice soonest after the read, if any."""
    best = None
    for ex in execs:
        for oref, dt in ex.outs:
            if oref.kind == ref.kind and oref.index <= ref.index + i < oref.index + nx.width(dt):
                hops = reader.pos - ex.pos if ref.kind == EAST else ex.pos - reader.pos
                if hops >= 0:
                    arrival = ex.wcycle + hops
                    if arrival > reader.rcycle and (best is None or arrival < best[0]):
                        best = (arrival, ex)
    if best is None:
        return ""
    return f"; {best[1].describe()} reaches it only in cycle {best[0]}"


def _check_banks(program: Program, execs: list[Exec]) -> list[Violation]:
    """A read and a write of one slice in one cycle must use different banks. (Two reads or two writes of a
    slice in one cycle would need two issues from its one queue in one cycle: a slot violation already.)"""
    chip = program.chip
    out: list[Violation] = []
    reads: dict[tuple[str, int], tuple[Exec, set[int]]] = {}
    writes: list[tuple[Exec, int, set[int]]] = []
    for ex in execs:
        if ex.op.unit != "MEM":
            continue
        # GATHER and SCATTER take per-lane addresses from a stream: they hold every bank of the slice
        banks = {ex.args["addr"] // chip.bank_size} if "addr" in ex.args else set(range(chip.mem_banks))
        if ex.op.name in ("READ", "GATHER"):
            reads[(ex.slice, ex.rcycle)] = (ex, banks)
        else:
            writes.append((ex, ex.wcycle, banks))
    for ex, cycle, banks in writes:
        other = reads.get((ex.slice, cycle))
        if other is not None and other[1] & banks:
            out.append(Violation("bank", f"bank conflict at {ex.slice} bank {min(other[1] & banks)} in cycle "
                                         f"{cycle}: {other[0].describe()} and {ex.describe()} both access it (a "
                                         f"read and a write in one cycle must use different banks)."))
    return out


def _check_units(program: Program, execs: list[Exec]) -> list[Violation]:
    chip = program.chip
    out: list[Violation] = []
    installs: dict[int, list[tuple[int, str]]] = {}  # plane -> [(install cycle, dtype)]
    deskews: dict[int, int] = {}
    arrivals: dict[int, list[int]] = {}
    receives: dict[int, list[Exec]] = {}
    filled: dict[tuple[int, int], int] = {}  # (plane, buffer) -> first cycle ABC commits it
    once: dict[tuple, Exec] = {}  # (what, which, cycle) -> the instruction that does it
    for ex in sorted(execs, key=lambda e: e.cycle):
        name, a = ex.op.name, ex.args
        if name in ("SEND", "CONFIG"):
            key = (name, a["link"] if name == "SEND" else a["key"], ex.wcycle)
            if key in once:
                what = f"link {a['link']}" if name == "SEND" else f"register {a['key']}"
                out.append(Violation("c2c" if name == "SEND" else "config",
                                     f"{ex.describe()} and {once[key].describe()} both use {what} in cycle "
                                     f"{ex.wcycle}: which one wins would depend on queue order."))
            once[key] = ex
        if name == "ABC":
            filled.setdefault((ex.unit, a["buf"].index), ex.wcycle)
        if name == "ACC" and a["src"].kind == "b":
            at = filled.get((ex.unit, a["src"].index))
            if at is None or at > ex.rcycle:
                out.append(Violation("mxm", f"{ex.describe()} reads activation buffer {a['src']} of plane "
                                            f"{ex.unit}, which no ABC has filled by cycle {ex.rcycle}."))
        if name == "IW":
            installs.setdefault(ex.unit, []).append((ex.wcycle, a["dtype"]))
        elif name == "ACC":
            done = [(c, d) for c, d in installs.get(ex.unit, []) if c <= ex.rcycle]
            if not done:
                out.append(Violation("mxm", f"{ex.describe()}: no weights are installed on plane {ex.unit} "
                                            f"by cycle {ex.rcycle}; issue IW (and LW) first."))
            elif done[-1][1] != a["dtype"]:
                out.append(Violation("mxm", f"{ex.describe()}: the installed weights are {done[-1][1]}, "
                                            f"not {a['dtype']}."))
        elif name == "DESKEW":
            deskews.setdefault(a["link"], ex.wcycle)
        elif name in ("SEND", "RECEIVE"):
            at = deskews.get(a["link"])
            if at is None or at > ex.cycle:
                out.append(Violation("c2c", f"{ex.describe()}: link {a['link']} is used before DESKEW "
                                            f"has aligned it."))
            if name == "SEND":
                arrivals.setdefault(a["link"], []).append(ex.wcycle + chip.c2c_loopback_cycles)
            else:
                receives.setdefault(a["link"], []).append(ex)
    for link, rs in receives.items():
        arr = sorted(arrivals.get(link, []))
        for k, ex in enumerate(sorted(rs, key=lambda e: e.rcycle)):
            if k >= len(arr) or arr[k] > ex.rcycle:
                when = f"the vector arrives in cycle {arr[k]}" if k < len(arr) else "nothing is sent"
                out.append(Violation("c2c", f"{ex.describe()}: RECEIVE on link {link} in cycle {ex.rcycle} "
                                            f"but {when}."))
    return out
