"""Lowering of slices and concatenations: vectors copied through the VXM (a MOV per pass) from one place
in SRAM to another. Rows are free to move; columns move in whole tiles of `lanes`, since a vector cannot
change lanes without the SXM."""

from __future__ import annotations

from dataclasses import dataclass

from openlpu.chip.isa import ISA
from openlpu.compiler.graph import Node
from openlpu.compiler.layout import Placed
from openlpu.compiler.place import Emit, Step, place
from openlpu.compiler.streaming import READ_D, WRITE_D, stream_in, stream_out
from openlpu.errors import UserError

MOV_D = ISA["MOV"].d_func


@dataclass(frozen=True)
class Piece:
    """rows x tiles vectors from `src` at (src_row, src_tile) to the output at (out_row, out_tile)."""

    src: Placed
    src_row: int
    src_tile: int
    out_row: int
    out_tile: int
    rows: int
    tiles: int


def pieces_for(node: Node, args: list[Placed], lanes: int) -> list[Piece]:
    """Where each block of the output comes from, for slice and concat; columns must fall on tile edges."""
    if node.op == "slice":
        (a,) = args
        r0, c0 = node.attrs["row0"], node.attrs["col0"]
        _tile_edge(node, c0, lanes)
        return [Piece(a, r0, c0 // lanes, 0, 0, node.rows, -(-node.cols // lanes))]
    out, row, tile = [], 0, 0
    for a in args:
        if node.attrs["axis"] == 0:
            out.append(Piece(a, 0, 0, row, 0, a.node.rows, a.tiles))
            row += a.node.rows
        else:
            if a is not args[-1]:  # the next piece starts where this one ends: on a tile edge
                _tile_edge(node, a.node.cols, lanes)
            out.append(Piece(a, 0, 0, 0, tile, a.node.rows, a.tiles))
            tile += a.tiles
    return out


def row_pieces(a: Placed, rows: tuple[int, ...]) -> list[Piece]:
    """take_rows: one piece per run of consecutive source rows."""
    out, start = [], 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i] != rows[i - 1] + 1:
            out.append(Piece(a, rows[start], 0, start, 0, i - start, a.tiles))
            start = i
    return out


def _tile_edge(node: Node, col: int, lanes: int) -> None:
    if col % lanes:
        raise UserError(f"{node.op} {node.name}: column {col} is not on a tile edge; on this chip columns move in "
                        f"whole tiles of {lanes} (lane moves across tiles are not lowered yet).")


def lower_copy(ctx, node: Node, pieces: list[Piece], out: Placed) -> int:
    done = 0
    # no piece writes before every source is ready: the output may reuse SRAM that is free only from then
    ready = max(pc.src.ready for pc in pieces)
    for pc in pieces:
        shift = pc.src_row - pc.out_row
        cuts = {pc.out_row, pc.out_row + pc.rows}
        cuts |= {b for p in out.parts for b in (p.row0, p.row0 + p.rows)}
        cuts |= {b - shift for p in pc.src.parts for b in (p.row0, p.row0 + p.rows)}
        cuts = sorted(c for c in cuts if pc.out_row <= c <= pc.out_row + pc.rows)
        reach = max(ctx.hops(s, "VXM") for p in pc.src.parts for s in p.slices)
        for r0, r1 in zip(cuts, cuts[1:], strict=False):
            for j in range(pc.tiles):
                _, step = place(ctx.res, ctx.builder,
                                lambda t, r0=r0, r1=r1, j=j, pc=pc, shift=shift: _copy_pass(
                                    ctx, node, pc, out, r0 + shift, r0, r1 - r0, j, t),
                                ready + READ_D + reach, node.name)
                last = max(e.cycle + (e.n - 1) * e.d for e in step.emits if e.op == "WRITE")
                done = max(done, last + WRITE_D + 1)
    return done


def _copy_pass(ctx, node: Node, pc: Piece, out: Placed, src_row: int, out_row: int, count: int, j: int,
               t: int) -> Step | None:
    alus = ctx.free_alus(t, t + count + 1, 1)
    if alus is None:
        return None
    step = Step()
    src_part = pc.src.part_of(src_row)
    ref = stream_in(ctx, step, src_part, src_part.address(pc.src_tile + j, src_row), count, t, "VXM")
    if ref is None:
        return None
    part = out.part_of(out_row)
    dst = stream_out(ctx, step, part, part.address(pc.out_tile + j, out_row), count, t + MOV_D, "VXM")
    if dst is None:
        return None
    step.emits.append(Emit(f"VXM.{alus[0]}", t, "MOV", (node.dtype, ref, dst), count))
    return step
