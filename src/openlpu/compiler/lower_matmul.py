"""Lowering of matmul onto the MXM planes.

[M, K] x [K, N] is cut into 320x320 weight tiles (kt, nt). A *unit* is one plane (int8) or one plane pair
(fp16: two byte-planes in tandem). Rows of the activation are split between the two hemispheres when it has
two row halves (layout.halves; each hemisphere's units then hold their own copy of the weights);
the N tiles are dealt round-robin to the units that share a row part, and each unit walks its tiles
K-innermost, accumulating into one accumulator slot per row and emitting on the last K tile.

Per tile: LW streams the 320 weight rows from `weight_streams(chip)` slices (10 on tsp-v1: 32 cycles) into
the weight buffer, IW installs it (20 cycles; issued so the previous tile's last ACC still sees the old
weights), and ACC multiplies every row of the activation tile, which streams in from SRAM, one vector a
cycle (two for fp16). Weight loading overlaps the previous tile's ACCs (double buffering).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlpu.chip import numerics as nx
from openlpu.chip.isa import ISA
from openlpu.chip.operands import EAST, WEST, Ref
from openlpu.compiler.layout import Part, Placed, halves, row_split, segments
from openlpu.compiler.place import Emit, Step, place
from openlpu.compiler.resources import Pipe, Port
from openlpu.errors import UserError

READ_D = ISA["READ"].d_func
WRITE_D = ISA["WRITE"].d_func
ACC_D = ISA["ACC"].d_func
IW_D = ISA["IW"].d_func


def weight_streams(chip, dtype: str) -> int:
    """Streams (and slices) that feed one plane's weights: the largest divisor of the lanes that leaves, of
    the plane's half of the streams, two for activations and four for results (10 on tsp-v1). The other
    hemisphere's results flow the opposite way on the last four, so they never cross these weights.
    fp16 needs two such slice groups in the hemisphere, one per byte plane."""
    limit = min(chip.streams_per_direction // 2 - 6, chip.mem_slices_per_hemisphere // (2 if dtype == "fp16" else 1))
    return max(d for d in range(1, limit + 1) if chip.lanes % d == 0)


@dataclass
class Unit:
    plane: int  # int8: the plane; fp16: the even plane of the pair
    mxm: str
    inward: str  # direction of streams flowing into the plane
    outward: str
    weight_stream: tuple[int, ...]  # first stream of each byte plane's weight rows
    act_stream: int
    out_stream: int
    row0: int  # the activation rows it multiplies: [row0, row1); accumulator slot = row - row0
    row1: int
    ntiles: list[int]


def units_for(ctx, dtype: str, a: Placed) -> list[tuple[int, str]]:
    """(plane, hemisphere) of every unit that can work, in the order units take N tiles."""
    chip = ctx.chip
    planes = range(chip.mxm_planes) if dtype == "int8" else range(0, chip.mxm_planes, 2)
    return [(p, chip.plane_slice(p)) for p in planes]


def lower_matmul(ctx, node, a: Placed, b: np.ndarray | Placed, out: Placed) -> int:
    """Emit the matmul; returns the cycle at which `out` is complete in SRAM.

    `b` is either constant weights [K, N], striped over many slices at compile time, or a computed tensor
    [N, K] in SRAM (matmul_nt: a . b^T), whose rows are the weight rows, loaded one a cycle."""
    chip = ctx.chip
    lanes = chip.lanes
    dtype = node.inputs[0].dtype
    occ = 2 if dtype == "fp16" else 1
    computed = isinstance(b, Placed)
    k_dim, n_dim = (b.node.cols, b.node.rows) if computed else b.shape
    kt_count, nt_count = -(-k_dim // lanes), -(-n_dim // lanes)
    hemispheres = {"MXM_W": 0, "MXM_E": 1}
    all_units = units_for(ctx, dtype, a)
    streams = weight_streams(chip, dtype)
    half = chip.streams_per_direction // 2

    units: list[Unit] = []
    split = halves(a.node.rows)
    for k, (row0, rows) in enumerate(split):
        if rows > chip.mxm_acc_slots:
            raise UserError(f"matmul {node.name}: {rows:,} rows per hemisphere exceed the {chip.mxm_acc_slots:,} "
                            f"accumulator slots of a plane; split the rows into several matmuls.")
        mine = [(p, h) for p, h in all_units if len(split) == 1 or hemispheres[h] == k]
        # deal N tiles from a different unit each matmul, so small matmuls spread over both hemispheres' SRAM
        turn = ctx.matmul_turn % len(mine)
        mine = mine[turn:] + mine[:turn]
        ctx.matmul_turn += 1
        # fewer N tiles than units: the units that would idle take a share of the rows instead
        groups = max(1, min(len(mine) // nt_count, rows))
        if groups > 1:  # units that share an N tile (consecutive ones) share a hemisphere, so its SRAM holds the
            # tile once: split across hemispheres, a prefill step's o and down weights took SRAM twice
            mine = sorted(mine, key=lambda u, first=mine[0][1]: u[1] != first)
        row_groups = row_split(rows, groups)
        for i, (plane, mxm) in enumerate(mine[:groups * min(nt_count, len(mine))]):
            west = mxm == "MXM_W"
            local = plane % 2 if dtype == "int8" else 0
            base = half * local
            weight = (base,) if dtype == "int8" else (0, half)
            sub0, subrows = row_groups[i % groups]
            dealt = len(mine) // groups
            units.append(Unit(plane, mxm, WEST if west else EAST, EAST if west else WEST, weight,
                              base + streams + streams % 2, base + half - 4, row0 + sub0, row0 + sub0 + subrows,
                              list(range(i // groups, nt_count, dealt))))

    if computed:
        streams = 1
    rows_per_slice = lanes // streams
    # per plane, across matmuls: (cycle its last IW read the weight buffer, end of its last ACCs). A plane's
    # buffer, weights and accumulators belong to one matmul at a time, so the next one follows on from here.
    state = ctx.planes
    done = 0
    first = None
    for tile_index in range(max(len(u.ntiles) for u in units) * kt_count):
        for u in units:
            if tile_index >= len(u.ntiles) * kt_count:
                continue
            nt, kt = u.ntiles[tile_index // kt_count], tile_index % kt_count
            planes = (u.plane,) if dtype == "int8" else (u.plane, u.plane + 1)
            prev_iw = max(state.get(p, (0, 0))[0] for p in planes)
            prev_end = max(state.get(p, (0, 0))[1] for p in planes)
            if computed:
                runs = _computed_weights(ctx, b, kt, nt)
                ready = b.ready + READ_D + max(ctx.hops(s, u.mxm) for p in b.parts for s in p.slices)
                lw, _ = place(ctx.res, ctx.builder, lambda t, r=runs, u=u: _lw_runs_step(ctx, u, r, t),
                              max(prev_iw, ready), f"{node.name} weights")
            else:
                groups = _place_weights(ctx, node, u, dtype, a, b, out, kt, nt, streams)
                lw, _ = place(ctx.res, ctx.builder, lambda t, g=groups, u=u: _lw_step(ctx, u, g, t, streams),
                              prev_iw, f"{node.name} weights")
            iw, _ = place(ctx.res, ctx.builder,
                          lambda t, u=u: Step([Emit(f"MXM{u.plane}.w", t, "IW", (dtype,))]),
                          max(lw + rows_per_slice, prev_end - IW_D), f"{node.name} install")
            act_ready = a.ready + READ_D + max(ctx.hops(s, u.mxm) for p in a.parts for s in p.slices)
            start, step = place(
                ctx.res, ctx.builder,
                lambda t, u=u, kt=kt, nt=nt: _acc_step(ctx, u, dtype, a, out, kt, nt, kt_count, occ, t),
                max(iw + IW_D, prev_end, act_ready), f"{node.name} multiply")
            first = start if first is None else min(first, start)
            end = start + occ * (u.row1 - u.row0)
            for p in planes:
                state[p] = (iw, end)
            if kt == kt_count - 1:
                done = max(done, max(e.cycle + (e.n - 1) * e.d for e in step.emits if e.op == "WRITE") + WRITE_D + 1)
    ctx.record_matmul(node, dtype, first or 0, done, a.node.rows * k_dim * n_dim)
    return done


def _computed_weights(ctx, b: Placed, kt: int, nt: int) -> list[tuple[int, Part, int, int]]:
    """READ runs that bring weight rows nt*lanes.. of tile kt, one a cycle: (first row offset, part,
    address, rows); rows past b's last come from a zero block, so no stale row stays in the buffer."""
    lanes = ctx.chip.lanes
    n0, n1 = nt * lanes, min((nt + 1) * lanes, b.node.rows)
    runs = [(r0 - n0, b.part_of(r0), b.part_of(r0).address(kt, r0), r1 - r0) for r0, r1 in segments([b], n0, n1)]
    if n1 - n0 < lanes:
        zeros = ctx.zero_block(b.node.dtype)
        runs.append((n1 - n0, zeros, zeros.addr, lanes - (n1 - n0)))
    return runs


