"""Lowering of row_max: the VXM has no cross-lane max, so lanes meet through the SXM.

1. Padding lanes of a partial last tile are set to the dtype's lowest value (MIN with a constant that is the
   highest value in the real columns and the lowest in the padding).
2. Column tiles fold in halves with MAX: tiles [0, h) against [n - h, n), h = ceil(n / 2); the overlap of an
   odd count is harmless (max is idempotent). Tile-major layout makes each half consecutive addresses.
3. The one remaining tile is rotated by 1, 2, 4, ... lanes with PERMUTE (all lanes: a bijection) and MAXed with
   itself: after rotations summing to at least lanes - 1, every lane holds the row's maximum, so the result
   broadcasts over columns like row_sum's.
`row_max_reference` (graph.py) does exactly these steps in numpy.
"""

from __future__ import annotations

import numpy as np

from openlpu.compiler.graph import Node, lowest_highest
from openlpu.compiler.internal import constant, op, release, view
from openlpu.compiler.layout import Placed


def rotation_map(ctx, s: int) -> str:
    lanes = ctx.chip.lanes
    name = f"rotate{s}"
    ctx.builder.program.maps.setdefault(name, tuple((i + s) % lanes for i in range(lanes)))
    return name


def lower_row_max(ctx, node: Node, x: Placed) -> Placed:
    lanes, dt, rows = ctx.chip.lanes, node.dtype, node.rows
    n = x.tiles
    cur = view(x, 0, n, lanes)
    if x.node.cols % lanes:
        low, high = lowest_highest(dt)
        bound = np.full((1, n * lanes), high)
        bound[0, x.node.cols:] = low
        cur = op(ctx, f"{node.name}.mask", "min", [cur, constant(ctx, f"{node.name}.bound", bound, dt)],
                 (rows, n * lanes), dt)
    while n > 1:
        h = -(-n // 2)
        folded = op(ctx, f"{node.name}.fold{n}", "max", [view(cur, 0, h, lanes), view(cur, n - h, h, lanes)],
                    (rows, h * lanes), dt)
        if cur.node.op != "view":
            release(ctx, cur, folded.ready)
        cur, n = folded, h
    s = 1
    while s < lanes:
        turned = op(ctx, f"{node.name}.rot{s}", "permute", [cur], (rows, lanes), dt, map=rotation_map(ctx, s))
        both = [cur, turned]
        if 2 * s >= lanes:  # the last step writes the result
            out = ctx.place_tensor(node, avoid=tuple(both))
            out.ready = op(ctx, node.name, "max", both, (rows, lanes), dt, out=out).ready
        else:
            out = op(ctx, f"{node.name}.max{s}", "max", both, (rows, lanes), dt)
        for p in both:
            if p.node.op != "view":
                release(ctx, p, out.ready)
        cur, s = out, 2 * s
    return cur
