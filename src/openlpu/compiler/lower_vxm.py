"""Lowering of elementwise ops onto the VXM.

One pass streams the operands' vectors from SRAM to the VXM (one vector a cycle), one ALU applies the op,
and the results stream on to the output's slices. A broadcast operand (a row [1, cols] or a scalar) is
latched once per column tile into another ALU's output latch and read from there (`aluN`) for every row.
"""

from __future__ import annotations

from openlpu.chip.isa import ISA
from openlpu.chip.operands import EAST, WEST, Ref
from openlpu.compiler.graph import BINARY, Node
from openlpu.compiler.layout import Part, Placed, segments
from openlpu.compiler.place import Emit, Step, place
from openlpu.compiler.resources import Port

READ_D = ISA["READ"].d_func
WRITE_D = ISA["WRITE"].d_func
MOV_D = ISA["MOV"].d_func


def lower_elementwise(ctx, node: Node, args: list[Placed], out: Placed) -> int:
    """Emit the op; returns the cycle at which `out` is complete in SRAM."""
    args = _apart(ctx, node, args)
    done = 0
    ready = max(a.ready for a in args)
    reach = max(ctx.hops(s, "VXM") for a in args for p in a.parts for s in p.slices)
    full = [a for a in args if a.node.shape == node.shape]
    broadcast = len(full) < len(args)
    for r0, r1 in segments([*full, out], 0, node.rows):
        parts = [a.part_of(r0) if a.node.shape == node.shape else None for a in args]
        whole = all(p.row0 == r0 and p.rows == r1 - r0 for p in [*filter(None, parts), out.part_of(r0)])
        passes = [(0, out.tiles * (r1 - r0))] if whole and not broadcast else [(j, r1 - r0) for j in range(out.tiles)]
        for j, count in passes:
            _, step = place(ctx.res, ctx.builder,
                            lambda t, j=j, count=count, parts=parts, r0=r0: _pass(
                                ctx, node, args, parts, out.part_of(r0), r0, j, count, t),
                            ready + READ_D + reach + MOV_D, node.name)
            last_write = max(e.cycle + (e.n - 1) * e.d for e in step.emits if e.op == "WRITE")
            done = max(done, last_write + WRITE_D + 1)
    return done


def _apart(ctx, node: Node, args: list[Placed]) -> list[Placed]:
    """Operands streamed together must come from different slices (one READ per slice per cycle):
    copy an operand that shares a slice with an earlier one."""
    out: list[Placed] = []
    for a in args:
        clash = a.node.shape == node.shape and any(
            b is not a and b.node.shape == node.shape
            and any(set(pa.slices) & set(pb.slices) for pa, pb in zip(a.parts, b.parts, strict=True))
            for b in out)
        if clash:
            copy = Node("mov", (a.node,), a.node.shape, a.node.dtype, f"{a.node.name}.copy")
            moved = ctx.place_tensor(copy, avoid=tuple(args))
            moved.ready = lower_elementwise(ctx, copy, [a], moved)
            a = moved
        out.append(a)
    return out


def _direction(ctx, src: str, dst: str) -> str:
    return EAST if ctx.chip.position[src] < ctx.chip.position[dst] else WEST


def _pass(ctx, node: Node, args: list[Placed], sources: list[Part | None], part: Part, row0: int, tile: int,
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
            ref = _stream_in(ctx, step, b_part, b_part.address(0 if a.node.cols == 1 else tile, 0), 1, t_mov)
            if ref is None:
                return None
            step.emits.append(Emit(f"VXM.{latch}", t_mov, "MOV", (a.node.dtype, ref, None)))
            # nothing else may run on that ALU until the pass's last read, or the latch changes
            step.emits.append(Emit(f"VXM.{latch}", t_mov + 1, "NOP", (count + MOV_D,)))
            ref = Ref("alu", latch)
        else:
            ref = _stream_in(ctx, step, src, src.address(tile, row0), count, t)
            if ref is None:
                return None
        seen[id(a)] = ref
        refs.append(ref)
    mnemonic = "CAST" if node.op == "cast" else node.op.upper()
    d_func = ISA[mnemonic].d_func
    direction = _direction(ctx, "VXM", part.slices[0])
    vxm = ctx.chip.position["VXM"]
    spans = [(vxm, ctx.chip.position[s], t + d_func, t + d_func + count - 1) for s in part.slices]
    dst = ctx.free_stream(step, direction, spans)
    if dst is None:
        return None
    step.emits.append(Emit(f"VXM.{alu}", t, mnemonic, _operands(node, refs, dst), count))
    for byte, s in enumerate(part.slices):
        issue = t + d_func + ctx.hops("VXM", s)
        step.emits.append(Emit(s, issue, "WRITE", (part.address(tile, row0), Ref(direction, dst.index + byte)),
                               count))
        step.ports.append(Port(s, "w", issue + WRITE_D, count, 1, frozenset({part.bank})))
    return step


def _stream_in(ctx, step: Step, src: Part, addr: int, count: int, t: int) -> Ref | None:
    """READ `count` vectors from `src` so they reach the VXM from cycle t, on a free stream group."""
    chip = ctx.chip
    direction = _direction(ctx, src.slices[0], "VXM")
    spans = [(chip.position[s], chip.position["VXM"], t - ctx.hops(s, "VXM"), t - ctx.hops(s, "VXM") + count - 1)
             for s in src.slices]
    ref = ctx.free_stream(step, direction, spans)
    if ref is None:
        return None
    for byte, s in enumerate(src.slices):
        issue = t - READ_D - ctx.hops(s, "VXM")
        step.emits.append(Emit(s, issue, "READ", (addr, Ref(direction, ref.index + byte)), count))
        step.ports.append(Port(s, "r", issue, count, 1, frozenset({src.bank})))
    return ref


def _operands(node: Node, refs: list[Ref], dst: Ref) -> tuple:
    if node.op == "cast":
        return (node.inputs[0].dtype, node.dtype, refs[0], dst)
    if node.op in BINARY:
        return (node.dtype, refs[0], refs[1], dst)
    return (node.dtype, refs[0], dst)
