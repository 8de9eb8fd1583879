"""`openlpu cost`: the seed's LPU-vs-GPU cost comparison reproduced, then cost per million tokens."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.table import Table

from openlpu.commands.output import add_json_flag, emit, kv_table
from openlpu.models.zoo import NUMERICS, load_decoder_config
from openlpu.perf.cost import CostAssumptions, gpu_curve, gpu_point, lpu_point, seed_comparison
from openlpu.perf.cost_plot import plot_cost
from openlpu.perf.gpu import GPUS, get_gpu, gpu_baseline, max_batch
from openlpu.sources import sources

DEFAULTS = CostAssumptions()

EPILOG = """examples:
  openlpu cost                                  the seed's comparison, and $ per million tokens
  openlpu cost --months 60 --usd-per-kw-month 150
  openlpu cost --model mixtral-8x7b-32768 --gpu a100 --gpus 4 --batch 16
  openlpu cost --lpu-tokens-per-s 250 --lpu-users 4 --plot cost.png
  openlpu cost --json

The hardware and operations figures reproduce FACTS.md section 4 from its assumptions; each assumption
is a flag. Cost per million tokens divides (hardware + operations) by the tokens served in the period.
The GPU throughput is a roofline bound (docs/cost.md); the LPU throughput is an input until
`openlpu predict` provides it."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cost",
        help="LPU vs GPU cost: the seed's comparison, and $ per million tokens",
        description="Reproduce the seed's 3-year LPU vs 8xH100 cost comparison from its assumptions, then "
        "give the cost per million tokens of each system at a throughput, and plot cost against speed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = DEFAULTS
    seed = p.add_argument_group("the seed's assumptions (FACTS.md section 4)")
    seed.add_argument("--cards", type=int, default=d.lpu_cards, help="LPU cards (default %(default)s)")
    seed.add_argument("--card-price", type=float, default=d.lpu_card_price_usd,
                      help="$ per LPU card (default %(default).0f)")
    seed.add_argument("--card-watts", type=float, default=d.lpu_card_w,
                      help="average W per LPU card (default %(default).0f)")
    seed.add_argument("--gpu", choices=list(GPUS), default="h100", help="the server's GPU (default h100)")
    seed.add_argument("--servers", type=int, default=d.gpu_servers, help="GPU servers (default %(default)s)")
    seed.add_argument("--server-price", type=float, help="$ per GPU server (default: the GPU's; h100 300000)")
    seed.add_argument("--server-kw", type=float, help="kW per GPU server (default: the GPU's; h100 10)")
    seed.add_argument("--usd-per-kw-month", type=float, default=d.usd_per_kw_month,
                      help="$ per kW-month of power and cooling (default %(default).0f)")
    seed.add_argument("--months", type=int, default=d.months, help="period (default %(default)s)")
    tok = p.add_argument_group("cost per million tokens")
    tok.add_argument("--model", default="llama2-70b-4096", help="zoo name or config.json path")
    tok.add_argument("--numerics", choices=NUMERICS, default="int8", help="weights, KV (default %(default)s)")
    tok.add_argument("--context", type=int, help="tokens in each user's KV cache (default: the model's)")
    tok.add_argument("--prompt-tokens", type=int, default=128, help="prompt of the GPU's TTFT (default 128)")
    tok.add_argument("--gpus", type=int, help="tensor-parallel GPUs per replica (default: the whole server)")
    tok.add_argument("--batch", type=int, default=1, help="users per GPU replica (default 1)")
    tok.add_argument("--lpu-tokens-per-s", type=float, default=d.lpu_tokens_per_s_per_user,
                     help="LPU tokens/s per user (default %(default).0f: published for Llama-2-70B)")
    tok.add_argument("--lpu-users", type=int, default=d.lpu_users,
                     help="users the LPU system serves at that speed (default %(default)s)")
    tok.add_argument("--utilisation", type=float, default=d.utilisation,
                     help="fraction of the period spent serving (default %(default)s)")
    tok.add_argument("--plot", type=Path, metavar="FILE.png", help="plot $ per Mtoken vs tokens/s per user")
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    a = CostAssumptions(
        lpu_cards=args.cards, lpu_card_price_usd=args.card_price, lpu_card_w=args.card_watts,
        gpu_servers=args.servers, usd_per_kw_month=args.usd_per_kw_month, months=args.months,
        utilisation=args.utilisation, lpu_tokens_per_s_per_user=args.lpu_tokens_per_s,
        lpu_users=args.lpu_users,
    )
    server = {"server_price_usd": args.server_price, "server_kw": args.server_kw}
    gpu = dataclasses.replace(get_gpu(args.gpu), **{k: v for k, v in server.items() if v is not None})
    model = load_decoder_config(args.model)
    gpus = gpu.server_gpus if args.gpus is None else args.gpus
    context = model.context if args.context is None else args.context

    baseline = gpu_baseline(model, gpu, gpus, args.batch, context, args.prompt_tokens, args.numerics)
    largest = max_batch(model, gpu, gpus, context, args.numerics)
    points = [lpu_point(a), gpu_point(a, model, gpu, gpus, args.batch, context, args.numerics)]
    if largest != args.batch:
        points.append(gpu_point(a, model, gpu, gpus, largest, context, args.numerics))

    if args.plot:
        curves = {f"{points[0].system}, input speed": [points[0]]}
        for name, spec in GPUS.items():
            spec = gpu if name == args.gpu else spec
            curve = gpu_curve(a, model, spec, gpus, context, args.numerics)
            if curve:
                curves[f"{spec.name} server, roofline"] = curve
        title = f"{model.name}, {args.numerics}, context {context}, {a.months} months, {gpus}-way GPU TP"
        plot_cost(curves, title, args.plot)

    data = {
        "assumptions": dataclasses.asdict(a) | {"gpu": gpu.name, "server_price_usd": gpu.server_price_usd,
                                                "server_kw": gpu.server_kw},
        "sources": sources(a) | {k: v for k, v in sources(gpu).items() if k.startswith("server")},
        "seed": [{"item": r.item, "computed_usd": r.computed_usd, "published_usd": r.published_usd,
                  "ratio": r.ratio} for r in seed_comparison(a, gpu)],
        "model": model.name, "numerics": args.numerics, "context": context,
        "points": [dataclasses.asdict(p) for p in points],
        "gpu_baseline": baseline.as_dict() | {"max_batch": largest},
        "plot": str(args.plot) if args.plot else None,
    }
    emit(args, data, _render)
    return 0


