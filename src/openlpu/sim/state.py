"""The architectural state of one chip while a program runs: SRAM, stream registers, unit state.

Stream registers are kept per characteristic line, not per slice: an eastward value written at position
p in cycle t is at position p + (c - t) in cycle c, so everything on the line `p - t` moves together
and the register at (x, c) holds the latest value written on line x - c (x + c westward). A write is
one dict store, a read one lookup, and idle cycles cost nothing; lines that have left the chip are
pruned, so memory does not grow with cycles.
"""

from __future__ import annotations

import mmap
from collections import deque

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.operands import EAST, Ref
from openlpu.chip.program import Program
from openlpu.errors import UserError


class Plane:
    """One MXM plane: weight buffer (being loaded), installed weights, activation buffers, accumulators."""

    def __init__(self, chip):
        self.chip = chip
        self.buffer = np.zeros((chip.mxm_size, chip.mxm_size), np.uint8)
        self.kernel = None  # the installed weights, ready to multiply (numerics.mxm_kernel)
        self.mode: str | None = None
        self.act: dict[int, np.ndarray] = {}
        self._acc: dict[str, np.ndarray] = {}

    def accumulators(self, dtype: str) -> np.ndarray:
        """int32 (int8 mode) or fp32 (fp16 mode) accumulator slots, allocated on first use."""
        acc = self._acc.get(dtype)
        if acc is None:
            acc = self._acc[dtype] = np.zeros((self.chip.mxm_acc_slots, self.chip.mxm_size), nx.DTYPES[dtype])
        return acc


class Sram(dict):
    """MEM slice name -> [addresses, lanes] bytes: views of one block, so that rows of several slices can be
    gathered at once (`rows`, whose rows `Sram.row` numbers). Its zeroed pages take no memory until a program
    writes them."""

    def __init__(self, chip):
        index = Sram.index(chip)
        shape = (len(index), chip.mem_addresses, chip.lanes)
        # an anonymous map, not np.zeros: numpy asks for huge pages on large arrays, and a 2 MiB page per
        # touched row made every program's SRAM image ~200 MB however few rows it uses (8 chips x 30 layers
        # of tensor-parallel programs would not fit the host)
        block = np.frombuffer(mmap.mmap(-1, int(np.prod(shape))), np.uint8).reshape(shape)
        self.rows = block.reshape(-1, chip.lanes)
        super().__init__((name, block[i]) for name, i in index.items())

    @staticmethod
    def index(chip) -> dict[str, int]:
        return {name: i for i, name in enumerate(s for s in chip.floorplan if s.startswith("MEM"))}

    @staticmethod
    def row(i: int, addresses: int, addr) -> np.ndarray:
        """The rows of `rows` that hold address(es) `addr` (an int, an array or a slice) of the slice `i`
        (its `Sram.index`) on a chip of `addresses` (`mem_addresses`) per slice."""
        if isinstance(addr, slice):
            addr = np.arange(addr.start, addr.stop)
        return i * addresses + np.asarray(addr)


def stored(t, program: Program) -> bool:
    """Whether a run starts with tensor `t` stored in SRAM. SRAM starts zeroed; storing a zeros tensor without a
    value could wipe another's data where the compiler reuses space."""
    return t.init != "zeros" or t.name in program.values


class ChipState:
    PRUNE_EVERY = 1 << 14

    def __init__(self, program: Program, sram: Sram | None = None):
        """`sram`: SRAM that already holds the program's tensors (openlpu.sim.memory); by default they are stored."""
        chip = program.chip
        self.chip = chip
        self.lanes = chip.lanes
        self.positions = len(chip.floorplan)
        self.zero = np.zeros(chip.lanes, np.uint8)
        self.lines: list[list[dict[int, np.ndarray]]] = [
            [{} for _ in range(chip.streams_per_direction)] for _ in range(2)
        ]
        self.mem = Sram(chip) if sram is None else sram
        self.mxm = [Plane(chip) for _ in range(chip.mxm_planes)]
        self.alu: dict[int, np.ndarray] = {}
        self.links: dict[int, deque] = {}
        self.deskewed: set[int] = set()
        self.config: dict[str, str] = {}
        self.maps = {k: np.asarray(v, dtype=np.int64) for k, v in program.maps.items()}
        self.writes = 0
        for t in program.tensors.values() if sram is None else ():
            if stored(t, program):
                self.store_tensor(t, program.initial_value(t))

    # ---- tensors in SRAM (byte planes in one slice each) ----
    def store_tensor(self, t, value: np.ndarray) -> None:
        for b, plane in enumerate(nx.to_planes(value, t.dtype)):
            self.mem[t.slices[b]][t.addr:t.addr + t.rows] = plane

    def load_tensor(self, t) -> np.ndarray:
        return nx.from_planes([self.mem[s][t.addr:t.addr + t.rows] for s in t.slices], t.dtype)

    # ---- streams ----
    def read(self, ref: Ref, dtype: str, pos: int, cycle: int) -> np.ndarray:
        if ref.kind == "alu":
            value = self.alu.get(ref.index)
            return np.zeros(self.lanes, nx.DTYPES[dtype]) if value is None else value
        d = 0 if ref.kind == EAST else 1
        key = pos - cycle if d == 0 else pos + cycle
        lines = self.lines[d]
        w = nx.DTYPES[dtype].itemsize
        if w == 1:
            return lines[ref.index].get(key, self.zero).view(nx.DTYPES[dtype])
        return nx.from_planes([lines[ref.index + i].get(key, self.zero) for i in range(w)], dtype)

    def write(self, ref: Ref, dtype: str, pos: int, cycle: int, value: np.ndarray) -> None:
        d = 0 if ref.kind == EAST else 1
        key = pos - cycle if d == 0 else pos + cycle
        lines = self.lines[d]
        if nx.DTYPES[dtype].itemsize == 1:
            lines[ref.index][key] = value.view(np.uint8)
        else:
            for i, plane in enumerate(nx.to_planes(value, dtype)):
                lines[ref.index + i][key] = plane
        self.writes += 1
        if self.writes % self.PRUNE_EVERY == 0:
            self.prune(cycle)

    def prune(self, cycle: int) -> None:
        """Forget lines that have left the chip: east past the last slice, west past the first."""
        last = self.positions - 1
        for d, lines in enumerate(self.lines):
            for line in lines:
                dead = [k for k in line if (k + cycle > last if d == 0 else k - cycle < 0)]
                for k in dead:
                    del line[k]

    def live_values(self) -> int:
        return sum(len(line) for lines in self.lines for line in lines)

    # ---- C2C loopback links ----
    def link_send(self, link: int, cycle: int, payload: np.ndarray) -> None:
        self.links.setdefault(link, deque()).append((cycle + self.chip.c2c_loopback_cycles, payload))

    def link_receive(self, link: int, cycle: int) -> np.ndarray:
        queue = self.links.get(link)
        if not queue or queue[0][0] > cycle:
            nxt = f"; the next arrives at cycle {queue[0][0]}" if queue else ""
            raise UserError(f"RECEIVE on link {link} at cycle {cycle}: nothing has arrived{nxt}.")
        return queue.popleft()[1]
