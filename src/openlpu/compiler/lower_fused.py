"""Chains of elementwise ops in one VXM pass, through ALU latches (ISCA20: ALUs can be chained in a lane).

A chain n1 -> n2 -> ... -> nk: each later op takes the one before it as an operand, and its other operands
are broadcast rows [1, cols] or scalars. n1's operands stream from SRAM as in a single op; ALU i applies n_i
and leaves its result in its output latch, d_func(n_i) cycles later; ALU i+1 reads that latch in exactly
that cycle, vector after vector (a latch holds each value for one cycle before the next lands); only nk's
results stream back to SRAM. The intermediate tensors never exist: no SRAM, no round trip, no waiting for a
whole tensor before the next op starts. Each latch passes values, not bytes, so a chain gives the bits of
its ops one at a time.
"""

from __future__ import annotations

from openlpu.chip.isa import ISA
from openlpu.chip.operands import Ref
from openlpu.compiler.graph import Node
from openlpu.compiler.layout import Part, Placed
from openlpu.compiler.lower_vxm import mnemonic, operands
from openlpu.compiler.place import Emit, Step
from openlpu.compiler.streaming import READ_D, lower_streaming, stream_in, stream_out

MOV_D = ISA["MOV"].d_func


def fusable(node: Node, prev: Node) -> bool:
    """Can `node` take `prev`'s result from a latch? Its other operands must be latched: rows or scalars. Not
    yet for one-row tensors, whose row operands stream and whose scalars streaming.py copies apart."""
    return node.shape == prev.shape and node.rows > 1 and all(a is prev or a.rows == 1 for a in node.inputs)


def alus_needed(chain: list[Node]) -> int:
    """One ALU per op and one latch per distinct broadcast operand."""
    tail = chain[-1]
    return len(chain) + len({id(a) for a in chain_operands(chain)[0] if a.rows == 1 and a.shape != tail.shape})


def chain_operands(chain: list[Node]) -> tuple[list[Node], list[list[int]]]:
    """The chain's operands (chain[0]'s, then the later ops' others, in order) and, per op, the index of each
    of its operands among them (-1: the previous op's latch)."""
    nodes: list[Node] = list(chain[0].inputs)
    slots = [list(range(len(nodes)))]
    for k, n in enumerate(chain[1:], 1):
        mine = []
        for a in n.inputs:
            if a is chain[k - 1]:
                mine.append(-1)
            else:
                mine.append(len(nodes))
                nodes.append(a)
        slots.append(mine)
    return nodes, slots


def lower_chain(ctx, chain: list[Node], args: list[Placed], out: Placed) -> int:
    """`args`: the placed chain_operands(chain)."""
    tail = chain[-1]
    _, slots = chain_operands(chain)
    fused = Node("fused", tuple(a.node for a in args), tail.shape, tail.dtype, tail.name,
                 {"chain": chain, "slots": slots})
    return lower_streaming(ctx, fused, args, out, _chain_pass)


def _chain_pass(ctx, node: Node, args: list[Placed], sources: list[Part | None], part: Part, row0: int, tile: int,
                count: int, t: int) -> Step | None:
    chain: list[Node] = node.attrs["chain"]
    starts = [t]
    for n in chain[:-1]:
        starts.append(starts[-1] + ISA[mnemonic(n)].d_func)
    end = starts[-1] + count + ISA[mnemonic(chain[-1])].d_func + 1
    latches = len({id(a) for a, s in zip(args, sources, strict=True) if s is None})
    first_load = t - MOV_D - 2 * (latches - 1)  # broadcasts are latched one by one before the chain starts
    alus = ctx.free_alus(first_load, end, len(chain) + latches)
    if alus is None:
        return None
    slots: list[list[int]] = node.attrs["slots"]
    step = Step()
    refs: list[Ref] = []
    seen: dict[int, Ref] = {}
    for a, src in zip(args, sources, strict=True):
        if id(a) in seen:
            refs.append(seen[id(a)])
            continue
        if src is None:  # broadcast: latched in its own ALU before the chain starts, held to the end
            latch = alus.pop()
            t_mov = first_load + 2 * len([r for r in seen.values() if r.kind == "alu"])
            if t_mov - READ_D - max(ctx.hops(s, "VXM") for s in a.parts[0].slices) < a.ready:
                return None  # a computed row not in SRAM yet
            ref = stream_in(ctx, step, a.parts[0], a.parts[0].address(0 if a.node.cols == 1 else tile, 0), 1, t_mov,
                            "VXM")
            if ref is None:
                return None
            step.emits.append(Emit(f"VXM.{latch}", t_mov, "MOV", (a.node.dtype, ref, None)))
            step.emits.append(Emit(f"VXM.{latch}", t_mov + 1, "NOP", (end - t_mov - 1,)))
            ref = Ref("alu", latch)
        else:
            column = tile if a.node.cols == node.cols else 0
            ref = stream_in(ctx, step, src, src.address(column, row0), count, t, "VXM")
            if ref is None:
                return None
        seen[id(a)] = ref
        refs.append(ref)
    prev_ref = None
    for k, n in enumerate(chain):
        ins = [prev_ref if i < 0 else refs[i] for i in slots[k]]
        dst = None
        if k == len(chain) - 1:
            dst = stream_out(ctx, step, part, part.address(tile, row0), count, starts[k] + ISA[mnemonic(n)].d_func,
                             "VXM")
            if dst is None:
                return None
        alu = alus.pop()
        step.emits.append(Emit(f"VXM.{alu}", starts[k], mnemonic(n), operands(n, ins, dst), count))
        prev_ref = Ref("alu", alu)
    return step
