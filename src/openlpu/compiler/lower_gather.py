"""Lowering of gather (embedding lookup) onto MEM GATHER (ISCA20 Table I: Gather s, map).

The table sits whole in one slice group (one slice per byte plane), tile-major: row i of tile j at
base + j * V + i. Each output vector (row n, tile j) is the table vector at that address, so the VXM first
turns the replicated indices into an int16 address vector per (n, j): idx[n] + base + j * V in every lane.
Then a pass streams the addresses past the table's slices, each of which GATHERs its byte plane onto a
stream toward the output's slices, where WRITEs take them.
"""

from __future__ import annotations

import numpy as np

from openlpu.chip.isa import ISA
from openlpu.chip.operands import Ref
from openlpu.compiler.graph import Node
from openlpu.compiler.internal import constant, op, release
from openlpu.compiler.layout import Part, Placed, segments
from openlpu.compiler.place import Emit, Step, place
from openlpu.compiler.resources import Port
from openlpu.compiler.streaming import READ_D, WRITE_D, direction, stream_in

GATHER_D = ISA["GATHER"].d_func


def lower_gather(ctx, node: Node, table: Placed, idx: Placed) -> Placed:
    lanes, rows = ctx.chip.lanes, node.rows
    (tpart,) = table.parts
    n = table.tiles
    offsets = (tpart.addr + np.repeat(np.arange(n), lanes) * tpart.rows)[None, :]
    wide = op(ctx, f"{node.name}.addr32", "add", [idx, constant(ctx, f"{node.name}.offsets", offsets, "int32")],
              (rows, n * lanes), "int32")
    addrs = op(ctx, f"{node.name}.addr", "cast", [wide], (rows, n * lanes), "int16")
    release(ctx, wide, addrs.ready)
    out = ctx.place_tensor(node, avoid=(table, addrs))
    reach = max(ctx.hops(s, t) for p in addrs.parts for s in p.slices for t in tpart.slices)
    done = 0
    for r0, r1 in segments([addrs, out], 0, rows):
        for j in range(n):
            _, step = place(ctx.res, ctx.builder,
                            lambda t, r0=r0, r1=r1, j=j: _gather_pass(ctx, tpart, addrs.part_of(r0), out.part_of(r0),
                                                                      r0, j, r1 - r0, t),
                            max(addrs.ready + READ_D + reach, table.ready), node.name)
            last = max(e.cycle + (e.n - 1) * e.d for e in step.emits if e.op == "WRITE")
            done = max(done, last + WRITE_D + 1)
    out.ready = done
    release(ctx, addrs, done)
    return out


def _gather_pass(ctx, table: Part, src: Part, part: Part, row0: int, tile: int, count: int, t: int) -> Step | None:
    """Addresses of (tile, row0..) reach the table's farthest slice from cycle t; each table slice GATHERs as
    they pass it; the results stream to `part`."""
    chip = ctx.chip
    way = direction(ctx, src.slices[0], table.slices[0])
    far = max(table.slices, key=lambda s: ctx.hops(src.slices[0], s))
    step = Step()
    ref = stream_in(ctx, step, src, src.address(tile, row0), count, t, far)
    if ref is None:
        return None
    back = direction(ctx, table.slices[0], part.slices[0])
    issues = [t - ctx.hops(s, far) for s in table.slices]
    spans = [(chip.position[s], chip.position[o], g + GATHER_D, g + GATHER_D + count - 1)
             for s, o, g in zip(table.slices, part.slices, issues, strict=True)]
    dst = ctx.free_stream(step, back, spans)
    if dst is None:
        return None
    for byte, (s, o, g) in enumerate(zip(table.slices, part.slices, issues, strict=True)):
        step.emits.append(Emit(s, g, "GATHER", (Ref(way, ref.index), Ref(back, dst.index + byte)), count))
        step.ports.append(Port(s, "r", g, count, 1, frozenset(range(chip.mem_banks))))
        issue = g + GATHER_D + ctx.hops(s, o)
        step.emits.append(Emit(o, issue, "WRITE", (part.address(tile, row0), Ref(back, dst.index + byte)), count))
        step.ports.append(Port(o, "w", issue + WRITE_D, count, 1, frozenset({part.bank})))
    return step
