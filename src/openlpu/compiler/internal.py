"""Tensors that a lowering makes for itself (masks, folds, im2col buffers): views of placed tensors, and
elementwise or lane-move ops on internal nodes that never appear in the graph."""

from __future__ import annotations

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.compiler.graph import Node
from openlpu.compiler.layout import Part, Placed, declare, set_value


def view(p: Placed, tile0: int, tiles: int, lanes: int) -> Placed:
    """Tiles [tile0, tile0 + tiles) of `p` as a tensor of their own, in place (tile-major parts make them
    consecutive addresses). Its node has whole tiles of columns."""
    node = Node("view", (p.node,), (p.node.rows, tiles * lanes), p.node.dtype, f"{p.node.name}.t{tile0}")
    parts = [Part(pt.slices, pt.bank, pt.address(tile0, pt.row0), pt.row0, pt.rows, pt.stride) for pt in p.parts]
    return Placed(node, tiles, parts, p.ready)


def anywhere(*tensors: Placed) -> tuple[Placed, ...]:
    """The tensors as `place_tensor(avoid=...)` should see them when the output's rows are not theirs (a copy
    that moves rows): every slice they use is avoided for every output row."""
    return tuple(Placed(p.node, p.tiles, [Part(pt.slices, pt.bank, pt.addr, 0, 1 << 40) for pt in p.parts], p.ready)
                 for p in tensors)


def constant(ctx, name: str, value: np.ndarray, dtype: str) -> Placed:
    """A constant [rows, cols] stored with the program (its padding lanes as given when cols is whole tiles)."""
    node = Node("constant", (), value.shape, dtype, name)
    p = ctx.place_tensor(node)
    declare(ctx.builder.program, p)
    set_value(ctx.builder.program, p, value.astype(nx.DTYPES[dtype]))
    return p


def op(ctx, name: str, kind: str, args: list[Placed], shape: tuple[int, int], dtype: str, out: Placed | None = None,
       **attrs) -> Placed:
    """Lower one elementwise (VXM) or lane-move (SXM: kind "permute") op on internal tensors."""
    from openlpu.compiler.lower_sxm import lower_lane_move
    from openlpu.compiler.lower_vxm import lower_elementwise

    node = Node(kind, tuple(a.node for a in args), shape, dtype, name, attrs)
    out = ctx.place_tensor(node, avoid=tuple(args)) if out is None else Placed(node, out.tiles, out.parts)
    lower = lower_lane_move if kind == "permute" else lower_elementwise
    out.ready = lower(ctx, node, args, out)
    return out


def release(ctx, p: Placed, when: int) -> None:
    """Hand back an internal tensor's SRAM once its last reader is done (`when`)."""
    for part in p.parts:
        ctx.alloc.free(part.slices, part.bank, part.addr, p.tiles * part.rows, when)
