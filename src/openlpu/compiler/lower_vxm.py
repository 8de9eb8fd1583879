"""Lowering of elementwise ops onto the VXM.

One pass (streaming.py) brings the operands' vectors from SRAM to the VXM, one a cycle; one ALU applies the op
and the results stream on to the output's slices. A broadcast operand (a row [1, cols] or a scalar) is
latched once per column tile into another ALU's output latch and read from there (`aluN`) for every row.
"""

from __future__ import annotations

from openlpu.chip.isa import ISA
from openlpu.chip.operands import Ref
from openlpu.compiler.graph import BINARY, Node
from openlpu.compiler.layout import Part, Placed
from openlpu.compiler.place import Emit, Step
from openlpu.compiler.streaming import lower_streaming, stream_in, stream_out

MOV_D = ISA["MOV"].d_func


def lower_elementwise(ctx, node: Node, args: list[Placed], out: Placed) -> int:
    """Emit the op; returns the cycle at which `out` is complete in SRAM."""
    return lower_streaming(ctx, node, args, out, vxm_pass)


def vxm_pass(ctx, node: Node, args: list[Placed], sources: list[Part | None], part: Part, row0: int, tile: int,
          count: int, t: int) -> Step | None:
    """`count` vectors from (tile, row0) of each operand meet at the VXM from cycle t; results go to `part`."""
    step = Step()
    latches = sum(s is None for s in sources)
    alus = ctx.free_alus(t - MOV_D, t + count + 1, 1 + latches)
    if alus is None:
        return None
    alu = alus.pop()
    refs: list[Ref] = []
    seen: dict[int, Ref] = {}
    for a, src in zip(args, sources, strict=True):
        if id(a) in seen:  # the same tensor twice (x * x): one stream feeds both operands
            refs.append(seen[id(a)])
            continue
        if src is None:  # broadcast: latch this tile's vector in another ALU
            latch = alus.pop()
            b_part = a.parts[0]
            t_mov = t - MOV_D
            ref = stream_in(ctx, step, b_part, b_part.address(0 if a.node.cols == 1 else tile, 0), 1, t_mov, "VXM")
            if ref is None:
                return None
            step.emits.append(Emit(f"VXM.{latch}", t_mov, "MOV", (a.node.dtype, ref, None)))
            # nothing else may run on that ALU until the pass's last read, or the latch changes
            step.emits.append(Emit(f"VXM.{latch}", t_mov + 1, "NOP", (count + MOV_D,)))
            ref = Ref("alu", latch)
        else:
            column = tile if a.node.cols == node.cols else 0  # a column [rows, 1] serves every tile
            ref = stream_in(ctx, step, src, src.address(column, row0), count, t, "VXM")
            if ref is None:
                return None
        seen[id(a)] = ref
        refs.append(ref)
    d_func = ISA[mnemonic(node)].d_func
    dst = stream_out(ctx, step, part, part.address(tile, row0), count, t + d_func, "VXM")
    if dst is None:
        return None
    step.emits.append(Emit(f"VXM.{alu}", t, mnemonic(node), operands(node, refs, dst), count))
    return step


def mnemonic(node: Node) -> str:
    return "CAST" if node.op == "cast" else node.op.upper()


def operands(node: Node, refs: list[Ref], dst: Ref | None) -> tuple:
    if node.op == "cast":
        return (node.inputs[0].dtype, node.dtype, refs[0], dst)
    if node.op in BINARY:
        return (node.dtype, refs[0], refs[1], dst)
    return (node.dtype, refs[0], dst)
