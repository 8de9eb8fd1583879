"""Lowering of conv2d and max_pool2d through an im2col copy.

The copy is a tensor [Ho*Wo, pieces * tiles * lanes]: piece k = (kh, kw) holds, in its own column tiles,
the input pixel that the window's (kh, kw) sees for every output pixel. Its pixels are copied through the
VXM (lower_copy): whole output rows at a time for a stride-1 kernel, single pixels otherwise. Pixels where the
window leaves the image are never written: the buffer is zero when the program loads and no other tensor
ever takes its SRAM, so they stay zero run after run.

conv2d is then one matmul of the copy by the weights spread to the same tile layout (graph.conv_weights),
K tiles accumulating in the MXM; a 1x1 stride-1 kernel needs no copy. max_pool2d folds the pieces in halves
with MAX, as row_max folds tiles.
"""

from __future__ import annotations

from openlpu.compiler.graph import Node, conv_weights, im2col_runs
from openlpu.compiler.internal import anywhere, op, release, view
from openlpu.compiler.layout import Placed, declare
from openlpu.compiler.lower_copy import Piece, lower_copy
from openlpu.compiler.lower_matmul import lower_matmul


def _direct(node: Node) -> bool:
    return node.attrs["kernel"] == (1, 1) and node.attrs["stride"] == 1 and node.attrs["padding"] == 0


def im2col(ctx, node: Node, x: Placed) -> Placed:
    lanes = ctx.chip.lanes
    pieces = im2col_runs(node.attrs)
    tiles = x.tiles
    buf = Node("im2col", (x.node,), (node.rows, len(pieces) * tiles * lanes), x.node.dtype, f"{node.name}.im2col")
    out = ctx.place_tensor(buf, avoid=anywhere(x), not_before=-1)  # fresh SRAM, zero at load
    declare(ctx.builder.program, out)
    copies = [Piece(x, src, 0, dst, k * tiles, n, tiles) for k, runs in enumerate(pieces) for src, dst, n in runs]
    out.ready = lower_copy(ctx, buf, copies, out)
    return out


def lower_conv2d(ctx, node: Node, x: Placed, weights) -> Placed:
    lanes = ctx.chip.lanes
    cols = x if _direct(node) else im2col(ctx, node, x)
    matmul = Node("matmul", (cols.node, node.inputs[1]), node.shape, node.dtype, node.name)
    out = ctx.place_tensor(node, avoid=anywhere(cols))
    out.ready = lower_matmul(ctx, matmul, cols, conv_weights(weights, node.attrs, lanes), out)
    return out


def lower_max_pool2d(ctx, node: Node, x: Placed) -> Placed:
    lanes, rows, dt = ctx.chip.lanes, node.rows, node.dtype
    cols = im2col(ctx, node, x)
    tiles = x.tiles
    n = node.attrs["kernel"][0] * node.attrs["kernel"][1]
    if n == 1:
        return Placed(node, cols.tiles, cols.parts, cols.ready)
    cur = cols
    while n > 1:
        h = -(-n // 2)
        halves = [view(cur, 0, h * tiles, lanes), view(cur, (n - h) * tiles, h * tiles, lanes)]
        if h == 1:  # the last fold writes the result
            out = ctx.place_tensor(node, avoid=tuple(halves))
            out.ready = op(ctx, node.name, "max", halves, (rows, tiles * lanes), dt, out=out).ready
        else:
            out = op(ctx, f"{node.name}.fold{n}", "max", halves, (rows, h * tiles * lanes), dt)
        if cur is not cols:
            release(ctx, cur, out.ready)
        cur, n = out, h
    return cur
