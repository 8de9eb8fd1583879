"""The scheduled network: every flit of every transfer gets its slot on every link at compile time.

ISCA22: the network is "scheduled, not routed". There is no back-pressure, no link retry and no routing
header: the compiler picks a source route for every vector and reserves the link slots it crosses. So
here a transfer (source chip, destination chip, bytes, earliest cycle) is split into 320-byte flits; each
flit is given a route and, on every link of it, the first free slot after it can be there. A link is
two channels (one per direction, links are full duplex), each with its own reservation table: a numpy
array of busy slots, grown as the schedule gets longer.

Routes: minimal paths first; non-minimal (Valiant) detours are candidates too unless the caller says no.
A tensor big enough is spread over the candidates: each route is first planned as if it carried every
flit, and the flits go to whichever routes would deliver them first (minimal on ties). So a detour is
only used when it delivers earlier than waiting for a minimal route. Smaller transfers take the least
loaded minimal route: below `NetworkTiming.spread_min_flits` no detour can pay. Where detours start to
pay is the model's own result (ISCA22 reports no benefit below 8 kB inside a node; `docs/system.md`
compares).

Two transfers can never share a slot. The scheduler only hands out free slots; a caller that forces
its own slots (`Scheduler.force`) onto taken ones gets a `ScheduleConflict` naming both transfers, the
link and the slot: a compile-time error, never a silent delay.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from openlpu.errors import UserError
from openlpu.system.paths import Path, minimal_paths, nonminimal_paths
from openlpu.system.timing import NetworkTiming
from openlpu.system.topology import Topology

MAX_PATHS = 8  # route candidates of each kind per transfer


@dataclass(frozen=True, eq=False)
class Transfer:
    src: int
    dst: int
    nbytes: int
    earliest: int = 0  # cycle the data is in the source's SRAM
    ready: np.ndarray | None = None  # or a cycle per flit (a pipelined producer), overriding `earliest`
    name: str = ""

    def describe(self, tid: int) -> str:
        return f"transfer {tid} ({self.name + ': ' if self.name else ''}chip {self.src} -> chip {self.dst})"


class ScheduleConflict(UserError):
    """Two transfers claim one slot of one link: the schedule is wrong, the network would not delay it."""


class NoRoute(UserError):
    """Failed links cut a chip off from another."""


class LinkTables:
    """A reservation table per channel: `rows[c][s]` is True once a flit holds slot s of channel c."""

    def __init__(self, channels: int) -> None:
        self.rows: list[np.ndarray | None] = [None] * channels
        self.end = np.zeros(channels, np.int64)  # one past the last slot taken on each channel

    def busy(self, channel: int, slots: np.ndarray) -> np.ndarray:
        row = self.rows[channel]
        if row is None:
            return np.zeros(len(slots), bool)
        inside = slots < len(row)
        out = np.zeros(len(slots), bool)
        out[inside] = row[slots[inside]]
        return out

    def plan(self, channel: int, ready: np.ndarray) -> np.ndarray:
        """Slots for flits ready at these slots (ascending), first come first served, nothing taken yet.

        Flit i gets the first free slot at or after both its ready slot and flit i-1's slot + 1. With F the
        free slots in order and p_i the index of the first free slot >= ready_i, flit i gets
        F[i + max_{k<=i}(p_k - k)]: a running maximum instead of a loop over flits.
        """
        n = len(ready)
        k = np.arange(n)
        lo = int(ready[0])
        if lo >= self.end[channel]:  # nothing taken from here on: flit i goes at max(ready_i, slot_{i-1} + 1)
            return k + np.maximum.accumulate(ready - k)
        row = self.rows[channel]
        window = int(ready[-1]) - lo + n + 1
        while True:
            if row is None or lo >= len(row):
                free = np.arange(lo, lo + window)
            else:
                seg = row[lo:lo + window]
                free = lo + np.flatnonzero(~seg)
                if lo + window > len(row):
                    free = np.concatenate([free, np.arange(len(row), lo + window)])
            first = np.searchsorted(free, ready)
            pick = k + np.maximum.accumulate(first - k)
            if pick[-1] < len(free):
                return free[pick]
            window *= 2

    def take(self, channel: int, slots: np.ndarray) -> None:
        row = self.rows[channel]
        end = int(slots.max()) + 1
        if row is None or end > len(row):
            grown = np.zeros(max(end, 2 * (0 if row is None else len(row)), 1024), bool)
            if row is not None:
                grown[:len(row)] = row
            self.rows[channel] = row = grown
        row[slots] = True
        self.end[channel] = max(self.end[channel], end)

    def slots_used(self) -> int:
        return int(sum(int(row.sum()) for row in self.rows if row is not None))


@dataclass(frozen=True, eq=False)
class Route:
    index: int  # in `Router.routes`
    path: Path
    channels: np.ndarray  # the channel of each hop


class Router:
    """Minimal and non-minimal routes, avoiding failed links, cached per chip pair and numbered.

    Link ids in the routes are the topology's, failed links or not."""

    def __init__(self, topo: Topology, failed_links: tuple[int, ...] = ()) -> None:
        self.topo = topo
        self.failed_links = tuple(sorted(set(failed_links)))
        for link in self.failed_links:
            if not 0 <= link < len(topo.ends):
                raise UserError(f"link {link} does not exist in {topo.name}: use a link id from 0 to "
                                f"{len(topo.ends) - 1}.")
        keep = np.ones(len(topo.ends), bool)
        keep[list(self.failed_links)] = False
        self.kept = np.flatnonzero(keep)
        self.view = topo if keep.all() else Topology(
            topo.spec, topo.family, f"{topo.name} without links {list(self.failed_links)}", topo.chips,
            topo.ends[keep], topo.is_global[keep], topo.hierarchy, topo.symmetry_step, topo.spare_chips)
        self.routes: list[Route] = []
        self._to: dict[int, np.ndarray] = {}
        self._minimal: dict[tuple[int, int], list[Route]] = {}
        self._nonminimal: dict[tuple[int, int], list[Route]] = {}

    def distances_to(self, dst: int) -> np.ndarray:
        if dst not in self._to:
            self._to[dst] = self.view.graph.distances(dst)
        return self._to[dst]

    def minimal(self, src: int, dst: int) -> list[Route]:
        key = (src, dst)
        if key not in self._minimal:
            found = minimal_paths(self.view, src, dst, MAX_PATHS, self.distances_to(dst))
            self._minimal[key] = [self._route(p) for p in found]
        return self._minimal[key]

    def nonminimal(self, src: int, dst: int) -> list[Route]:
        key = (src, dst)
        if key not in self._nonminimal:
            self._nonminimal[key] = [self._route(p) for p in nonminimal_paths(self.view, src, dst, MAX_PATHS)]
        return self._nonminimal[key]

    def route(self, path: Path) -> Route:
        """A route of the caller's choosing (link ids of the full topology)."""
        return self._route(path, translate=False)

    def _route(self, path: Path, translate: bool = True) -> Route:
        if translate:
            path = Path(path.chips, tuple(int(self.kept[i]) for i in path.links))
        route = Route(len(self.routes), path, path_channels(self.topo, path))
        self.routes.append(route)
        return route


