"""Lowering of write_rows (rows into a state tensor at a run-time position) onto MEM SCATTER (ISCA20 Table I:
Scatter s, map).

The state sits whole in one slice group, tile-major: row i of tile j at base + j * L + i (L: its rows, or its
pinned region's). The VXM adds the position (in every lane) to base + j * L + r for each row r and tile j of
the value and casts to int16: one address vector per value vector. A pass then streams an address vector and
its value vector side by side past the state's slices, each of which SCATTERs its byte plane to the address.
The two streams must reach every state slice in the same cycle, so they flow the same way: the addresses and
(if needed) a copy of the value are placed on one side of the state.
"""

from __future__ import annotations

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.isa import ISA
from openlpu.chip.operands import Ref
from openlpu.compiler.graph import Node
from openlpu.compiler.internal import constant, op, release
from openlpu.compiler.layout import Part, Placed, segments
from openlpu.compiler.place import Emit, Step, place
from openlpu.compiler.resources import Port
from openlpu.compiler.streaming import READ_D, direction, stream_in

SCATTER_D = ISA["SCATTER"].d_func


def lower_write_rows(ctx, node: Node, state: Placed, value: Placed, pos: Placed) -> int:
    """Schedule the write after every reader of the state (`state.last_read`); returns its last write + 1."""
    lanes, rows = ctx.chip.lanes, value.node.rows
    (spart,) = state.parts
    n = state.tiles
    offsets = spart.addr + np.arange(n).repeat(lanes)[None, :] * spart.pitch + np.arange(rows)[:, None]
    wide = op(ctx, f"{node.name}.addr32", "add", [pos, constant(ctx, f"{node.name}.offsets", offsets, "int32")],
              (rows, n * lanes), "int32")
    sides = [_side(ctx, p.slices, spart) for p in value.parts]
    side = sides[0] or max(("west", "east"), key=lambda w: sum(_side(ctx, g, spart) == w for g in ctx.groups(1)))
    copied = any(w != side for w in sides)
    if copied:  # a copy of the value on one side of the state
        moved = _beside(ctx, Node("mov", (value.node,), value.node.shape, value.node.dtype, f"{node.name}.value"),
                        value, spart, side, (value,), value)
        value = op(ctx, moved.node.name, "mov", [value], value.node.shape, value.node.dtype, out=moved)
    addr_node = Node("cast", (wide.node,), wide.node.shape, "int16", f"{node.name}.addr")
    addrs = op(ctx, addr_node.name, "cast", [wide], addr_node.shape, "int16",
               out=_beside(ctx, addr_node, value, spart, side, (value, wide), wide))
    release(ctx, wide, addrs.ready)
    far = max(spart.slices, key=lambda s: ctx.chip.position[s] * (1 if side == "west" else -1))
    reach = max(ctx.hops(s, far) for p in (*addrs.parts, *value.parts) for s in p.slices)
    start = max(addrs.ready, value.ready, state.last_read + 1) + READ_D + reach
    done = 0
    for r0, r1 in segments([addrs, value], 0, rows):
        for j in range(n):
            _, step = place(ctx.res, ctx.builder,
                            lambda t, r0=r0, r1=r1, j=j: _scatter_pass(ctx, spart, addrs.part_of(r0),
                                                                       value.part_of(r0), r0, j, r1 - r0, t, far),
                            start, node.name)
            last = max(e.cycle + (e.n - 1) * e.d for e in step.emits if e.op == "SCATTER")
            done = max(done, last + SCATTER_D + 1)
    release(ctx, addrs, done)
    if copied:
        release(ctx, value, done)
    return done


def _side(ctx, slices: tuple[str, ...], state: Part) -> str | None:
    """Which side of the state's slices a slice group lies on (None: it shares them)."""
    pos = [ctx.chip.position[s] for s in state.slices]
    mine = [ctx.chip.position[s] for s in slices]
    if max(mine) < min(pos):
        return "west"
    if min(mine) > max(pos):
        return "east"
    return None


def _beside(ctx, node: Node, like: Placed, state: Part, side: str, avoid: tuple[Placed, ...],
            source: Placed) -> Placed:
    """SRAM for `node`, made from `source`, with `like`'s row parts, each on `side` of the state and apart from
    the slices of `avoid` (read in the same pass, or by the op that makes it). Space freed by the time `source`
    is ready will do: the op that makes `node` writes only after it has read `source`."""
    width = nx.width(node.dtype)
    n_tiles = -(-node.cols // ctx.chip.lanes)
    busy = {s for a in avoid for p in a.parts for s in p.slices}
    groups = [g for g in ctx.groups(width) if _side(ctx, g, state) == side and not busy & set(g)]
    parts = []
    for p in like.parts:
        spot = ctx.alloc.find(groups, n_tiles * p.rows, source.ready) if groups else None
        if spot is None:
            ctx.alloc.no_room(groups or ctx.groups(width), n_tiles * p.rows, f"tensor {node.name}")
        slices, bank, addr = spot
        parts.append(Part(slices, bank, addr, p.row0, p.rows))
    return Placed(node, n_tiles, parts)


def _scatter_pass(ctx, state: Part, src: Part, val: Part, row0: int, tile: int, count: int, t: int,
                  far: str) -> Step | None:
    """Addresses and values of (tile, row0..) reach the state's farthest slice from cycle t; each state slice
    SCATTERs its byte plane as they pass it."""
    step = Step()
    ref = stream_in(ctx, step, src, src.address(tile, row0), count, t, far)
    if ref is None:
        return None
    data = stream_in(ctx, step, val, val.address(tile, row0), count, t, far)
    if data is None:
        return None
    way = direction(ctx, src.slices[0], far)
    for byte, s in enumerate(state.slices):
        issue = t - ctx.hops(s, far)
        step.emits.append(Emit(s, issue, "SCATTER", (Ref(way, ref.index), Ref(way, data.index + byte)), count))
        step.ports.append(Port(s, "w", issue + SCATTER_D, count, 1, frozenset(range(ctx.chip.mem_banks))))
    return step
