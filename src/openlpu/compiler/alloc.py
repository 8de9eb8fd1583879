"""SRAM allocation across the MEM slices, bank-aware.

A slice's addresses split into banks (bank b = [b * bank_size, (b + 1) * bank_size)); a slice reads once
and writes once per cycle, in different banks when both. The allocator hands out address ranges per
(slice, bank) by bumping a pointer; a multi-byte tensor gets the same range in each of its byte-plane
slices, so one READ per slice fetches one byte plane of the same vector in the same cycle.
"""

from __future__ import annotations

from openlpu.chip.spec import ChipSpec
from openlpu.errors import UserError


class SramAllocator:
    """Bump allocation per (slice, bank), plus holes left by dead tensors.

    A hole is reused only by a tensor whose producer cannot write before the hole's last reader is done:
    the producer reads its inputs first, so a hole freed by cycle T serves a tensor whose inputs are all
    ready by T (`not_before`)."""

    def __init__(self, chip: ChipSpec):
        self.chip = chip
        self.next: dict[tuple[str, int], int] = {}  # (slice, bank) -> next free address
        self.rr = 0  # round-robin cursor for activations
        self.holes: list[list] = []  # [slices, bank, addr, count, free from cycle]

    def free(self, slices: tuple[str, ...], bank: int, addr: int, count: int, free_from: int) -> None:
        self.holes.append([slices, bank, addr, count, free_from])

    def _reuse(self, candidates: list[tuple[str, ...]], count: int, not_before: int):
        allowed = set(candidates)
        for hole in self.holes:
            slices, bank, addr, size, free_from = hole
            if slices in allowed and size >= count and free_from <= not_before:
                hole[2], hole[3] = addr + count, size - count
                if not hole[3]:
                    self.holes.remove(hole)
                return slices, bank, addr
        return None

    def used_bytes(self) -> int:
        per_bank = self.chip.bank_size
        return sum(addr - bank * per_bank for (_, bank), addr in self.next.items()) * self.chip.vector_bytes

    def free_in(self, slice_: str, bank: int) -> int:
        return (bank + 1) * self.chip.bank_size - self.next.get((slice_, bank), bank * self.chip.bank_size)

    def alloc(self, slices: tuple[str, ...], count: int, bank: int, what: str) -> int:
        """`count` addresses at one address in every slice of `slices`, in `bank`."""
        base = bank * self.chip.bank_size
        addr = max(self.next.get((s, bank), base) for s in slices)
        if addr + count > (bank + 1) * self.chip.bank_size:
            raise UserError(
                f"{what} needs {count * len(slices) * self.chip.vector_bytes:,} bytes in slices "
                f"{', '.join(slices)} but bank {bank} has {self.free_in(slices[0], bank) * self.chip.vector_bytes:,} "
                f"bytes left there ({self.chip.sram_bytes:,} bytes of SRAM in all, {self.used_bytes():,} used): "
                f"the graph does not fit on one {self.chip.name}."
            )
        for s in slices:
            self.next[(s, bank)] = addr + count
        return addr

    def alloc_roomiest(self, slices: list[str], width: int, count: int,
                       what: str) -> tuple[tuple[str, ...], int, tuple[int, ...]]:
        """`count` addresses in each of the `width` slices (of `slices`) with the most room in one bank, each
        slice at its own address: for data that every slice reads with its own READ (weight tiles), so no
        slice is bumped to the fullest one's address and nothing is wasted below it."""
        best = None
        for bank in range(self.chip.mem_banks):
            ranked = sorted(slices, key=lambda s: -self.free_in(s, bank))[:width]
            if len(ranked) == width and (best is None or self.free_in(ranked[-1], bank) > best[0]):
                best = (self.free_in(ranked[-1], bank), tuple(ranked), bank)
        if best is None or best[0] < count:
            raise UserError(
                f"{what} needs {count * width * self.chip.vector_bytes:,} bytes: no {width} slices have room "
                f"({self.used_bytes():,} of {self.chip.sram_bytes:,} bytes used); the graph does not fit on one "
                f"{self.chip.name}: use a smaller graph or more chips.")
        _, group, bank = best
        addrs = tuple(self.next.get((s, bank), bank * self.chip.bank_size) for s in group)
        for s, addr in zip(group, addrs, strict=True):
            self.next[(s, bank)] = addr + count
        return group, bank, addrs

    def alloc_anywhere(self, candidates: list[tuple[str, ...]], count: int, what: str,
                       not_before: int | None = None) -> tuple[tuple[str, ...], int, int]:
        """Place `count` addresses in a hole free by `not_before` (when given), else in the first slice group
        (round-robin from the last choice) and bank with room: returns (slices, bank, address)."""
        if not_before is not None and (hole := self._reuse(candidates, count, not_before)):
            return hole
        n = len(candidates)
        for i in range(n):
            group = candidates[(self.rr + i) % n]
            for bank in range(self.chip.mem_banks):
                if all(self.free_in(s, bank) >= count for s in group):
                    self.rr = (self.rr + i + 1) % n
                    return group, bank, self.alloc(group, count, bank, what)
        need = count * len(candidates[0]) * self.chip.vector_bytes
        if count > self.chip.bank_size:
            why = (f"{count:,} vectors in each of {len(candidates[0])} slice(s), more than one bank's "
                   f"{self.chip.bank_size:,}")
        else:
            why = f"no slice group has room ({self.used_bytes():,} of {self.chip.sram_bytes:,} bytes used)"
        raise UserError(
            f"{what} needs {need:,} bytes: {why}; the graph does not fit on one {self.chip.name}: use a smaller "
            f"graph or more chips."
        )