@dataclass(frozen=True, eq=False)
class NetworkSchedule:
    """Every flit's route and slots. Flit f of transfer t is flit_base[t] + f, carrying its f-th vector.

    hop_* arrays hold one row per (flit, link crossed): the channel (2 x link + direction) and slot.
    `flit_arrival` is the cycle a flit has fully arrived at its destination's port; `completion` the
    cycle the last flit of a transfer is in the destination's SRAM."""

    topo: Topology
    timing: NetworkTiming
    transfers: list[Transfer]
    paths: list[Path]  # every route the router considered
    flit_base: np.ndarray
    flit_route: np.ndarray  # index into `paths`
    flit_ready: np.ndarray
    flit_arrival: np.ndarray
    hop_flit: np.ndarray
    hop_index: np.ndarray
    hop_channel: np.ndarray
    hop_slot: np.ndarray
    completion: np.ndarray
    failed_links: tuple[int, ...] = field(default=())

    @property
    def makespan(self) -> int:
        return int(self.completion.max()) if len(self.completion) else 0

    @property
    def flits(self) -> int:
        return int(self.flit_base[-1])

    @cached_property
    def flit_transfer(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.transfers)), np.diff(self.flit_base))

    @cached_property
    def channel_latency(self) -> np.ndarray:
        return channel_latency(self.topo, self.timing)

    @property
    def hop_link(self) -> np.ndarray:
        return self.hop_channel // 2

    @property
    def hop_from(self) -> np.ndarray:
        return channel_ends(self.topo, self.hop_channel)[0]

    @property
    def hop_to(self) -> np.ndarray:
        return channel_ends(self.topo, self.hop_channel)[1]

    @property
    def hop_depart(self) -> np.ndarray:
        return self.timing.slot_start(self.hop_slot)

    @property
    def hop_arrive(self) -> np.ndarray:
        return self.timing.slot_start(self.hop_slot + 1) + self.channel_latency[self.hop_channel]

    def arrivals(self, tid: int) -> np.ndarray:
        return self.flit_arrival[self.flit_base[tid]:self.flit_base[tid + 1]]

    def routes(self, tid: int) -> list[tuple[Path, int]]:
        """The routes of a transfer with the number of its flits on each."""
        used, count = np.unique(self.flit_route[self.flit_base[tid]:self.flit_base[tid + 1]], return_counts=True)
        return [(self.paths[p], int(c)) for p, c in zip(used.tolist(), count.tolist(), strict=True)]

    def link_flits(self) -> np.ndarray:
        """Flits carried by each link (both directions)."""
        return np.bincount(self.hop_link, minlength=len(self.topo.ends))


