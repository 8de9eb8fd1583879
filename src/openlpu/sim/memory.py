"""The SRAM a program starts from, kept from one fast run of it to the next.

Storing every tensor (a model's weights) takes longer than much of a decode step. A run of the same
program starts from the SRAM the last one left, with two things put back: the rows the last run wrote
(WRITE addresses are in the program, SCATTER's are logged as it runs) and the tensors whose values
changed. A tensor's value counts as unchanged while `program.values` holds the same array object, made
read-only here so that nothing changes it in place; a value that views a writable array (whose owner
could still change it) counts as changed at every run.
"""

from __future__ import annotations

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.program import Program
from openlpu.sim.state import Sram, stored


def _same(old: np.ndarray | None, new: np.ndarray | None) -> bool:
    """The same value: no value both times, or the same array, which nothing can have written."""
    return new is old and _sealed(new)


def _sealed(a) -> bool:
    """Read-only, and so is every array it views, down to one that owns its memory or to immutable bytes."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return a is None or isinstance(a, bytes)


class Memory:
    """A program's SRAM between runs: `start(program)` gives the SRAM its next run starts from, and the
    names of the tensors whose values changed since the one before."""

    def __init__(self, program: Program, batches: list):
        chip = program.chip
        self.sram = Sram(chip)
        self.A = chip.mem_addresses
        self.index = Sram.index(chip)
        self.tensors = tuple(program.tensors.values())
        self.order = {t.name: i for i, t in enumerate(self.tensors)}
        self.values: dict[str, np.ndarray | None] = {}
        self.planes: dict[str, list[np.ndarray]] = {}  # byte planes of each stored tensor's initial value
        rows, owners, planes = [np.zeros(0, np.int64)], [np.zeros(0, np.int32)], [np.zeros(0, np.int8)]
        for i, t in enumerate(self.tensors):
            if stored(t, program):
                self._store(t, program)
                for b, s in enumerate(t.slices):
                    rows.append(self._rows(s, t.addr, t.rows))
                    owners.append(np.full(t.rows, i, np.int32))
                    planes.append(np.full(t.rows, b, np.int8))
        # the SRAM rows that hold a tensor's initial value (sorted), the tensor (a later one where two share a
        # row) and which of its planes: kept for those rows only, as a program holds few of the chip's 700k
        rows, owners, planes = (np.concatenate(a)[::-1] for a in (rows, owners, planes))
        self.held, last = np.unique(rows, return_index=True)
        self.held_by, self.held_plane = owners[last], planes[last]
        # rows the program's WRITEs write
        written = [Sram.row(self.index[b.slice], self.A, np.atleast_1d(b.args(0, b.n)["addr"]).ravel())
                   for b in batches if b.op.name == "WRITE"]
        self.written = np.unique(np.concatenate(written)) if written else np.zeros(0, np.int64)
        self.scattered: list[np.ndarray] = []  # rows SCATTERs wrote in the last run
        self.shadowed: dict[str, np.ndarray] = {}  # per tensor: its rows a later tensor overwrites

    def _rows(self, slice_: str, addr: int, rows: int) -> np.ndarray:
        return Sram.row(self.index[slice_], self.A, slice(addr, addr + rows))

    def _store(self, t, program: Program) -> None:
        value = program.values.get(t.name)
        if value is not None:
            value.flags.writeable = False
        self.values[t.name] = value
        planes = nx.to_planes(program.initial_value(t), t.dtype)
        self.planes[t.name] = planes
        for b, plane in enumerate(planes):
            self.sram[t.slices[b]][t.addr:t.addr + t.rows] = plane

    def fits(self, program: Program) -> bool:
        """Whether the program still has the tensors this SRAM was made for, each stored or not as then."""
        return (len(program.tensors) == len(self.tensors)
                and all(a is b for a, b in zip(program.tensors.values(), self.tensors, strict=True))
                and all((t.name in self.values) == stored(t, program) for t in self.tensors))

    def start(self, program: Program) -> tuple[Sram, list[str]]:
        """The SRAM the program starts from, and the tensors whose values changed since the last run."""
        self._restore(self.written)
        for rows in self.scattered:
            self._restore(rows)
        self.scattered = []
        values = program.values
        changed = [name for name, old in self.values.items() if not _same(old, values.get(name))]
        for name in changed:
            t = program.tensors[name]
            self._store(t, program)
            shadowed = self.shadowed.get(name)
            if shadowed is None:
                i = self.order[name]
                rows = np.concatenate([self._rows(s, t.addr, t.rows) for s in t.slices])
                shadowed = self.shadowed[name] = rows[self.owner(rows)[0] != i]
            self._restore(shadowed)
        return self.sram, changed

    def log_scatter(self, slice_: str, addrs: np.ndarray) -> np.ndarray:
        """The rows a SCATTER to `addrs` is about to write (as the ISA's SCATTER wraps them), logged before it
        writes them: a run that stops halfway is put back too."""
        rows = Sram.row(self.index[slice_], self.A, np.unique(addrs.astype(np.int64) % self.A))
        self.scattered.append(rows)
        return rows

    def owner(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per SRAM row: the tensor whose initial value it holds (its index, -1: none, zeros) and which plane."""
        if not len(self.held):
            return np.full(len(rows), -1, np.int32), np.zeros(len(rows), np.int8)
        at = np.minimum(np.searchsorted(self.held, rows), len(self.held) - 1)
        hit = self.held[at] == rows
        return np.where(hit, self.held_by[at], -1), np.where(hit, self.held_plane[at], 0)

    def _restore(self, rows: np.ndarray) -> None:
        """Put the rows back as the program's tensors leave them before it runs."""
        if not len(rows):
            return
        owner, plane = self.owner(rows)
        self.sram.rows[rows[owner < 0]] = 0
        owned = owner >= 0
        if not owned.any():
            return
        rows, owner, plane = rows[owned], owner[owned], plane[owned]
        key = owner.astype(np.int64) * 8 + plane
        order = np.argsort(key, kind="stable")
        rows, key = rows[order], key[order]
        starts = np.flatnonzero(np.diff(key, prepend=-1))
        for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(rows)], strict=True):
            t = self.tensors[int(key[lo]) // 8]
            self.sram.rows[rows[lo:hi]] = self.planes[t.name][int(key[lo]) % 8][rows[lo:hi] % self.A - t.addr]