def _lw_runs_step(ctx, u: Unit, runs, t: int) -> Step:
    """LW one row a cycle for `lanes` cycles on each byte plane's plane, fed by READ runs from SRAM."""
    chip = ctx.chip
    step = Step()
    mxm_pos = chip.position[u.mxm]
    for byte, s0 in enumerate(u.weight_stream):
        step.emits.append(Emit(f"MXM{u.plane + byte}.w", t, "LW", (Ref(u.inward, s0), 1, 0), chip.lanes))
        for offset, part, addr, rows in runs:
            s = part.slices[byte]
            h = ctx.hops(s, u.mxm)
            issue = t + offset - READ_D - h
            step.emits.append(Emit(s, issue, "READ", (addr, Ref(u.inward, s0)), rows))
            step.ports.append(Port(s, "r", issue, rows, 1, frozenset({part.bank})))
            w0 = t + offset - h
            step.pipes.append(Pipe.make(u.inward, s0, chip.position[s], mxm_pos, w0, w0 + rows - 1))
    return step


def _place_weights(ctx, node, u: Unit, dtype: str, a: Placed, b: np.ndarray, out: Placed, kt: int, nt: int,
                   streams: int):
    """SRAM for weight tile (kt, nt) of this unit: per byte plane, `streams` slices of lanes / streams rows
    (row n of the installed tile, i.e. output column n, in slice n % streams)."""
    lanes = ctx.chip.lanes
    rows_per_slice = lanes // streams
    tile = np.zeros((lanes, lanes), dtype=nx.DTYPES[dtype])  # [n, k]: the tile as IW installs it
    block = b[kt * lanes:(kt + 1) * lanes, nt * lanes:(nt + 1) * lanes]
    tile[:block.shape[1], :block.shape[0]] = block.T
    planes = nx.to_planes(tile, dtype)  # byte planes, low first
    groups = []
    # weights stream while the activations and results do: keep them in other slices (one queue per slice),
    # and the byte planes of one tile, read in the same cycles, apart from each other
    busy = {s for t in (a, out) for p in t.parts for s in p.slices}
    for byte, plane_bytes in enumerate(planes):
        key = (u.mxm, byte, plane_bytes.tobytes())
        if key in ctx.weight_tiles:  # the same tile (the ones of row_sum, say) is stored once per hemisphere
            groups.append((*ctx.weight_tiles[key], byte))
            continue
        other = {s for g in groups for s in g[0]}
        free = [s for s in ctx.hemisphere[u.mxm] if s not in other]
        quiet = frozenset(s for s in free if s not in busy)
        slices, bank, addrs = ctx.alloc.alloc_roomiest(free, streams, rows_per_slice, f"weights of {node.name}",
                                                       quiet if len(quiet) >= streams else frozenset())
        for i, s in enumerate(slices):
            rows = plane_bytes[i::streams]
            padded = np.zeros((rows_per_slice, lanes), np.int8)
            padded[:len(rows)] = rows.view(np.int8)
            ctx.constant_rows(s, addrs[i], padded)
        ctx.weight_tiles[key] = (slices, bank, addrs)
        groups.append((slices, bank, addrs, byte))
    return groups