def channel_ends(topo: Topology, channel) -> tuple[np.ndarray, np.ndarray]:
    """(from chip, to chip) of channels: channel 2l runs ends[l, 0] -> ends[l, 1], 2l + 1 back."""
    channel = np.asarray(channel)
    ends = topo.ends[channel // 2]
    back = (channel % 2).astype(bool)
    return np.where(back, ends[..., 1], ends[..., 0]), np.where(back, ends[..., 0], ends[..., 1])


def channel_latency(topo: Topology, timing: NetworkTiming) -> np.ndarray:
    per_link = np.where(topo.is_global, timing.latency_cycles("global"), timing.latency_cycles("local"))
    return np.repeat(per_link, 2)


def path_channels(topo: Topology, path: Path) -> np.ndarray:
    links = np.asarray(path.links, dtype=np.int64)
    return 2 * links + (np.asarray(path.chips[:-1]) != topo.ends[links, 0])


class Scheduler:
    """Schedules transfers one at a time, in the order given, each on the slots still free.

    Routes: a transfer of at least `spread_bytes` is spread over its minimal routes (and non-minimal ones
    if `nonminimal`); a smaller one takes the single least-loaded minimal route (the one whose busiest
    link's reservations end first). The default threshold is where a one-hop detour starts to pay on an
    idle network (`NetworkTiming.spread_min_flits`); below it spreading cannot help, and planning every
    route would only cost compile time. `spread_bytes=0` always spreads."""

    def __init__(self, topo: Topology, timing: NetworkTiming | None = None, failed_links: tuple[int, ...] = (),
                 nonminimal: bool = True, spread_bytes: int | None = None) -> None:
        self.topo = topo
        self.timing = timing or NetworkTiming(topo.spec)
        self.router = Router(topo, failed_links)
        self.nonminimal = nonminimal
        self.spread_bytes = (self.timing.spread_min_flits * topo.spec.flit_payload_bytes
                             if spread_bytes is None else spread_bytes)
        self.tables = LinkTables(2 * len(topo.ends))
        self.latency = channel_latency(topo, self.timing)
        t = self.timing
        self._inject, self._forward, self._eject = t.inject_cycles, t.forward_cycles, t.eject_cycles
        self.transfers: list[Transfer] = []
        self._base = [0]
        self._flit_route: list[np.ndarray] = []
        self._ready: list[np.ndarray] = []
        self._arrival: list[np.ndarray] = []
        self._completion: list[int] = []
        self._hops: list[tuple[np.ndarray, int, int, np.ndarray]] = []  # (flit ids, hop index, channel, slots)
        self._owners: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)

    # ---- adding transfers ----
    def add(self, transfer: Transfer) -> int:
        """Route and reserve a transfer on the first free slots; returns its id."""
        ready = self._check(transfer)
        tid = len(self.transfers)
        order = np.argsort(ready, kind="stable")
        sorted_ready = ready[order]
        routes = self._candidates(transfer)
        if len(routes) == 1 or len(ready) == 0:
            choice = np.zeros(len(ready), np.int64)
        else:
            plans = [self._train(r.channels, sorted_ready)[0] for r in routes]
            values = np.concatenate(plans)
            labels = np.repeat(np.arange(len(routes)), len(ready))
            choice = labels[np.lexsort((labels, values))[:len(ready)]]
        flit_route = np.empty(len(ready), np.int32)
        arrival = np.empty(len(ready), np.int64)
        for i, route in enumerate(routes):
            mine = choice == i
            if not mine.any():
                continue
            vectors = order[mine]
            arrive, slots = self._train(route.channels, sorted_ready[mine])
            self._commit(tid, route, vectors, slots)
            flit_route[vectors] = route.index
            arrival[vectors] = arrive
        self._record(transfer, ready, flit_route, arrival)
        return tid

    def force(self, transfer: Transfer, path: Path, slots: np.ndarray) -> int:
        """Reserve slots chosen by the caller: slots[h, f] is flit f's slot on hop h of `path`.

        Raises ScheduleConflict if a slot is taken (naming both transfers) and UserError if a flit would
        leave a chip before it is there."""
        ready = self._check(transfer)
        tid = len(self.transfers)
        slots = np.asarray(slots, dtype=np.int64).reshape(path.hops, len(ready))
        if path.chips[0] != transfer.src or path.chips[-1] != transfer.dst:
            raise UserError(f"the route {list(path.chips)} does not join chip {transfer.src} to chip {transfer.dst}.")
        dead = set(path.links) & set(self.router.failed_links)
        if dead:
            raise UserError(f"the route {list(path.chips)} crosses failed link(s) {sorted(dead)}: pick another route.")
        route = self.router.route(path)
        t = ready + self._inject
        for hop, channel in enumerate(route.channels.tolist()):
            depart = self.timing.slot_start(slots[hop])
            early = np.flatnonzero(depart < t)
            if early.size:
                f = int(early[0])
                raise UserError(f"{transfer.describe(tid)}: flit {f} would leave chip {path.chips[hop]} in slot "
                                f"{slots[hop, f]} (cycle {depart[f]}) before it is there (cycle {t[f]}).")
            self._conflicts(tid, transfer, channel, slots[hop])
            t = self.timing.slot_start(slots[hop] + 1) + self.latency[channel] + self._forward
        self._commit(tid, route, np.arange(len(ready)), list(slots))
        self._record(transfer, ready, np.full(len(ready), route.index, np.int32), t - self._forward)
        return tid

    # ---- reading back ----
    def arrivals(self, tid: int) -> np.ndarray:
        """Cycle each flit of transfer `tid` has fully arrived at the destination's port, in vector order."""
        return self._arrival[tid]

    def completion(self, tid: int) -> int:
        return self._completion[tid]

    def result(self) -> NetworkSchedule:
        def cat(chunks, dtype):
            return np.concatenate(chunks).astype(dtype, copy=False) if chunks else np.zeros(0, dtype)

        counts = [len(h[0]) for h in self._hops]
        return NetworkSchedule(
            self.topo, self.timing, list(self.transfers), [r.path for r in self.router.routes],
            np.asarray(self._base, np.int64), cat(self._flit_route, np.int32), cat(self._ready, np.int64),
            cat(self._arrival, np.int64), cat([h[0] for h in self._hops], np.int32),
            np.repeat(np.array([h[1] for h in self._hops], np.int8), counts),
            np.repeat(np.array([h[2] for h in self._hops], np.int32), counts),
            cat([h[3] for h in self._hops], np.int32), np.asarray(self._completion, np.int64),
            self.router.failed_links)

    # ---- internals ----
    def _check(self, transfer: Transfer) -> np.ndarray:
        self.topo.check_chip(transfer.src)
        self.topo.check_chip(transfer.dst)
        if transfer.src == transfer.dst:
            raise UserError(f"a transfer from chip {transfer.src} to itself crosses no link: drop it or pick "
                            "another destination.")
        if transfer.nbytes < 0:
            raise UserError(f"a transfer of {transfer.nbytes} bytes is impossible: give 0 bytes or more.")
        flits = -(-transfer.nbytes // self.topo.spec.flit_payload_bytes)
        if transfer.ready is None:
            return np.full(flits, transfer.earliest, np.int64)
        ready = np.asarray(transfer.ready, dtype=np.int64)
        if ready.shape != (flits,):
            raise UserError(f"a transfer of {transfer.nbytes} bytes has {flits} flits, but {ready.size} ready "
                            "cycles were given: give one per flit.")
        return ready

    def _candidates(self, transfer: Transfer) -> list[Route]:
        routes = self.router.minimal(transfer.src, transfer.dst)
        spread = transfer.nbytes >= self.spread_bytes
        if (self.nonminimal and spread) or not routes:
            routes = routes + self.router.nonminimal(transfer.src, transfer.dst)
        if not routes:
            raise NoRoute(f"no route from chip {transfer.src} to chip {transfer.dst} in {self.router.view.name}: "
                            "repair a link or move the work to a spare node.")
        if spread or len(routes) == 1:
            return routes
        ends = self.tables.end
        return [min(routes, key=lambda r: int(ends[r.channels].max()))]

    def _train(self, channels: np.ndarray, ready: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Plan flits (ready cycles ascending) down a route: (arrival at its end, slots per hop)."""
        timing, latency = self.timing, self.latency
        t = ready + self._inject
        slots = []
        for channel in channels.tolist():
            if slots:
                t = t + self._forward
            s = self.tables.plan(channel, timing.first_slot(t))
            slots.append(s)
            t = timing.slot_start(s + 1) + latency[channel]
        return t, slots

    def _commit(self, tid: int, route: Route, vectors: np.ndarray, slots: list[np.ndarray]) -> None:
        flit_ids = (self._base[-1] + vectors).astype(np.int32)  # int32 keeps millions of flit-hops lean
        for hop, (channel, s) in enumerate(zip(route.channels.tolist(), slots, strict=True)):
            self.tables.take(channel, s)
            s = s.astype(np.int32)
            self._hops.append((flit_ids, hop, channel, s))
            self._owners[channel].append((tid, s))

    def _record(self, transfer: Transfer, ready: np.ndarray, flit_route: np.ndarray, arrival: np.ndarray) -> None:
        self.transfers.append(transfer)
        self._base.append(self._base[-1] + len(ready))
        self._flit_route.append(flit_route)
        self._ready.append(ready)
        self._arrival.append(arrival)
        done = int(arrival.max()) + self._eject if len(arrival) else transfer.earliest
        self._completion.append(done)

    def _conflicts(self, tid: int, transfer: Transfer, channel: int, slots: np.ndarray) -> None:
        taken = self.tables.busy(channel, slots)
        _, first = np.unique(slots, return_index=True)
        twice = np.setdiff1d(np.arange(len(slots)), first)
        if not taken.any() and not twice.size:
            return
        a, b = (int(x) for x in channel_ends(self.topo, channel))
        where = f"link {channel // 2} (chip {a} -> chip {b})"
        if taken.any():
            slot = int(slots[np.flatnonzero(taken)[0]])
            owner = next(t for t, s in self._owners[channel] if np.any(s == slot))
            other = self.transfers[owner].describe(owner)
        else:
            slot = int(slots[twice[0]])
            other = "itself (two of its flits)"
        start = int(self.timing.slot_start(slot))
        raise ScheduleConflict(
            f"{transfer.describe(tid)} and {other} both claim {where} in slot {slot} (cycles {start}-"
            f"{int(self.timing.slot_start(slot + 1)) - 1}): the network has no back-pressure, so move one of them "
            "to a free slot (Scheduler.add finds one).")


def schedule(topo: Topology, transfers: list[Transfer], timing: NetworkTiming | None = None,
             failed_links: tuple[int, ...] = (), nonminimal: bool = True,
             spread_bytes: int | None = None) -> NetworkSchedule:
    """Schedule transfers in order on an empty network."""
    scheduler = Scheduler(topo, timing, failed_links, nonminimal, spread_bytes)
    for transfer in transfers:
        scheduler.add(transfer)
    return scheduler.result()
