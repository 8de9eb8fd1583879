"""Reservation tables in time x space: queues, stream registers and SRAM ports.

The scheduler asks whether a template fits at a start cycle and, if so, claims what it uses. Nothing is
arbitrated at run time, so everything a program touches is reserved here at compile time.

Streams. A *pipe* carries values on one stream from a producer at position p, written in cycles
w0..w1, to consumers up to position q. In line coordinates (eastward k = x - c, westward k = x + c) it
holds lines [k0, k1] between positions p and q. A write also leaves a wake: its values flow on to the chip
edge until overwritten. So two pipes on one stream conflict when their lines overlap and one's producer
sits strictly inside the other's span (it would overwrite the other's values before they are read), or
both write at the same position (two writers in one cycle).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from openlpu.chip.operands import EAST


@dataclass(frozen=True)
class Pipe:
    direction: str  # "e" | "w"
    stream: int
    k0: int
    k1: int
    p: int  # producer position
    q: int  # farthest consumer position

    @staticmethod
    def make(direction: str, stream: int, p: int, q: int, w0: int, w1: int) -> Pipe:
        if direction == EAST:
            return Pipe(direction, stream, p - w1, p - w0, p, q)
        return Pipe(direction, stream, p + w0, p + w1, p, q)

    def _inside(self, pos: int) -> bool:
        """Is `pos` strictly downstream of this pipe's producer and not past its last consumer?"""
        return self.p < pos <= self.q if self.direction == EAST else self.q <= pos < self.p

    def conflicts(self, other: Pipe) -> bool:
        if self.k1 < other.k0 or other.k1 < self.k0:
            return False
        return self.p == other.p or self._inside(other.p) or other._inside(self.p)


@dataclass(frozen=True)
class Port:
    """SRAM accesses of one slice: `n` cycles from `start`, `d` apart, reading or writing `banks`."""

    slice: str
    kind: str  # r | w
    start: int
    n: int
    d: int
    banks: frozenset[int]

    @property
    def end(self) -> int:
        return self.start + (self.n - 1) * self.d + 1

    def meets(self, other: Port) -> bool:
        """Do the two access patterns share a cycle?"""
        if self.start >= other.end or other.start >= self.end:
            return False
        if self.d == other.d and self.d > 1:
            return (self.start - other.start) % self.d == 0
        if self.n * other.n <= 4096:
            mine = set(range(self.start, self.end, self.d))
            return any(c in mine for c in range(other.start, other.end, other.d))
        return True  # long patterns with different strides: assume they meet


class Intervals:
    """Disjoint busy intervals [start, end) of one resource, kept sorted."""

    def __init__(self):
        self.starts: list[int] = []
        self.ends: list[int] = []

    def free(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.starts, start)
        if i and self.ends[i - 1] > start:
            return False
        return i == len(self.starts) or self.starts[i] >= end

    def next_free(self, start: int, end: int) -> int:
        """The smallest shift s >= 0 such that [start + s, end + s) is free."""
        length = end - start
        i = bisect.bisect_right(self.starts, start)
        if i and self.ends[i - 1] > start:
            start = self.ends[i - 1]
        while i < len(self.starts) and self.starts[i] < start + length:
            start = max(start, self.ends[i])
            i += 1
        return start - (end - length)

    def claim(self, start: int, end: int) -> None:
        """Add [start, end), merged with the intervals it overlaps, so the list stays disjoint (one step may
        claim overlapping spans of a queue: an ALU's latch MOV and the NOP that holds it)."""
        lo = bisect.bisect_left(self.ends, start)
        hi = bisect.bisect_right(self.starts, end)
        if lo < hi:
            start, end = min(start, self.starts[lo]), max(end, self.ends[hi - 1])
        self.starts[lo:hi] = [start]
        self.ends[lo:hi] = [end]


class Buckets:
    """Items indexed by the [lo, hi) ranges they cover, so a query looks only at items whose range could
    overlap its own (compile time stays near linear in program size)."""

    WIDTH = 512

    def __init__(self):
        self.cells: dict[int, list] = {}

    def add(self, lo: int, hi: int, item) -> None:
        for b in range(lo // self.WIDTH, (hi - 1) // self.WIDTH + 1):
            self.cells.setdefault(b, []).append(item)

    def near(self, lo: int, hi: int):
        first, last = lo // self.WIDTH, (hi - 1) // self.WIDTH
        if first == last:  # most queries: one cell, whose items are there once each
            return self.cells.get(first, ())
        return self._spread(first, last)

    def _spread(self, first: int, last: int):
        seen = set()
        for b in range(first, last + 1):
            for item in self.cells.get(b, ()):
                if id(item) not in seen:
                    seen.add(id(item))
                    yield item


class Resources:
    """Everything claimed so far by one program."""

    def __init__(self):
        self.queues: dict[str, Intervals] = {}
        self.pipes: dict[tuple[str, int], Buckets] = {}  # by line range
        self.ports: dict[tuple[str, str], Buckets] = {}  # (slice, r|w) -> accesses by cycle range

    # ---- queues ----
    def queue(self, name: str) -> Intervals:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Intervals()
        return q

    # ---- streams ----
    def stream_free(self, pipe: Pipe) -> bool:
        index = self.pipes.get((pipe.direction, pipe.stream))
        return index is None or not any(pipe.conflicts(o) for o in index.near(pipe.k0, pipe.k1 + 1))

    def claim_stream(self, pipe: Pipe) -> None:
        self.pipes.setdefault((pipe.direction, pipe.stream), Buckets()).add(pipe.k0, pipe.k1 + 1, pipe)

    # ---- SRAM ports: per slice one read and one write per cycle, a read and a write in different banks ----
    def port_free(self, port: Port) -> bool:
        same = self.ports.get((port.slice, port.kind))
        if same is not None and any(port.meets(o) for o in same.near(port.start, port.end)):
            return False
        other = self.ports.get((port.slice, "w" if port.kind == "r" else "r"))
        return other is None or not any(o.banks & port.banks and port.meets(o)
                                        for o in other.near(port.start, port.end))

    def port_shift(self, port: Port) -> int:
        """0 if the port is free; else a shift that skips only start cycles that would clash too: past the end
        of a clashing dense access (both one a cycle: every smaller shift still overlaps it), or 1."""
        clashes = []
        same = self.ports.get((port.slice, port.kind))
        if same is not None:
            clashes += [o for o in same.near(port.start, port.end) if port.meets(o)]
        other = self.ports.get((port.slice, "w" if port.kind == "r" else "r"))
        if other is not None:
            clashes += [o for o in other.near(port.start, port.end) if o.banks & port.banks and port.meets(o)]
        if not clashes:
            return 0
        dense = [o.end - port.start for o in clashes if o.d == 1 and port.d == 1]
        return max(1, max(dense, default=1))

    def claim_port(self, port: Port) -> None:
        self.ports.setdefault((port.slice, port.kind), Buckets()).add(port.start, port.end, port)
