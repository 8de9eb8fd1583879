"""`openlpu network`: the scheduled network: collectives on real data, scheduled vs dynamic routing,
clock synchronisation, and the model's latencies next to the published ones."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from rich.table import Table

from openlpu.commands.output import add_json_flag, emit, kv_table, si
from openlpu.errors import UserError
from openlpu.system import clocks, dynamic
from openlpu.system.collectives import OPS, compile_collective, groups
from openlpu.system.faults import parse_link, run_with_faults
from openlpu.system.netfigures import figures
from openlpu.system.topology import build

RUN_LIMIT_BYTES = 64 * 2**20  # above this much input data, schedule only unless --run is given
DTYPES = ("int32", "float32", "float16", "int8")

EPILOG = """sizes: --chips 1, 2, 4, 8 (a node), 264 (33 fully connected nodes) or a multiple of 72, or
--racks 1..145; default one rack. Collectives run over the active chips (hot-spare nodes left out).
Links are named by id or by their chips: --fail-link 3-5 (or 3-5#1 for the second parallel link).

examples:
  openlpu network allreduce --chips 8 --bytes 65536          8-way all-reduce, run on real data
  openlpu network allreduce --racks 8 --bytes 1048576 --json the 576-chip system (512 active chips)
  openlpu network allreduce --chips 72 --fail-link 0-1       detect a dead link, re-plan, replay
  openlpu network broadcast --chips 72 --root 9 --bytes 4096
  openlpu network send --chips 8 --from 0 --to 5 --bytes 65536  one tensor spread over several routes
  openlpu network compare --chips 72 --transfers 200 --bytes 32768  scheduled vs dynamic routing
  openlpu network sync --racks 145 --cycles 1000000          clock drift, HAC skew, runtime deskews
  openlpu network figures                                    model vs published latencies"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "network",
        help="scheduled network: collectives, scheduled vs dynamic routing, clock sync, published latencies",
        description="Compile transfers and collectives into link schedules (every flit on every link at a "
        "known slot), run them on real data, compare with dynamic routing, simulate clock synchronisation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="network_command", metavar="WHAT", required=True)
    for op in OPS:
        what = "a point-to-point transfer" if op == "send" else f"{'an' if op[0] in 'a' else 'a'} {op}"
        p = sub.add_parser(op, help=f"schedule {what} and run it on real data",
                           description=f"Schedule {what} on the chosen system, move real bytes through the "
                           "network executor, check the result with numpy and the latency with a bound.",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        _size(p)
        p.add_argument("--bytes", type=int, default=65536, metavar="B",
                       help="bytes per chip (all-gather, reduce-scatter: per block) (default 65536)")
        p.add_argument("--dtype", choices=DTYPES, default="int32", help="element type of the data (default int32)")
        if op == "broadcast":
            p.add_argument("--root", type=int, default=0, help="chip that holds the tensor (default 0)")
        if op == "send":
            p.add_argument("--from", dest="src", type=int, default=0, help="source chip (default 0)")
            p.add_argument("--to", dest="dst", type=int, required=True, help="destination chip")
        p.add_argument("--fail-link", action="append", default=[], metavar="LINK",
                       help="a link that dies before the run (repeatable)")
        p.add_argument("--schedule-only", action="store_true", help="compile the schedule but move no data")
        p.add_argument("--seed", type=int, default=0, help="seed of the random input data (default 0)")
        add_json_flag(p)
        p.set_defaults(run=run_collective, op=op)

    p = sub.add_parser("compare", help="the same random traffic, scheduled and dynamically routed",
                       description="Random transfers between chips, scheduled at compile time and routed "
                       "dynamically (minimal or adaptive, FIFO queues per link): latency and its spread.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _size(p)
    p.add_argument("--transfers", type=int, default=200, help="number of transfers (default 200)")
    p.add_argument("--bytes", type=int, default=32768, metavar="B", help="bytes per transfer (default 32768)")
    p.add_argument("--window", type=int, default=5000, metavar="CYCLES",
                   help="transfers start uniformly within this many cycles (default 5000)")
    p.add_argument("--runs", type=int, default=5, help="dynamic runs, one seed each (default 5)")
    p.add_argument("--jitter", type=int, default=24, metavar="CYCLES",
                   help="random delay of each flit's injection in a dynamic run (default 24, one flit time)")
    p.add_argument("--seed", type=int, default=0, help="seed of the traffic (default 0)")
    add_json_flag(p)
    p.set_defaults(run=run_compare)

    p = sub.add_parser("sync", help="plesiochronous clocks: HAC alignment, program alignment, runtime deskew",
                       description="Simulate drifting chip clocks, HAC exchange over a spanning tree, program "
                       "alignment (DESKEW, TRANSMIT, NOTIFY) and runtime deskews for a program of given length.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _size(p)
    p.add_argument("--ppm", type=float, default=clocks.GROQ_SYNC.clock_ppm,
                   help=f"clock tolerance, +-ppm (default {clocks.GROQ_SYNC.clock_ppm:g})")
    p.add_argument("--cycles", type=int, default=1_000_000, help="program length in cycles (default 1,000,000)")
    p.add_argument("--nominal-latency", action="store_true",
                   help="HAC exchange assumes the nominal link latency instead of a calibrated one")
    p.add_argument("--seed", type=int, default=0, help="seed of the clock offsets and link latencies")
    add_json_flag(p)
    p.set_defaults(run=run_sync)

    p = sub.add_parser("figures", help="the model's network latencies next to the published ones",
                       description="Pipelined all-reduce hop, worst-case vector latencies (rack, 264 chips, "
                       "10,440 chips) and the detour break-even, each from scheduled transfers.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_json_flag(p)
    p.set_defaults(run=run_figures)


def _size(parser) -> None:
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--chips", type=int, metavar="N", help="number of chips (default: one rack)")
    size.add_argument("--racks", type=int, metavar="R", help="number of racks, 1 to 145")


# ---- collectives ----
def run_collective(args) -> int:
    topo = build(chips=args.chips, racks=args.racks)
    op = args.op
    if args.bytes < 0:
        raise UserError(f"--bytes {args.bytes} is negative: give 0 or more bytes.")
    dtype = np.dtype(args.dtype)
    if args.bytes % dtype.itemsize:
        raise UserError(f"--bytes {args.bytes} is not a whole number of {args.dtype} elements: use a multiple of "
                        f"{dtype.itemsize}.")
    root = getattr(args, "root", None) if op == "broadcast" else getattr(args, "src", None)
    dst = getattr(args, "dst", None)
    failed = [parse_link(topo, name) for name in args.fail_link]
    n = 2 if op == "send" else groups(topo).n
    per_chip = args.bytes * (n if op == "reduce-scatter" else 1)
    moving = not args.schedule_only and n * per_chip <= RUN_LIMIT_BYTES
    data: dict[str, Any]
    if not moving:
        plan = compile_collective(op, topo, args.bytes, root=root, dst=dst, failed_links=tuple(failed))
        data = plan.summary()
        data["ran"] = False
        data["why_not_run"] = ("--schedule-only" if args.schedule_only else f"{n * per_chip / 2**20:.0f} MiB of "
                               f"input data is over {RUN_LIMIT_BYTES / 2**20:.0f} MiB")
    else:
        rng = np.random.default_rng(args.seed)
        count = per_chip // dtype.itemsize
        inputs = [_random(rng, dtype, count) for _ in range(n)]
        if op == "send":
            inputs[1] = np.zeros_like(inputs[1])
        result = run_with_faults(op, topo, inputs, args.bytes, failed, root=root, dst=dst)
        plan = result.plan
        data = plan.summary()
        data["ran"] = True
        data["matches_numpy"] = _matches(op, plan, inputs, result.outputs, root)
        if failed:
            data["faults"] = result.summary()
    data["deskew"] = vars(clocks.plan_deskews(topo, plan.latency))
    emit(args, data, _render_collective)
    return 0 if data.get("matches_numpy", True) else 1


def _random(rng: np.random.Generator, dtype: np.dtype, count: int) -> np.ndarray:
    if dtype.kind == "f":
        return rng.standard_normal(count).astype(dtype)
    return rng.integers(-8, 8, count).astype(dtype)


def _matches(op: str, plan, inputs: list[np.ndarray], outputs: list[np.ndarray], root: int | None) -> bool:
    """Each chip's result against numpy on the same inputs (floats: sums may round in another order)."""
    n = len(inputs)
    if op == "send":
        expected = [None, inputs[0]]
    elif op == "broadcast":
        expected = [inputs[int(np.flatnonzero(plan.groups.chips == root)[0])]] * n
    elif op == "allgather":
        expected = [np.stack(inputs)] * n
    else:
        total = np.sum(np.stack(inputs).astype(np.float64 if inputs[0].dtype.kind == "f" else inputs[0].dtype),
                       axis=0).astype(inputs[0].dtype)
        expected = [total] * n if op == "allreduce" else np.split(total, n)
    exact = inputs[0].dtype.kind != "f" or op in ("send", "broadcast", "allgather")
    tol = 1e-2 if inputs[0].dtype == np.float16 else 1e-4
    return all(e is None or (np.array_equal(o, e) if exact else np.allclose(o, e, rtol=tol, atol=tol * n))
               for o, e in zip(outputs, expected, strict=True))


def _render_collective(console, data) -> None:
    bound = data["bound"]
    rows = [
        ("system", f"{data['system']}: {data['chips']:,} chip{'s' * (data['chips'] != 1)} in the {data['op']}"
                   + (f" ({', '.join(data['levels'])})" if data["levels"] else "")),
        ("bytes", f"{data['bytes']:,} per chip"),
        ("latency", f"{data['latency_cycles']:,} cycles = {si(data['latency_s'], 's')}"),
        ("lower bound", f"{bound['cycles']:,.0f} cycles = {si(data['lower_bound_s'], 's')} (alpha {bound['hops']} "
                        f"hops: {bound['alpha_cycles']:,.0f}, beta: {bound['beta_cycles']:,.0f})"
                        + (f"; latency / bound = {data['bound_ratio']:.2f}" if data["bound_ratio"] else "")),
        ("network", f"{data['transfers']:,} transfers, {data['flits']:,} flits, {data['flit_hops']:,} flit hops; "
                    f"busiest link {data['busiest_link_flits']:,} flits"),
        ("runtime deskews", f"{data['deskew']['deskews']} (one every {data['deskew']['interval_cycles']:,} cycles)"),
    ]
    if data["ran"]:
        rows.append(("result", "every chip matches numpy" if data["matches_numpy"] else "MISMATCH with numpy"))
    else:
        rows.append(("result", f"not run: {data['why_not_run']}"))
    if "faults" in data:
        f = data["faults"]
        seen = ", ".join(f"link {d['link']} (chip {d['chip']}, cycle {d['cycle']})" for d in f["detected"][:4])
        rows.append(("faults", f"detected {len(f['detected'])}: {seen or 'none used'}; {f['action']}; latency "
                               f"{f['latency_cycles_before']:,} -> {f['latency_cycles_after']:,} cycles"))
    console.print(kv_table(f"{data['op']}", rows))
    table = Table(title="steps", title_justify="left")
    for column in ("step", "transfers", "done at cycle"):
        table.add_column(column)
    for step in data["steps"]:
        table.add_row(step["step"], f"{step['transfers']:,}", f"{step['end_cycle']:,}")
    console.print(table)


# ---- scheduled vs dynamic ----
def run_compare(args) -> int:
    topo = build(chips=args.chips, racks=args.racks)
    for name in ("transfers", "bytes", "runs"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} {getattr(args, name)} is too small: give at least 1.")
    traffic = dynamic.random_traffic(topo, args.transfers, args.bytes, args.seed, args.window)
    rows = dynamic.compare(topo, traffic, tuple(range(args.runs)), args.jitter)
    emit(args, {"system": topo.name, "transfers": args.transfers, "bytes": args.bytes, "window_cycles": args.window,
                "jitter_cycles": args.jitter, "rows": rows}, _render_compare)
    return 0


def _render_compare(console, data) -> None:
    table = Table(title=f"{data['system']}: {data['transfers']} random transfers of {data['bytes']:,} B, latency "
                  f"per transfer ({data['rows'][1]['runs']} dynamic runs)", title_justify="left")
    for column in ("mode", "mean", "p50", "p99", "max", "std", "p99 spread over runs"):
        table.add_column(column)
    for r in data["rows"]:
        table.add_row(r["mode"], *(f"{r[k] / 1e3:.2f} us" for k in
                                   ("mean_ns", "p50_ns", "p99_ns", "max_ns", "std_ns", "p99_spread_ns")))
    console.print(table)


# ---- clocks ----
def run_sync(args) -> int:
    topo = build(chips=args.chips, racks=args.racks)
    if args.cycles < 0 or args.ppm < 0:
        raise UserError("--cycles and --ppm must be 0 or more.")
    sync = clocks.SyncSpec(clock_ppm=args.ppm, latency_calibrated=not args.nominal_latency)
    result = clocks.simulate(topo, args.cycles, sync, args.seed)
    data = {"system": topo.name, "ppm": args.ppm, "slack_cycles": sync.slack_cycles(topo.spec),
            "residual_bound_cycles": sync.residual_bound(topo.spec, result.depth), **result.summary()}
    emit(args, data, _render_sync)
    return 0


def _render_sync(console, d) -> None:
    rows = [
        ("spanning tree", f"depth {d['tree_depth']} (root chip 0); clocks spread {d['ppm_spread']:.0f} ppm"),
        ("HAC alignment", f"{d['hac_converge_cycles']:,} cycles; residual skew {d['hac_residual_skew_cycles']:.2f} "
                          f"cycles (bound {d['residual_bound_cycles']:.2f})"),
        ("program alignment", f"DESKEW, TRANSMIT, NOTIFY: {d['alignment_cycles']:,.0f} cycles; start skew "
                              f"{d['start_skew_cycles']:.2f} cycles"),
    ]
    if d["deskew_interval_cycles"] is None:
        rows.append(("link slack", f"{d['slack_cycles']:.1f} cycles: no room left, the residual skew bound alone "
                                   "exceeds it (calibrate the link latencies)"))
    else:
        never = d["deskew_interval_cycles"] >= 2**62
        rows += [
            ("link slack", f"{d['slack_cycles']:.1f} cycles: " + ("the clocks do not drift" if never else
                           f"a runtime deskew every {d['deskew_interval_cycles']:,} cycles")),
            ("program", f"{d['program_cycles']:,} cycles: {d['runtime_deskews']} runtime deskews costing "
                        f"{d['runtime_deskew_cost_cycles']:,} cycles ({d['runtime_deskew_overhead']:.2%})"),
            ("skew", f"{d['skew_before_deskew_cycles']:.2f} cycles before a runtime deskew, "
                     f"{d['skew_after_deskew_cycles']:.2f} after"),
        ]
    console.print(kv_table(f"{d['system']}: clocks at +-{d['ppm']:g} ppm", rows))


# ---- published ----
def run_figures(args) -> int:
    emit(args, {"rows": figures()}, _render_figures)
    return 0


def _render_figures(console, data) -> None:
    table = Table(title="scheduled network: model vs published", title_justify="left")
    for column in ("figure", "model", "published", "model/published", "source"):
        table.add_column(column)
    for r in data["rows"]:
        table.add_row(r["figure"], si(r["model"], r["unit"]), si(r["published"], r["unit"]), f"{r['ratio']:.2f}",
                      r["source"].split(":")[0])
    console.print(table)
    for r in data["rows"]:
        console.print(f"  {r['figure']}: {r['detail']}")
