"""The network executor: moves the real bytes of scheduled transfers chip to chip, and holds the schedule
to account while doing so.

Each flit's 320 bytes sit in exactly one chip's SRAM at a time. Hop by hop (in hop order, every flit at
once), a flit leaves the chip that holds it in its scheduled slot and lands in the next chip's buffer
when the link delivers it; a failed link delivers nothing. The executor re-derives from the raw slots
alone what the schedule promises, and refuses a schedule that breaks the rules the hardware relies on:
- a route that does not join its transfer's chips link to link;
- a link slot used twice (no back-pressure: the second flit would be lost);
- a flit sent from a chip before it is there (before its source has it, or before it has arrived and
  been forwarded through SRAM);
- an arrival that differs from the cycle the schedule gave the receiving program.
A flit that does not arrive is not an error of the schedule but of the hardware: the chip expecting it
notices, at the cycle it was due, that its link delivered nothing. Those detections name the link.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from openlpu.errors import UserError
from openlpu.system.schedule import NetworkSchedule, channel_ends


class ScheduleViolation(UserError):
    """The schedule breaks a rule of the hardware; running it would corrupt data."""


@dataclass(frozen=True)
class MissingArrival:
    link: int
    chip: int  # the chip that expected the flit and noticed it missing
    cycle: int  # when the flit was due there
    transfer: int
    flit: int  # index within its transfer


@dataclass(eq=False)
class NetworkRun:
    schedule: NetworkSchedule
    received: dict[int, np.ndarray]  # transfer id -> the bytes assembled at its destination (missing flits zero)
    missing: dict[int, np.ndarray]  # transfer id -> indices of flits that never arrived
    detections: list[MissingArrival] = field(default_factory=list)  # first loss on each link, earliest first
    hops: int = 0  # flit hops moved

    @property
    def ok(self) -> bool:
        return not self.detections

    def by_chip(self, chip: int) -> dict[int, np.ndarray]:
        """What chip `chip` received: transfer id -> bytes."""
        return {t: data for t, data in self.received.items() if self.schedule.transfers[t].dst == chip}


def execute(schedule: NetworkSchedule, payloads: dict[int, np.ndarray], failed_links: Iterable[int] = (),
            transfers: Iterable[int] | None = None) -> NetworkRun:
    """Run `transfers` (default: all) of a schedule with these payloads (transfer id -> array of nbytes)."""
    tids = np.arange(len(schedule.transfers)) if transfers is None else np.asarray(list(transfers), np.int64)
    base = schedule.flit_base
    counts = base[tids + 1] - base[tids]
    flits = np.repeat(base[tids], counts) + ranges(counts)  # global flit ids, grouped by transfer
    row = np.full(schedule.flits, -1, np.int64)  # global flit id -> its row in the arrays below
    row[flits] = np.arange(len(flits))
    data = _load(schedule, tids, payloads)
    src = np.array([schedule.transfers[t].src for t in tids.tolist()], np.int64).repeat(counts)
    dst = np.array([schedule.transfers[t].dst for t in tids.tolist()], np.int64).repeat(counts)
    hops = np.flatnonzero(row[schedule.hop_flit] >= 0)
    _check_exclusive(schedule, hops)
    holder, since, lost = _fly(schedule, hops, row, flits, src, set(failed_links))
    alive = holder >= 0
    stray = alive & (holder != dst)
    if stray.any():
        i = int(np.flatnonzero(stray)[0])
        raise ScheduleViolation(f"{_flit(schedule, flits[i])} ends at chip {holder[i]}, not at its destination "
                                f"chip {dst[i]}.")
    late = alive & (since != schedule.flit_arrival[flits])
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise ScheduleViolation(f"{_flit(schedule, flits[i])} arrives at cycle {since[i]}, but the schedule told "
                                f"the receiving program cycle {schedule.flit_arrival[flits[i]]}.")
    received, missing = {}, {}
    ends = np.cumsum(counts)
    for t, lo, hi in zip(tids.tolist(), (ends - counts).tolist(), ends.tolist(), strict=True):
        got = data[lo:hi].copy()
        got[~alive[lo:hi]] = 0  # nothing arrived in those slots
        received[t] = got.reshape(-1)[:schedule.transfers[t].nbytes]
        missing[t] = np.flatnonzero(~alive[lo:hi])
    return NetworkRun(schedule, received, missing, _detections(schedule, lost), len(hops))


def _load(schedule: NetworkSchedule, tids: np.ndarray, payloads: dict[int, np.ndarray]) -> np.ndarray:
    """The flits' bytes at their sources: one row of 320 bytes per flit, the last one zero-padded."""
    flit_bytes = schedule.topo.spec.flit_payload_bytes
    chunks = []
    for t in tids.tolist():
        raw = _as_bytes(schedule, t, payloads)
        chunks.append(np.pad(raw, (0, -len(raw) % flit_bytes)).reshape(-1, flit_bytes))
    return np.concatenate(chunks) if chunks else np.zeros((0, flit_bytes), np.uint8)


