"""SRAM allocation across the MEM slices, bank-aware.

A slice's addresses split into banks (bank b = [b * bank_size, (b + 1) * bank_size)); a slice reads once
and writes once per cycle, in different banks when both. A multi-byte tensor gets the same range in each of
its byte-plane slices, so one READ per slice fetches one byte plane of the same vector in the same cycle.

Each (slice, bank) keeps its free ranges, each with the cycle from which it is free: FRESH for addresses no
instruction has written (what constants and inputs, loaded with the program, need), else the cycle at which
the last reader of the dead tensor that held it is done. Weights, resident for the whole program, take fresh
addresses from the top of a bank down; everything else takes the best-fitting run of free ranges from the
bottom up, so dead activations' space is reused and does not cut the weights' room into pieces.
"""

from __future__ import annotations

import operator as op
from bisect import insort

from openlpu.chip.spec import ChipSpec
from openlpu.errors import UserError

FRESH = -1  # free-from cycle of addresses never written since the program was loaded


class SramFull(UserError):
    """The graph's tensors do not fit the chip's SRAM as allocated: a smaller graph might."""


class SramAllocator:
    """Free ranges per (slice, bank), reused by tensors whose writes cannot clobber a value still to be read.

    A range freed at cycle T is reused only by a tensor whose producer's inputs are all ready by T
    (`not_before` >= T): the producer reads its inputs first, so it cannot write before T. Without
    `not_before` (constants, inputs) only fresh addresses will do."""

    def __init__(self, chip: ChipSpec):
        self.chip = chip
        self.spans: dict[tuple[str, int], list[list[int]]] = {}  # (slice, bank) -> sorted [start, end, free from]

    def _free_list(self, slice_: str, bank: int) -> list[list[int]]:
        key = (slice_, bank)
        if key not in self.spans:
            base = bank * self.chip.bank_size
            self.spans[key] = [[base, base + self.chip.bank_size, FRESH]]
        return self.spans[key]

    def free(self, slices: tuple[str, ...], bank: int, addr: int, count: int, free_from: int) -> None:
        for s in slices:
            spans = self._free_list(s, bank)
            insort(spans, [addr, addr + count, free_from])
            i = next(k for k, sp in enumerate(spans) if sp[0] == addr)
            if i + 1 < len(spans) and spans[i + 1][0] == addr + count and spans[i + 1][2] == free_from:
                spans[i][1] = spans.pop(i + 1)[1]
            if i and spans[i - 1][1] == addr and spans[i - 1][2] == free_from:
                spans[i - 1][1] = spans.pop(i)[1]

    def take(self, slices: tuple[str, ...], bank: int, addr: int, count: int) -> None:
        """Hold [addr, addr + count) in each slice for good (a pinned state's region), before anything is placed."""
        for s in slices:
            self._take(s, bank, addr, count)

    def _take(self, slice_: str, bank: int, addr: int, count: int) -> None:
        """Remove [addr, addr + count) from the slice's free ranges (it lies within free ranges)."""
        end = addr + count
        out = []
        for sp in self._free_list(slice_, bank):
            if sp[1] <= addr or sp[0] >= end:
                out.append(sp)
                continue
            if sp[0] < addr:
                out.append([sp[0], addr, sp[2]])
            if sp[1] > end:
                out.append([end, sp[1], sp[2]])
        self.spans[(slice_, bank)] = out

    def _runs(self, slice_: str, bank: int, not_before: int) -> list[tuple[int, int]]:
        """Maximal address runs of ranges free by `not_before`."""
        runs: list[list[int]] = []
        for start, end, free_from in self._free_list(slice_, bank):
            if free_from > not_before:
                continue
            if runs and runs[-1][1] == start:
                runs[-1][1] = end
            else:
                runs.append([start, end])
        return [(a, b) for a, b in runs]

    def _top(self, slice_: str, bank: int) -> tuple[int, int]:
        """The fresh range at the top of the free ranges, below the weights (empty when there is none)."""
        last = self._free_list(slice_, bank)[-1]
        return (last[0], last[1]) if last[2] == FRESH else (last[1], last[1])

    def used_bytes(self) -> int:
        """Bytes held now."""
        free = sum(end - start for spans in self.spans.values() for start, end, _ in spans)
        return (len(self.spans) * self.chip.bank_size - free) * self.chip.vector_bytes

    def footprint_bytes(self) -> int:
        """Bytes the program ever uses: every address but the fresh ones."""
        fresh = sum(end - start for spans in self.spans.values() for start, end, t in spans if t == FRESH)
        return (len(self.spans) * self.chip.bank_size - fresh) * self.chip.vector_bytes

    def alloc_roomiest(self, slices: list[str], width: int, count: int, what: str,
                       prefer: frozenset[str] = frozenset()) -> tuple[tuple[str, ...], int, tuple[int, ...]]:
        """`count` fresh addresses at the top of each of the `width` slices (of `slices`) with the most room
        there in one bank, each slice at its own address: for data that every slice reads with its own READ
        (weight tiles), so no slice is bumped to the fullest one's address and nothing is wasted below it.
        Slices of `prefer` with room come first (weights away from the activations' streams), then others."""
        best = None
        for bank in range(self.chip.mem_banks):
            rank = {}
            for s in slices:
                room = -op.sub(*self._top(s, bank))
                rank[s] = (room >= count, s in prefer, room)
            ranked = sorted(slices, key=rank.get, reverse=True)[:width]
            if len(ranked) == width and (best is None or rank[ranked[-1]] > best[0]):
                best = (rank[ranked[-1]], tuple(ranked), bank)
        if best is None or not best[0][0]:
            raise SramFull(
                f"{what} needs {count * width * self.chip.vector_bytes:,} bytes: no {width} slices have room "
                f"({self.used_bytes():,} of {self.chip.sram_bytes:,} bytes used); the graph does not fit on one "
                f"{self.chip.name}: use a smaller graph or more chips.")
        _, group, bank = best
        addrs = []
        for s in group:
            last = self._free_list(s, bank)[-1]
            last[1] -= count
            addrs.append(last[1])
        return group, bank, tuple(addrs)

    def alloc_anywhere(self, candidates: list[tuple[str, ...]], count: int, what: str,
                       not_before: int | None = None) -> tuple[tuple[str, ...], int, int]:
        """`find`, or one sentence on why nothing fits."""
        spot = self.find(candidates, count, not_before)
        if spot is None:
            self.no_room(candidates, count, what)
        return spot

    def find(self, candidates: list[tuple[str, ...]], count: int,
             not_before: int | None = None) -> tuple[tuple[str, ...], int, int] | None:
        """Take `count` addresses at one address in every slice of one of the `candidates` slice groups, in
        ranges free by `not_before` (fresh ones only when it is None): the tightest run of reused ranges that
        fits, else the bottom of the fresh room of the group that has the most. Returns (slices, bank, addr)."""
        when = FRESH if not_before is None else not_before
        best = None  # (key, slices, bank, addr)
        free: dict[tuple[str, int], list[tuple[int, int]]] = {}  # a slice's runs, shared by the groups it is in

        def runs_of(s: str, bank: int) -> list[tuple[int, int]]:
            if (s, bank) not in free:
                free[s, bank] = self._runs(s, bank, when)
            return free[s, bank]

        for group in candidates:
            for bank in range(self.chip.mem_banks):
                runs = runs_of(group[0], bank)
                for s in group[1:]:
                    runs = _intersect(runs, runs_of(s, bank))
                top = min(self._top(s, bank)[0] for s in group)
                for start, end in runs:
                    if end - start < count:
                        continue
                    # runs below the top room first, the tightest of them; then the fewest fresh addresses
                    # taken (each is lost to the weights for good), with the most top room left
                    key = (0, end - start) if end <= top else (1, max(0, start + count - top), start - end)
                    if best is None or key < best[0]:
                        best = (key, group, bank, start)
        if best is None:
            return None
        _, group, bank, addr = best
        self.take(group, bank, addr, count)
        return group, bank, addr

    def no_room(self, candidates: list[tuple[str, ...]], count: int, what: str) -> None:
        need = count * len(candidates[0]) * self.chip.vector_bytes
        if count > self.chip.bank_size:
            why = (f"{count:,} vectors in each of {len(candidates[0])} slice(s), more than one bank's "
                   f"{self.chip.bank_size:,}")
        else:
            why = f"no slice group has room ({self.used_bytes():,} of {self.chip.sram_bytes:,} bytes used)"
        raise SramFull(f"{what} needs {need:,} bytes: {why}; the graph does not fit on one {self.chip.name}: "
                        f"use a smaller graph or more chips.")


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
