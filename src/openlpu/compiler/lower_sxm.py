"""Lowering of lane moves onto the SXM (switch units at both chip edges).

`swap_pairs` exchanges columns 2i and 2i+1 (the pairs RoPE rotates): a DISTRIBUTE within each superlane,
so it needs no wait for the issue stagger. Internal `permute` nodes (row_max's lane rotations) PERMUTE all
lanes by the map named in their attrs. The pass goes to the switch slice nearer the operand.
"""

from __future__ import annotations

from openlpu.chip.isa import ISA
from openlpu.compiler.graph import Node
from openlpu.compiler.layout import Part, Placed
from openlpu.compiler.place import Emit, Step
from openlpu.compiler.streaming import lower_streaming, stream_in, stream_out

SWAP_PAIRS = "swap_pairs"


def lower_lane_move(ctx, node: Node, args: list[Placed], out: Placed) -> int:
    ctx.builder.program.maps.setdefault(SWAP_PAIRS, tuple(i ^ 1 for i in range(16)))
    return lower_streaming(ctx, node, args, out, _sxm_pass, units=("SXM_W", "SXM_E"))


def _sxm_pass(ctx, node: Node, args: list[Placed], sources: list[Part | None], part: Part, row0: int, tile: int,
              count: int, t: int) -> Step | None:
    chip = ctx.chip
    src = sources[0]
    vxm = chip.position["VXM"]
    unit_slice = "SXM_W" if chip.position[src.slices[0]] < vxm else "SXM_E"
    units = [u for u in range(chip.sxm_units_per_hemisphere)
             if ctx.res.queue(f"{unit_slice}.{u}").free(t, t + count + 1)]
    if not units:
        return None
    step = Step()
    ref = stream_in(ctx, step, src, src.address(tile, row0), count, t, unit_slice)
    if ref is None:
        return None
    mnemonic, map_name = ("PERMUTE", node.attrs["map"]) if node.op == "permute" else ("DISTRIBUTE", SWAP_PAIRS)
    dst = stream_out(ctx, step, part, part.address(tile, row0), count, t + ISA[mnemonic].d_func, unit_slice)
    if dst is None:
        return None
    step.emits.append(Emit(f"{unit_slice}.{units[0]}", t, mnemonic, (node.dtype, map_name, ref, dst), count))
    return step