def _fly(schedule: NetworkSchedule, hops: np.ndarray, row: np.ndarray, flits: np.ndarray, src: np.ndarray,
         failed: set[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move every flit hop by hop: (chip holding it at the end or -1 if lost, cycle it got there, lost hops)."""
    timing = schedule.timing
    holder = src.copy()
    since = schedule.flit_ready[flits] + timing.inject_cycles - timing.forward_cycles  # + forward: may leave
    dead = np.zeros(len(schedule.topo.ends), bool)
    dead[list(failed)] = True
    order = hops[np.lexsort((schedule.hop_index[hops], schedule.hop_flit[hops]))]
    steps = schedule.hop_index[order]
    lost = []
    for hop in range(int(steps.max()) + 1 if len(steps) else 0):
        h = order[steps == hop]
        r = row[schedule.hop_flit[h]]
        channel = schedule.hop_channel[h]
        a, b = channel_ends(schedule.topo, channel)
        depart = timing.slot_start(schedule.hop_slot[h])
        here = holder[r] >= 0
        wrong = here & (holder[r] != a)
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise ScheduleViolation(f"{_flit(schedule, flits[r[i]])} is sent from chip {a[i]} on hop {hop}, but it "
                                    f"is at chip {holder[r[i]]}: its route is broken.")
        early = here & (depart < since[r] + timing.forward_cycles)
        if early.any():
            i = int(np.flatnonzero(early)[0])
            raise ScheduleViolation(
                f"{_flit(schedule, flits[r[i]])} leaves chip {a[i]} at cycle {depart[i]} but can only leave at "
                f"cycle {since[r[i]] + timing.forward_cycles} (in SRAM and forwarded).")
        down = here & dead[channel // 2]
        lost.append(h[down])
        holder[r] = np.where(here, np.where(down, -1, b), holder[r])
        since[r] = np.where(here, timing.slot_start(schedule.hop_slot[h] + 1) + schedule.channel_latency[channel],
                            since[r])
    return holder, since, np.concatenate(lost) if lost else np.zeros(0, np.int64)


def _as_bytes(schedule: NetworkSchedule, tid: int, payloads: dict[int, np.ndarray]) -> np.ndarray:
    """A transfer's payload as bytes, checked against the size scheduled."""
    transfer = schedule.transfers[tid]
    if tid not in payloads:
        raise UserError(f"no payload for {transfer.describe(tid)}: give one array of {transfer.nbytes} bytes.")
    raw = np.ascontiguousarray(payloads[tid]).reshape(-1).view(np.uint8)
    if len(raw) != transfer.nbytes:
        raise UserError(f"the payload of {transfer.describe(tid)} has {len(raw)} bytes, but {transfer.nbytes} were "
                        "scheduled: give exactly that many.")
    return raw


def ranges(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count, concatenated."""
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def _check_exclusive(schedule: NetworkSchedule, hops: np.ndarray) -> None:
    """No two flits in one slot of one channel (over the selected hops)."""
    if not len(hops):
        return
    slots = schedule.hop_slot[hops].astype(np.int64)
    key = schedule.hop_channel[hops].astype(np.int64) * (int(slots.max()) + 1) + slots
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    if same.size:
        i, j = hops[order[same[0]]], hops[order[same[0] + 1]]
        a, b = (int(x) for x in channel_ends(schedule.topo, schedule.hop_channel[i]))
        raise ScheduleViolation(
            f"{_flit(schedule, schedule.hop_flit[i])} and {_flit(schedule, schedule.hop_flit[j])} both use slot "
            f"{schedule.hop_slot[i]} of link {schedule.hop_channel[i] // 2} (chip {a} -> chip {b}).")


def check_exclusive(schedule: NetworkSchedule) -> None:
    """Every (link direction, slot) of the whole schedule carries at most one flit."""
    _check_exclusive(schedule, np.arange(len(schedule.hop_flit)))


def _flit(schedule: NetworkSchedule, flit: int) -> str:
    t = int(np.searchsorted(schedule.flit_base, flit, side="right") - 1)
    return f"flit {flit - schedule.flit_base[t]} of {schedule.transfers[t].describe(t)}"


def _detections(schedule: NetworkSchedule, lost: np.ndarray) -> list[MissingArrival]:
    if not len(lost):
        return []
    links = schedule.hop_channel[lost] // 2
    due = schedule.timing.slot_start(schedule.hop_slot[lost] + 1) + schedule.channel_latency[schedule.hop_channel[lost]]
    found = []
    for link in np.unique(links).tolist():
        mine = np.flatnonzero(links == link)
        i = lost[mine[np.argmin(due[mine])]]
        flit = int(schedule.hop_flit[i])
        t = int(np.searchsorted(schedule.flit_base, flit, side="right") - 1)
        chip = int(channel_ends(schedule.topo, schedule.hop_channel[i])[1])
        found.append(MissingArrival(link, chip, int(due[mine].min()), t, flit - int(schedule.flit_base[t])))
    return sorted(found, key=lambda m: (m.cycle, m.link))
