"""How a graph tensor [rows, cols] lives in SRAM.

Columns are cut into tiles of `lanes` (the last one zero-padded); a tile of one row is one vector. Rows may
be cut into parts (one per MXM unit that consumes them, so units read in parallel); each part sits in one
slice group (one slice per byte plane) with its vectors tile-major: the vector of (tile j, row r) is at
part.addr + j * part.rows + (r - part.row0). So all rows of one tile are consecutive addresses, which is
what a REPEAT'd READ streams. A pinned state (compile's `states`) is the prefix of a region of more rows:
its tiles are `stride` addresses apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.program import Program, Tensor
from openlpu.compiler.graph import Node


@dataclass(frozen=True)
class Part:
    slices: tuple[str, ...]
    bank: int
    addr: int
    row0: int
    rows: int
    stride: int = 0  # addresses from one tile to the next, when not `rows`

    @property
    def pitch(self) -> int:
        return self.stride or self.rows

    def address(self, tile: int, row: int) -> int:
        return self.addr + tile * self.pitch + (row - self.row0)


@dataclass
class Placed:
    node: Node
    tiles: int
    parts: list[Part]
    ready: int = 0  # first cycle at which every vector is in SRAM
    last_read: int = 0  # last cycle any consumer reads it (for reuse of its space)
    names: list[str] = field(default_factory=list)  # Program tensor name of each part

    def part_of(self, row: int) -> Part:
        for p in self.parts:
            if p.row0 <= row < p.row0 + p.rows:
                return p
        raise IndexError(row)

    def bounds(self) -> set[int]:
        return {p.row0 for p in self.parts} | {p.row0 + p.rows for p in self.parts}


def segments(tensors: list[Placed], row0: int, row1: int) -> list[tuple[int, int]]:
    """Row ranges within [row0, row1) that no tensor's part boundary cuts."""
    cuts = sorted({row0, row1} | {b for t in tensors if t.node.rows > 1 for b in t.bounds() if row0 < b < row1})
    return list(zip(cuts, cuts[1:], strict=False))


def tiles(cols: int, lanes: int) -> int:
    return -(-cols // lanes)


ROW_SPLIT_MIN = 128  # from this many rows a tensor's rows are halved, one half per hemisphere


def halves(rows: int) -> list[tuple[int, int]]:
    return row_split(rows, 2 if rows >= ROW_SPLIT_MIN else 1)


def row_split(rows: int, parts: int) -> list[tuple[int, int]]:
    """[(row0, rows)] of `parts` nearly equal blocks (fewer when rows are few)."""
    parts = max(1, min(parts, rows))
    base, extra = divmod(rows, parts)
    out, r = [], 0
    for k in range(parts):
        n = base + (k < extra)
        out.append((r, n))
        r += n
    return out


def pack(value: np.ndarray, placed: Placed, lanes: int) -> list[np.ndarray]:
    """[rows, cols] -> one [tiles * part.rows, lanes] array per part, tile-major."""
    rows, cols = value.shape
    padded = np.zeros((rows, placed.tiles * lanes), dtype=value.dtype)
    padded[:, :cols] = value
    out = []
    for p in placed.parts:
        block = padded[p.row0:p.row0 + p.rows].reshape(p.rows, placed.tiles, lanes)
        out.append(np.ascontiguousarray(block.transpose(1, 0, 2)).reshape(placed.tiles * p.rows, lanes))
    return out


def unpack(parts: list[np.ndarray], placed: Placed, lanes: int) -> np.ndarray:
    rows, cols = placed.node.shape
    out = np.empty((rows, placed.tiles * lanes), dtype=parts[0].dtype)
    for p, arr in zip(placed.parts, parts, strict=True):
        out[p.row0:p.row0 + p.rows] = arr.reshape(placed.tiles, p.rows, lanes).transpose(1, 0, 2).reshape(p.rows, -1)
    return out[:, :cols]


def declare(program: Program, placed: Placed, output: bool = False) -> None:
    """Add the placed tensor's parts to the program as SRAM tensors."""
    placed.names = []
    for k, p in enumerate(placed.parts):
        name = placed.node.name if len(placed.parts) == 1 else f"{placed.node.name}.{k}"
        program.tensors[name] = Tensor(name, placed.node.dtype, placed.tiles * p.rows, p.slices, p.addr,
                                       "zeros", output)
        placed.names.append(name)


def set_value(program: Program, placed: Placed, value: np.ndarray) -> None:
    lanes = program.chip.lanes
    for name, arr in zip(placed.names, pack(value.astype(nx.DTYPES[placed.node.dtype]), placed, lanes),
                         strict=True):
        program.values[name] = arr
