"""`compile(graph, chip)`: a tensor graph -> a statically scheduled, verified `Program`.

Ops are lowered in graph order; each template is placed at the first cycle at which its queues, streams
and SRAM ports are free and its inputs are in SRAM (list scheduling in time x space). Tensors live in SRAM
between ops. The result knows where every tensor lives, so `run` packs inputs and unpacks outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.builder import Builder
from openlpu.chip.operands import Ref
from openlpu.chip.program import Instr, Program, Tensor
from openlpu.chip.shared import shared
from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.compiler.alloc import SramAllocator, SramFull
from openlpu.compiler.graph import (
    ELEMENTWISE,
    Graph,
    Node,
    check_input,
    check_writes,
    ones_tile,
    state_value,
    write_position,
)
from openlpu.compiler.internal import anywhere, release
from openlpu.compiler.layout import Part, Placed, declare, halves, row_split, set_value, tiles, unpack
from openlpu.compiler.lower_columns import lower_columns, on_tile_edges
from openlpu.compiler.lower_conv import lower_conv2d, lower_max_pool2d
from openlpu.compiler.lower_copy import lower_copy, pieces_for, row_pieces
from openlpu.compiler.lower_fused import alus_needed, chain_operands, fusable, lower_chain
from openlpu.compiler.lower_gather import lower_gather
from openlpu.compiler.lower_matmul import lower_matmul
from openlpu.compiler.lower_reduce import lower_row_max
from openlpu.compiler.lower_scatter import lower_write_rows
from openlpu.compiler.lower_sxm import lower_lane_move
from openlpu.compiler.lower_vxm import lower_elementwise
from openlpu.compiler.resources import Pipe, Resources
from openlpu.errors import UserError
from openlpu.sim import exact
from openlpu.sim.result import RunResult
from openlpu.sim.verify import verify


@dataclass
class OpSpan:
    """Where an op landed in the schedule: its first issue and the cycle its result is complete."""

    name: str
    op: str
    shape: tuple[int, int]
    dtype: str
    start: int
    end: int


@dataclass
class MatmulStat:
    name: str
    dtype: str
    start: int
    end: int
    macs: int

    def utilisation(self, chip: ChipSpec) -> float:
        per_cycle = chip.peak_int8_ops / chip.clock_hz / 2
        if self.dtype == "fp16":
            per_cycle /= 4
        return self.macs / (max(1, self.end - self.start) * per_cycle)


class Ctx:
    """What the lowerings share: the chip, the program being built, reservations and SRAM."""

    def __init__(self, chip: ChipSpec):
        self.chip = chip
        self.builder = Builder(chip)
        self.res = Resources()
        self.alloc = SramAllocator(chip)
        self.matmuls: list[MatmulStat] = []
        self.planes: dict[int, tuple[int, int]] = {}  # MXM plane -> (its last IW, end of its last ACCs)
        self.matmul_turn = 0  # which unit takes the first N tile of the next matmul
        self._constants = 0
        self._zeros: dict[int, Part] = {}
        self.clean_bounds: dict[tuple[int, str], list[Placed]] = {}  # (cols, dtype) -> clean's [hi, lo]
        self.weight_tiles: dict[tuple, tuple] = {}  # (hemisphere, byte plane, tile bytes) -> where it is
        mem = [s for s in chip.floorplan if s.startswith("MEM")]
        self.hemisphere = {"MXM_W": [s for s in mem if s.startswith("MEM_W")],
                           "MXM_E": [s for s in mem if s.startswith("MEM_E")]}

    def hops(self, a: str, b: str) -> int:
        return abs(self.chip.position[a] - self.chip.position[b])

    # ---- SRAM ----
    def groups(self, width: int, slices: list[str] | None = None) -> list[tuple[str, ...]]:
        """Slice groups of `width` neighbouring slices (a multi-byte tensor's byte planes)."""
        slices = slices or [s for s in self.chip.floorplan if s.startswith("MEM")]
        return [tuple(slices[i:i + width]) for i in range(0, len(slices) - width + 1, width)]

    def constant_rows(self, slice_: str, addr: int, rows: np.ndarray) -> None:
        """Constant vectors (weights) baked into the program at slice:addr."""
        name = f"__w{self._constants}"  # graph names may not start with "__"
        self._constants += 1
        self.builder.program.tensors[name] = Tensor(name, "int8", len(rows), (slice_,), addr)
        self.builder.program.values[name] = shared(rows)  # masks and folds recur in every layer's program

    def place_tensor(self, node: Node, avoid: tuple[Placed, ...] = (), not_before: int | None = None,
                     whole: bool = False) -> Placed:
        """SRAM for a tensor: its rows in halves (one per hemisphere, layout.halves), each half in
        parts that fit one bank; `whole` keeps all rows in one part (a gather table, a state). A part keeps away from
        the slices that the same rows of an op's inputs `avoid` stream from (one queue per slice cannot stream
        a READ and a WRITE at once)."""
        width = nx.width(node.dtype)
        n_tiles = tiles(node.cols, self.chip.lanes)
        per_part = self.chip.bank_size // n_tiles
        if per_part < 1:
            raise UserError(f"tensor {node.name} has {node.cols:,} columns: at most "
                            f"{self.chip.bank_size * self.chip.lanes:,} fit one bank of a slice on {self.chip.name}.")
        if whole and node.rows > per_part:
            kind = "state" if node.op == "state" else "gather table"
            raise UserError(f"{kind} {node.name}{list(node.shape)} needs {node.rows * n_tiles:,} vectors in one "
                            f"slice group, more than a bank's {self.chip.bank_size:,} on {self.chip.name}: split it "
                            f"into row ranges of at most {per_part:,} rows.")
        # an op's output may reuse a dead tensor's SRAM once the op's inputs are ready (see SramAllocator)
        if not_before is None:
            not_before = max((p.ready for p in avoid), default=None)
        placed_parts = []
        pending = [(h0 + row0, rows) for h0, hrows in ([(0, node.rows)] if whole else halves(node.rows))
                   for row0, rows in row_split(hrows, 1 if whole else -(-hrows // per_part))]
        while pending:
            row0, rows = pending.pop(0)
            busy = {s for p in avoid for part in p.parts if part.row0 < row0 + rows and row0 < part.row0 + part.rows
                    for s in part.slices}
            candidates = [g for g in self.groups(width) if not busy & set(g)]
            if not candidates:
                raise UserError(f"tensor {node.name} has no slices apart from its inputs' on {self.chip.name}.")
            # a tensor's parts are read at once (by the two hemispheres' planes, say): apart if possible
            taken = {s for p in placed_parts for s in p.slices}
            apart = [g for g in candidates if not taken & set(g)]
            spot = ((apart and self.alloc.find(apart, n_tiles * rows, not_before))
                    or self.alloc.find(candidates, n_tiles * rows, not_before))
            if spot is None and rows > 1 and not whole:  # no run holds the part: halve it, as free SRAM is in pieces
                pending[:0] = [(row0 + r, n) for r, n in row_split(rows, 2)]
                continue
            if spot is None:
                self.alloc.no_room(candidates, n_tiles * rows, f"tensor {node.name}")
            slices, bank, addr = spot
            placed_parts.append(Part(slices, bank, addr, row0, rows))
        return Placed(node, n_tiles, placed_parts)

    # ---- units and streams ----
    def free_alus(self, start: int, end: int, count: int) -> list[int] | None:
        free = [k for k in range(self.chip.vxm_alus_per_lane) if self.res.queue(f"VXM.{k}").free(start, end)]
        return free[:count] if len(free) >= count else None

    def free_stream(self, step, direction: str, spans: list[tuple[int, int, int, int]]) -> Ref | None:
        """The first aligned group of len(spans) streams whose pipes (p, q, w0, w1), one per stream, are free
        of claimed pipes and of the step's own; the pipes are added to the step."""
        width = len(spans)
        for base in range(0, self.chip.streams_per_direction - width + 1, width):
            pipes = [Pipe.make(direction, base + i, p, q, w0, w1) for i, (p, q, w0, w1) in enumerate(spans)]
            if all(self.res.stream_free(pp) and not any(pp.conflicts(o) for o in step.pipes if o.stream == pp.stream
                                                         and o.direction == direction) for pp in pipes):
                step.pipes.extend(pipes)
                return Ref(direction, base)
        return None

    def zero_block(self, dtype: str) -> Part:
        """`lanes` zero vectors per byte plane (one slice group), allocated once per dtype width."""
        width = nx.width(dtype)
        part = self._zeros.get(width)
        if part is None:
            slices, bank, addr = self.alloc.alloc_anywhere(self.groups(width), self.chip.lanes, "a block of zeros")
            part = self._zeros[width] = Part(slices, bank, addr, 0, self.chip.lanes)
            name = f"__zeros{width}"
            self.builder.program.tensors[name] = Tensor(name, dtype, self.chip.lanes, slices, addr)
        return part

    def record_matmul(self, node: Node, dtype: str, start: int, end: int, macs: int) -> None:
        self.matmuls.append(MatmulStat(node.name, dtype, start, end, macs))


@dataclass
class Compiled:
    graph: Graph
    program: Program
    placed: dict[str, Placed]  # graph inputs and outputs by name
    cycles_scheduled: int
    matmuls: list[MatmulStat] = field(default_factory=list)
    ops: list[OpSpan] = field(default_factory=list)
    sram_bytes: int = 0  # SRAM the program ever uses (weights, constants, and activations' reused space)
    states: dict[str, Placed] = field(default_factory=dict)  # state tensors (pinned: their regions) by name
    # the state tensors' SRAM contents between runs (by name; zeros before the first write)
    state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def chip(self) -> ChipSpec:
        return self.program.chip

    def run(self, inputs: dict[str, np.ndarray], executor: str = "exact",
            state: dict[str, np.ndarray] | None = None) -> RunResult:
        """Run on the chosen executor; `result.outputs` holds the graph's outputs by name.

        State tensors keep their SRAM from one run to the next, as the chip's SRAM does between program
        invocations: nothing reloads them. The simulator builds a fresh ChipState per run, so their final
        contents are read back into `state` (`self.state` by default) and loaded into the next run's SRAM,
        at the same addresses; no other tensor of the program ever takes those addresses. A pinned state's
        value is its whole region [region rows, cols], the same array for every program pinned alike."""
        state = self.state if state is None else state
        for node in self.graph.nodes:
            if node.op == "input":
                set_value(self.program, self.placed[node.name], check_input(node, inputs))
            elif node.op == "state":
                region = self.states[node.name]
                set_value(self.program, region, state_value(region.node, state))
            elif node.op == "write_rows":
                write_position(node, inputs)  # the chip would write out of the state's rows: refuse it here
        if executor == "exact":
            result = exact.run(self.program, check=False)
        elif executor == "fast":
            from openlpu.sim import fast

            result = fast.run(self.program, check=False)
        else:
            raise UserError(f"unknown executor {executor!r}: use exact or fast.")
        lanes = self.chip.lanes
        outs = {}
        for name in self.graph.outputs:
            placed = self.placed[name]
            outs[name] = unpack([result.outputs[n] for n in placed.names], placed, lanes)
        for name, placed in self.states.items():
            state[name] = unpack([result.outputs[n] for n in placed.names], placed, lanes)
        result.outputs = outs
        return result


def compile(graph: Graph, chip: ChipSpec | str = "tsp-v1", check: bool = True,  # noqa: A001
            states: dict[str, Part] | None = None) -> Compiled:
    """Lower, allocate and schedule `graph` for `chip`. With `check`, the static verifier replays the whole
    schedule vector by vector (seconds for programs of millions of vector instructions). `states` pins every
    state tensor to its region from `pin_states`, held before anything else is placed."""
    chip = get_chip(chip)
    if not graph.outputs:
        raise UserError("the graph has no outputs: mark at least one with g.output(name, tensor).")
    check_writes(graph)
    ctx = Ctx(chip)
    regions = _regions(ctx, graph, states) if states is not None else {}
    placed: dict[Node, Placed] = {}
    outputs = {node: name for name, node in graph.outputs.items()}
    program = ctx.builder.program
    spans: list[OpSpan] = []
    consumers = graph.consumers()
    uses: dict[int, int] = {}  # id(Placed) -> consumers not yet lowered
    kept = set()  # id(Placed) of outputs: their SRAM is never handed back
    chains = _chains(graph, consumers, outputs, chip.vxm_alus_per_lane)
    fused = {m for chain in chains.values() for m in chain[:-1]}  # lowered with their chain's last op
    # writes into state go last: each lands after every reader of its state, which must all be lowered
    order = [n for n in graph.nodes if n.op != "write_rows"] + [n for n in graph.nodes if n.op == "write_rows"]
    for node in order:
        if node in fused:
            continue
        before = {q: len(instrs) for q, instrs in program.queues.items()}
        table = any(u.op == "gather" and u.inputs[0] is node for u in consumers[node])
        if node.op == "input":
            p = placed[node] = ctx.place_tensor(node, whole=table)
            declare(program, p)
        elif node.op == "state":  # fresh SRAM in one slice group (rows addressed at run time), never handed back
            if node.name in regions:  # the first rows of its region, tiles a region's rows apart
                r = regions[node.name].parts[0]
                p = placed[node] = Placed(node, regions[node.name].tiles, [Part(r.slices, r.bank, r.addr, 0,
                                                                                 node.rows, r.rows)])
            else:
                p = placed[node] = regions[node.name] = ctx.place_tensor(node, whole=True)
            declare(program, regions[node.name], output=True)
            kept.add(id(p))
        elif node.op == "write_rows":
            state = placed[node.inputs[0]]
            done = lower_write_rows(ctx, node, state, placed[node.inputs[1]], placed[node.inputs[2]])
            placed[node] = Placed(node, state.tiles, state.parts, done)
        elif node.op == "constant":
            if consumers[node] and all(u.op in ("matmul", "conv2d") and u.inputs[1] is node for u in consumers[node]):
                continue  # weights only: striped over the weight slices by each matmul itself
            p = placed[node] = ctx.place_tensor(node, whole=table)
            value = node.value
            if node.shape == (1, 1):  # a scalar fills a whole vector, so any lane of a latch holds it
                value = np.full((1, chip.lanes), node.value.reshape(-1)[0], dtype=node.value.dtype)
                p.tiles = 1
            declare(program, p)
            set_value(program, p, value)
        elif node.op == "matmul":
            a = placed[node.inputs[0]]
            b = node.inputs[1]
            if b.op != "constant":
                raise UserError(f"matmul {node.name}: {b.name} is computed, and computed weights must be rows: "
                                f"use g.matmul_nt(a, b_transposed) (a . b^T, the MXM's native form).")
            out = placed[node] = ctx.place_tensor(node, avoid=anywhere(a))  # reads later rows as it writes earlier ones
            out.ready = lower_matmul(ctx, node, a, b.value, out)
        elif node.op == "row_sum":
            a = placed[node.inputs[0]]
            out = placed[node] = ctx.place_tensor(node, avoid=anywhere(a))
            out.ready = lower_matmul(ctx, node, a, ones_tile(node.inputs[0], chip.lanes), out)
        elif node.op == "matmul_nt":
            a, b = placed[node.inputs[0]], placed[node.inputs[1]]
            out = placed[node] = ctx.place_tensor(node, avoid=anywhere(a, b))
            out.ready = lower_matmul(ctx, node, a, b, out)
        elif node.op == "clean":
            placed[node] = _clean(ctx, node, placed[node.inputs[0]])
        elif node.op in ("slice", "concat") and not on_tile_edges(node, chip.lanes):
            placed[node] = lower_columns(ctx, node, [placed[i] for i in node.inputs])
        elif node.op in ("slice", "concat"):
            args = [placed[i] for i in node.inputs]
            out = placed[node] = ctx.place_tensor(node, avoid=anywhere(*args))  # rows move
            out.ready = lower_copy(ctx, node, pieces_for(node, args, chip.lanes), out)
        elif node.op == "conv2d":
            placed[node] = lower_conv2d(ctx, node, placed[node.inputs[0]], node.inputs[1].value)
        elif node.op == "max_pool2d":
            placed[node] = lower_max_pool2d(ctx, node, placed[node.inputs[0]])
        elif node.op == "row_max":
            placed[node] = lower_row_max(ctx, node, placed[node.inputs[0]])
        elif node.op == "gather":
            placed[node] = lower_gather(ctx, node, placed[node.inputs[0]], placed[node.inputs[1]])
        elif node.op == "take_rows":
            a = placed[node.inputs[0]]
            out = placed[node] = ctx.place_tensor(node, avoid=anywhere(a))
            out.ready = lower_copy(ctx, node, row_pieces(a, node.attrs["rows"]), out)
        elif node.op == "swap_pairs":
            a = placed[node.inputs[0]]
            out = placed[node] = ctx.place_tensor(node, avoid=(a,))
            out.ready = lower_lane_move(ctx, node, [a], out)
        elif node in chains:
            chain = chains[node]
            args = [placed[i] for i in chain_operands(chain)[0]]
            streamed = tuple(a for a in args if a.node.rows == node.rows)  # rows and scalars are latched first
            out = placed[node] = ctx.place_tensor(node, avoid=streamed)
            out.ready = lower_chain(ctx, chain, args, out)
            for member in chain[:-1]:
                _release(ctx, member, placed, uses, kept, out.ready)
        elif node.op in ELEMENTWISE:
            args = [placed[i] for i in node.inputs]
            out = placed[node] = ctx.place_tensor(node, avoid=tuple(args))
            out.ready = lower_elementwise(ctx, node, args, out)
        else:
            raise UserError(f"op {node.op!r} ({node.name}) is not lowered to the chip yet.")
        if node in placed:
            mine = placed[node]
            uses[id(mine)] = uses.get(id(mine), 0) + len(set(consumers[node]))  # x * x reads x once
            if node in outputs:
                kept.add(id(mine))
            _release(ctx, node, placed, uses, kept)
        new = [i.cycle for q, instrs in program.queues.items() for i in instrs[before.get(q, 0):]]
        if new:  # a chain's ops share its pass
            spans += [OpSpan(n.name, n.op, n.shape, n.dtype, min(new), placed[node].ready)
                      for n in chains.get(node, [node])]
        if node in outputs:
            declare(program, placed[node], output=True)
    program = ctx.builder.build()
    _insert_ifetch(program)
    # the instructions are fetched from SRAM too (IFETCH): they and the tensors must fit together
    data, code = ctx.alloc.footprint_bytes(), program.instructions() * chip.instruction_bytes
    if data + code > chip.sram_bytes:
        raise SramFull(f"the program's tensors ({data / 2**20:,.2f} MiB) and its {program.instructions():,} "
                       f"instructions ({code / 2**20:,.2f} MiB) exceed {chip.name}'s {chip.sram_bytes / 2**20:,.2f} "
                       "MiB of SRAM: split the graph into smaller programs.")
    if check:
        verify(program)
    by_name = {n.name: p for n, p in placed.items() if n.op == "input"}
    by_name.update({name: placed[n] for name, n in graph.outputs.items()})
    end = max((i.cycle for q in program.queues.values() for i in q), default=0)
    return Compiled(graph, program, by_name, end, ctx.matmuls, spans, data, regions)


def pin_states(graph: Graph, chip: ChipSpec | str, rows: int) -> dict[str, Part]:
    """A region per state tensor of `graph` with room for `rows` rows, each where a program would place it:
    given to `compile(..., states=)`, every program of a model with at most `rows` rows of state (any cache
    bucket) finds its state at the same addresses, so SRAM carries it from one program to the next."""
    ctx = Ctx(get_chip(chip))
    return {n.name: ctx.place_tensor(_region(n, rows), whole=True).parts[0] for n in graph.nodes if n.op == "state"}


def _region(state: Node, rows: int) -> Node:
    """The tensor a pinned state's region holds: the state with room for `rows` rows."""
    return Node("state", (), (rows, state.cols), state.dtype, state.name)


def _regions(ctx: Ctx, graph: Graph, states: dict[str, Part]) -> dict[str, Placed]:
    """The pinned states' regions, held in the allocator for good; every state of the graph must have one."""
    out = {}
    for n in graph.nodes:
        if n.op != "state":
            continue
        part = states.get(n.name)
        if part is None or part.rows < n.rows or len(part.slices) != nx.width(n.dtype):
            have = "no region" if part is None else f"a region of {part.rows} rows in {len(part.slices)} slice(s)"
            raise UserError(f"state {n.name}{list(n.shape)}:{n.dtype} has {have}: pin the states for the largest "
                            f"program with pin_states(graph, chip, rows).")
        region = Placed(_region(n, part.rows), tiles(n.cols, ctx.chip.lanes), [part])
        ctx.alloc.take(part.slices, part.bank, part.addr, region.tiles * part.rows)
        out[n.name] = region
    return out


def _chains(graph: Graph, consumers: dict[Node, list[Node]], outputs, alus: int) -> dict[Node, list[Node]]:
    """Elementwise chains to run as one VXM pass (lower_fused.py), by their last op: each op but the last has
    the next as its only consumer and is no output. A chain takes at most half the ALUs of a lane, so two
    passes can overlap."""
    chains: dict[Node, list[Node]] = {}
    for n in graph.nodes:
        if n.op not in ELEMENTWISE:
            continue
        prev = next((m for m in n.inputs if m.op in ELEMENTWISE and consumers[m] == [n] and m not in outputs
                     and fusable(n, m)), None)
        if prev is not None and alus_needed([*chains.get(prev, [prev]), n]) <= alus // 2:
            chains[n] = chains.pop(prev, [prev]) + [n]
    return chains


def _release(ctx: Ctx, node: Node, placed: dict[Node, Placed], uses: dict[int, int], kept: set[int],
             done: int | None = None) -> None:
    """After `node`'s op is lowered (at `done`, or when its result is ready), give back the SRAM of inputs it
    was the last to read."""
    done = placed[node].ready if done is None else done
    for i in dict.fromkeys(node.inputs):
        p = placed.get(i)
        if p is None:  # weights striped by the matmul itself stay resident
            continue
        p.last_read = max(p.last_read, done)
        uses[id(p)] -= 1
        if uses[id(p)] == 0 and id(p) not in kept and p is not placed.get(node):
            for part in p.parts:
                ctx.alloc.free(part.slices, part.bank, part.addr, p.tiles * part.rows, p.last_read)


def _clean(ctx: Ctx, node: Node, a: Placed) -> Placed:
    """Zero the padding lanes of a partial last tile: max(min(x, hi), lo) with hi = +inf and lo = -inf in the
    real columns and 0 in the padding (the zero padding of a packed constant does that), which leaves every
    real value as it is and every padding value, finite or infinite, at 0."""
    if node.cols % ctx.chip.lanes == 0:
        return a
    key = (node.cols, node.dtype)
    if key not in ctx.clean_bounds:  # one pair per shape, shared by every clean of it
        bounds = []
        for sign in (1, -1):
            bound = Node("constant", (), (1, node.cols), node.dtype, f"{node.name}.{'hi' if sign > 0 else 'lo'}")
            p = ctx.place_tensor(bound)
            declare(ctx.builder.program, p)
            set_value(ctx.builder.program, p, np.full((1, node.cols), sign * np.inf, dtype=nx.DTYPES[node.dtype]))
            bounds.append(p)
        ctx.clean_bounds[key] = bounds
    bounds = ctx.clean_bounds[key]
    low = Node("min", (a.node, bounds[0].node), node.shape, node.dtype, f"{node.name}.min")
    lowered = ctx.place_tensor(low, avoid=(a,))
    lowered.ready = lower_elementwise(ctx, low, [a, bounds[0]], lowered)
    out = ctx.place_tensor(node, avoid=(lowered,))
    out.ready = lower_elementwise(ctx, Node("max", (low, bounds[1].node), node.shape, node.dtype, node.name),
                                  [lowered, bounds[1]], out)
    release(ctx, lowered, out.ready)
    return out


def _insert_ifetch(program: Program) -> None:
    """Give every queue longer than its preload IFETCHes in its idle slots, a block ahead of need."""
    chip = program.chip
    per = chip.ifetch_instructions
    for q, instrs in program.queues.items():
        if len(instrs) <= chip.queue_preload:
            continue
        out: list[Instr] = []
        fetched = chip.queue_preload
        for ins in instrs:
            if out and fetched - len(out) <= per:
                prev = out[-1]
                free_at = prev.cycle + prev.occupancy
                if free_at < ins.cycle and ins.op != "REPEAT":
                    out.append(Instr("IFETCH", (), free_at))
                    fetched += per
            out.append(ins)
        program.queues[q] = out
