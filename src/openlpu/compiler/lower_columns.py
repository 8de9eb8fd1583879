"""Column moves off tile edges (slice and concat at any column): lanes change place on the MXM.

A vector cannot change lanes without the SXM or the MXM. Here the MXM does it: the operand's tiles are staged
in one tensor (a view when they already are, else tile-aligned copies), and each byte plane of it, read as
int8, is multiplied by a 0/1 selection matrix S (S[staged column, output column] = 1). Each output byte is
then one product by 1 summed with zeros: exact whatever the bytes mean (NaN and inf included), and the
int32 result is cast back to int8 into the same byte plane of the output.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.compiler.graph import Node
from openlpu.compiler.internal import anywhere, op, release, view
from openlpu.compiler.layout import Placed
from openlpu.compiler.lower_copy import Piece, lower_copy
from openlpu.compiler.lower_matmul import lower_matmul


def on_tile_edges(node: Node, lanes: int) -> bool:
    if node.op == "slice":
        return node.attrs["col0"] % lanes == 0
    return node.attrs["axis"] == 0 or all(p.cols % lanes == 0 for p in node.inputs[:-1])


def plane(p: Placed, byte: int) -> Placed:
    """Byte plane `byte` of a tensor as an int8 tensor (its slice of each part)."""
    node = Node("plane", (p.node,), p.node.shape, "int8", f"{p.node.name}.b{byte}")
    return Placed(node, p.tiles, [replace(pt, slices=(pt.slices[byte],)) for pt in p.parts], p.ready)


def lower_columns(ctx, node: Node, args: list[Placed]) -> Placed:
    lanes = ctx.chip.lanes
    if node.op == "slice":
        (a,) = args
        r0, c0 = node.attrs["row0"], node.attrs["col0"]
        t0, t1 = c0 // lanes, -(-(c0 + node.cols) // lanes)
        if r0 == 0 and node.rows == a.node.rows:
            stage = view(a, t0, t1 - t0, lanes)
        else:
            stage = _stage(ctx, node, [Piece(a, r0, t0, 0, 0, node.rows, t1 - t0)], t1 - t0)
        sources = c0 - t0 * lanes + np.arange(node.cols)
    else:
        pieces, starts, tile = [], [], 0
        for a in args:
            pieces.append(Piece(a, 0, 0, 0, tile, node.rows, a.tiles))
            starts.append(tile * lanes + np.arange(a.node.cols))
            tile += a.tiles
        stage = _stage(ctx, node, pieces, tile)
        sources = np.concatenate(starts)
    select = np.zeros((stage.tiles * lanes, node.cols), np.int8)
    select[sources, np.arange(node.cols)] = 1
    out = ctx.place_tensor(node, avoid=(stage,))
    done = 0
    for byte in range(nx.width(node.dtype)):
        src, dst = plane(stage, byte), plane(out, byte)
        wide = Node("matmul", (src.node,), node.shape, "int32", f"{node.name}.b{byte}.moved")
        moved = ctx.place_tensor(wide, avoid=(src, out))
        moved.ready = lower_matmul(ctx, wide, src, select, moved)
        done = max(done, op(ctx, f"{node.name}.b{byte}", "cast", [moved], node.shape, "int8", out=dst).ready)
        release(ctx, moved, done)
    if stage.node.op != "view":
        release(ctx, stage, done)
    out.ready = done
    return out


def _stage(ctx, node: Node, pieces: list[Piece], tiles: int) -> Placed:
    staged = Node("stage", tuple(p.src.node for p in pieces), (node.rows, tiles * ctx.chip.lanes), node.dtype,
                  f"{node.name}.stage")
    out = ctx.place_tensor(staged, avoid=anywhere(*(p.src for p in pieces)))
    out.ready = lower_copy(ctx, staged, pieces, out)
    return out