def _lw_step(ctx, u: Unit, groups, t: int, streams: int) -> Step:
    step = Step()
    rows_per_slice = ctx.chip.lanes // streams
    mxm_pos = ctx.chip.position[u.mxm]
    for slices, bank, addrs, byte in groups:
        plane = u.plane + byte
        s0 = u.weight_stream[byte]
        step.emits.append(Emit(f"MXM{plane}.w", t, "LW", (Ref(u.inward, s0), streams, 0), rows_per_slice))
        for i, s in enumerate(slices):
            h = ctx.hops(s, u.mxm)
            issue = t - READ_D - h
            step.emits.append(Emit(s, issue, "READ", (addrs[i], Ref(u.inward, s0 + i)), rows_per_slice))
            step.ports.append(Port(s, "r", issue, rows_per_slice, 1, frozenset({bank})))
            step.pipes.append(Pipe.make(u.inward, s0 + i, ctx.chip.position[s], mxm_pos, t - h,
                                        t - h + rows_per_slice - 1))
    return step


def _acc_step(ctx, u: Unit, dtype, a: Placed, out: Placed, kt, nt, kt_count, occ, t: int) -> Step:
    """ACC over the unit's rows, one ACC run per row segment of the activation and output parts."""
    chip = ctx.chip
    mxm_pos = chip.position[u.mxm]
    emit = kt == kt_count - 1
    dst = Ref(u.outward, u.out_stream) if emit else None
    step = Step()
    for r0, r1 in segments([a, out], u.row0, u.row1):
        rows = r1 - r0
        ts = t + occ * (r0 - u.row0)
        span = occ * (rows - 1)
        step.emits.append(Emit(f"MXM{u.plane}.a", ts, "ACC", (dtype, Ref(u.inward, u.act_stream), dst, r0 - u.row0,
                                                             "set" if kt == 0 else "acc"), rows, occ))
        part = a.part_of(r0)
        for byte, s in enumerate(part.slices):
            h = ctx.hops(s, u.mxm)
            issue = ts - READ_D - h
            step.emits.append(Emit(s, issue, "READ", (part.address(kt, r0), Ref(u.inward, u.act_stream + byte)),
                                   rows, occ))
            step.ports.append(Port(s, "r", issue, rows, occ, frozenset({part.bank})))
            step.pipes.append(Pipe.make(u.inward, u.act_stream + byte, chip.position[s], mxm_pos, ts - h,
                                        ts - h + span))
        if emit:
            part = out.part_of(r0)
            for byte, s in enumerate(part.slices):
                h = ctx.hops(u.mxm, s)
                issue = ts + ACC_D + h
                step.emits.append(Emit(s, issue, "WRITE", (part.address(nt, r0), Ref(u.outward, u.out_stream + byte)),
                                       rows, occ))
                step.ports.append(Port(s, "w", issue + WRITE_D, rows, occ, frozenset({part.bank})))
                step.pipes.append(Pipe.make(u.outward, u.out_stream + byte, mxm_pos, chip.position[s], ts + ACC_D,
                                            ts + ACC_D + span))
    return step