def _usd(x: float) -> str:
    return f"${x:,.0f}"


def _render(console, data) -> None:
    a = data["assumptions"]
    console.print(f"[bold]The seed's comparison (FACTS.md section 4) over {a['months']} months, computed from "
                  "its assumptions[/bold]")
    seed = Table()
    for col in ("item", "computed", "seed", "ratio"):
        seed.add_column(col, justify="left" if col == "item" else "right")
    for r in data["seed"]:
        published = f"${r['published_usd'] / 1e6:g}M"
        seed.add_row(r["item"], _usd(r["computed_usd"]), published, f"{r['ratio']:.4f}")
    console.print(seed)
    lpu_total = data["seed"][0]["computed_usd"] + data["seed"][1]["computed_usd"]
    gpu_total = data["seed"][2]["computed_usd"] + data["seed"][3]["computed_usd"]
    console.print(f"totals: LPU {_usd(lpu_total)}, GPU {_usd(gpu_total)} ({lpu_total / gpu_total:.1f}x)\n")

    console.print(f"[bold]Cost per million tokens: {data['model']} at {data['numerics']}, context "
                  f"{data['context']}, utilisation {a['utilisation']:.0%}[/bold]")
    per = Table()
    for col in ("system", "batch", "tokens/s per user", "tokens/s system", "$ per Mtoken", "throughput from"):
        per.add_column(col, justify="left" if col in ("system", "throughput from") else "right")
    for p in data["points"]:
        per.add_row(p["system"], str(p["batch"]), f"{p['tokens_per_s_per_user']:,.1f}",
                    f"{p['tokens_per_s']:,.0f}", f"{p['usd_per_mtoken']:,.2f}", p["throughput_from"])
    console.print(per)

    g = data["gpu_baseline"]
    d = g["decode"]
    ms = 1e3
    console.print(f"\n[bold]GPU roofline baseline, {g['gpus']}x {g['gpu']} (a bound: real GPUs are slower)[/bold]")
    console.print(kv_table("", [
        ("batch, context", f"{g['batch']}, {g['context']} (fits up to batch {g['max_batch']})"),
        ("decode per token", f"{d['time_s'] * ms:.3f} ms, {d['bound']} bound"),
        ("  HBM traffic", f"{d['memory_s'] * ms:.3f} ms"),
        ("  arithmetic", f"{d['compute_s'] * ms:.3f} ms (overlaps the traffic)"),
        ("  NVLink all-reduces", f"{d['network_s'] * ms:.3f} ms"),
        ("tokens/s per user", f"{g['tokens_per_s_per_user']:,.1f}"),
        ("tokens/s per replica", f"{g['tokens_per_s_system']:,.0f}"),
        (f"TTFT, {g['prompt_tokens']}-token prompt",
         f"{g['ttft_s'] * ms:.3f} ms, {g['prefill']['bound']} bound"),
    ]))
    if data["plot"]:
        console.print(f"plot: {data['plot']}")
