"""Passes that stream tensors from SRAM through one functional slice and back: the shared plumbing of the
VXM and SXM lowerings.

A pass moves `count` vectors: READs put them on a stream group heading for the unit so that they arrive
from cycle t, one per cycle; the unit writes its results at t + d_func; WRITEs at the output's slices take
them as they pass. Operands that share a slice are first copied apart (one READ per slice per cycle).
"""

from __future__ import annotations

from collections.abc import Callable

from openlpu.chip.isa import ISA
from openlpu.chip.operands import EAST, WEST, Ref
from openlpu.compiler.graph import Node
from openlpu.compiler.internal import release
from openlpu.compiler.layout import Part, Placed, segments
from openlpu.compiler.place import Emit, Step, place
from openlpu.compiler.resources import Port

READ_D = ISA["READ"].d_func
WRITE_D = ISA["WRITE"].d_func
LEAD = ISA["MOV"].d_func  # room before the first operand for a broadcast latch


def direction(ctx, src: str, dst: str) -> str:
    return EAST if ctx.chip.position[src] < ctx.chip.position[dst] else WEST


def stream_in(ctx, step: Step, src: Part, addr: int, count: int, t: int, unit: str) -> Ref | None:
    """READ `count` vectors from `src` at `addr` so they reach `unit` from cycle t, on a free stream group."""
    chip = ctx.chip
    way = direction(ctx, src.slices[0], unit)
    spans = [(chip.position[s], chip.position[unit], t - ctx.hops(s, unit), t - ctx.hops(s, unit) + count - 1)
             for s in src.slices]
    ref = ctx.free_stream(step, way, spans)
    if ref is None:
        return None
    for byte, s in enumerate(src.slices):
        issue = t - READ_D - ctx.hops(s, unit)
        step.emits.append(Emit(s, issue, "READ", (addr, Ref(way, ref.index + byte)), count))
        step.ports.append(Port(s, "r", issue, count, 1, frozenset({src.bank})))
    return ref


def stream_out(ctx, step: Step, part: Part, addr: int, count: int, written: int, unit: str) -> Ref | None:
    """Claim a stream group for results written at `unit` from cycle `written` and WRITE them into `part`."""
    chip = ctx.chip
    way = direction(ctx, unit, part.slices[0])
    spans = [(chip.position[unit], chip.position[s], written, written + count - 1) for s in part.slices]
    dst = ctx.free_stream(step, way, spans)
    if dst is None:
        return None
    for byte, s in enumerate(part.slices):
        issue = written + ctx.hops(unit, s)
        step.emits.append(Emit(s, issue, "WRITE", (addr, Ref(way, dst.index + byte)), count))
        step.ports.append(Port(s, "w", issue + WRITE_D, count, 1, frozenset({part.bank})))
    return dst


# a pass: (ctx, node, args, parts of the args (None: broadcast), output part, row0, tile, count, t) -> Step
PassMaker = Callable[..., Step | None]


def lower_streaming(ctx, node: Node, args: list[Placed], out: Placed, make: PassMaker,
                    units: tuple[str, ...] = ("VXM",)) -> int:
    """Stream the op over every row segment (and tile, where operands broadcast or parts differ) through
    one of `units`; returns the cycle at which `out` is complete in SRAM."""
    given, args = args, _apart(ctx, node, args, out)
    done = 0
    ready = max(a.ready for a in args)
    # no READ may issue before its operand is complete: the farthest operand slice from any unit bounds t
    reach = max(ctx.hops(s, u) for a in args for p in a.parts for s in p.slices for u in units)
    # full-shape operands and columns [rows, 1] stream from SRAM; rows [1, cols] and scalars are latched
    streamed = [a for a in args if a.node.rows == node.rows and node.rows > 1 or a.node.shape == node.shape]
    # a row [1, cols] over several rows, or a column [rows, 1] over several tiles, changes with the tile:
    # one pass per tile; a scalar (or a one-row column) sits in a latch for a single pass
    per_tile = any((a.node.rows == 1 and a.node.cols > 1 and node.rows > 1)
                   or (a.node.cols == 1 and a.node.rows > 1 and node.cols > 1) for a in args)
    for r0, r1 in segments([*streamed, out], 0, node.rows):
        parts = [a.part_of(r0) if a in streamed else None for a in args]
        whole = all(p.row0 == r0 and p.rows == r1 - r0 for p in [*filter(None, parts), out.part_of(r0)])
        passes = [(0, out.tiles * (r1 - r0))] if whole and not per_tile else [(j, r1 - r0) for j in range(out.tiles)]
        for j, count in passes:
            _, step = place(ctx.res, ctx.builder,
                            lambda t, j=j, count=count, parts=parts, r0=r0: make(
                                ctx, node, args, parts, out.part_of(r0), r0, j, count, t),
                            ready + READ_D + reach + LEAD, node.name)
            last_write = max(e.cycle + (e.n - 1) * e.d for e in step.emits if e.op == "WRITE")
            done = max(done, last_write + WRITE_D + 1)
    for a, copy in zip(given, args, strict=True):
        if copy is not a:  # a copy made apart lives only for this op
            release(ctx, copy, done)
    return done


def _apart(ctx, node: Node, args: list[Placed], out: Placed) -> list[Placed]:
    """Copy an operand that shares a slice with an earlier one (through the VXM, as a MOV)."""
    from openlpu.compiler.lower_vxm import vxm_pass

    kept: list[Placed] = []
    for a in args:
        clash = a.node.rows == node.rows and any(
            b is not a and b.node.rows == node.rows
            and any(set(pa.slices) & set(pb.slices) for pa in a.parts for pb in b.parts
                    if pa.row0 < pb.row0 + pb.rows and pb.row0 < pa.row0 + pa.rows)
            for b in kept)
        if clash:
            copy = Node("mov", (a.node,), a.node.shape, a.node.dtype, f"{a.node.name}.copy")
            # away from the other streamed operands and from the output (the pass streams all of them at once;
            # rows and scalars are latched before it)
            streamed = tuple(b for b in args if b.node.rows == node.rows)
            moved = ctx.place_tensor(copy, avoid=(*streamed, out), not_before=a.ready)  # the copy reads only `a`
            moved.ready = lower_streaming(ctx, copy, [a], moved, vxm_pass)
            a = moved
        kept.append(a)
    return kept
