"""`openlpu cost`: the seed's LPU-vs-GPU cost comparison reproduced, then cost per million tokens."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.table import Table

from openlpu.commands.output import add_json_flag, emit, kv_table
from openlpu.models.zoo import NUMERICS, load_decoder_config
from openlpu.perf.cost import CostAssumptions, gpu_curve, gpu_point, lpu_curve, lpu_point, seed_comparison
from openlpu.perf.cost_plot import plot_cost
from openlpu.perf.gpu import GPUS, get_gpu, gpu_baseline, max_batch
from openlpu.perf.predict import predict
from openlpu.sources import sources

DEFAULTS = CostAssumptions()
LPU_KEYS = ("chips", "system_chips", "partitioning", "batch", "decode_s_per_token", "tokens_per_s_per_user",
            "tokens_per_s_system", "users_in_flight", "breakdown")

EPILOG = """examples:
  openlpu cost                                  the seed's comparison, and $ per million tokens
  openlpu cost --chips 576 --months 60 --usd-per-kw-month 150
  openlpu cost --model mixtral-8x7b-32768 --context 4096 --gpu a100 --gpus 4 --batch 16
  openlpu cost --model llama2-7b-2048 --lpu-batch 4 --plot cost.png
  openlpu cost --json

The hardware and operations figures reproduce FACTS.md section 4 from its assumptions; each assumption
is a flag. Cost per million tokens divides (hardware + operations) by the tokens served in the period.
The LPU system and its throughput are what `openlpu predict` gives (compiled schedules, decode only; the
smallest system that fits unless --chips); the GPU throughput is a roofline bound (docs/cost.md)."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cost",
        help="LPU vs GPU cost: the seed's comparison, and $ per million tokens",
        description="Reproduce the seed's 3-year LPU vs 8xH100 cost comparison from its assumptions, then "
        "give the cost per million tokens of any zoo model on an LPU system at the throughput `predict` gives "
        "and on GPU servers at their roofline, and plot cost against speed per user.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = DEFAULTS
    seed = p.add_argument_group("the seed's assumptions (FACTS.md section 4)")
    seed.add_argument("--cards", type=int, default=d.lpu_cards,
                      help="LPU cards of the seed's system (default %(default)s)")
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
    tok.add_argument("--model", default="llama2-70b-4096", help="zoo name, config.json or .gguf path")
    tok.add_argument("--numerics", choices=NUMERICS, default="int8", help="weights, KV (default %(default)s)")
    tok.add_argument("--context", type=int, help="tokens in each user's KV cache (default: the model's)")
    tok.add_argument("--prompt-tokens", type=int, default=128, help="prompt of the GPU's TTFT (default 128)")
    tok.add_argument("--chips", type=int, help="LPU chips, each a card (default: the smallest system that fits)")
    tok.add_argument("--lpu-batch", type=int, default=1, help="users an LPU decode step serves (default 1)")
    tok.add_argument("--expert-parallel", type=int, metavar="N", help="mixture of experts on the LPU (1, 2, 4, 8)")
    tok.add_argument("--gpus", type=int, help="tensor-parallel GPUs per replica (default: the whole server)")
    tok.add_argument("--batch", type=int, default=1, help="users per GPU replica (default 1)")
    tok.add_argument("--utilisation", type=float, default=d.utilisation,
                     help="fraction of the period spent serving (default %(default)s)")
    tok.add_argument("--plot", type=Path, metavar="FILE.png", help="plot $ per Mtoken vs tokens/s per user")
    tok.add_argument("--plot-lpu-batch", type=int, default=8, metavar="B",
                     help="the plot's LPU curve doubles the batch from 1 up to B (default %(default)s)")
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    a = CostAssumptions(
        lpu_cards=args.cards, lpu_card_price_usd=args.card_price, lpu_card_w=args.card_watts,
        gpu_servers=args.servers, usd_per_kw_month=args.usd_per_kw_month, months=args.months,
        utilisation=args.utilisation,
    )
    server = {"server_price_usd": args.server_price, "server_kw": args.server_kw}
    gpu = dataclasses.replace(get_gpu(args.gpu), **{k: v for k, v in server.items() if v is not None})
    model = load_decoder_config(args.model)
    gpus = gpu.server_gpus if args.gpus is None else args.gpus
    context = model.context if args.context is None else args.context

    baseline = gpu_baseline(model, gpu, gpus, args.batch, context, args.prompt_tokens, args.numerics)
    largest = max_batch(model, gpu, gpus, context, args.numerics)
    lpu = predict(model, args.chips, args.numerics, context, batch=args.lpu_batch,
                  expert_parallel=args.expert_parallel, prefill=False)
    points = [lpu_point(a, lpu), gpu_point(a, model, gpu, gpus, args.batch, context, args.numerics)]
    if largest != args.batch:
        points.append(gpu_point(a, model, gpu, gpus, largest, context, args.numerics))

    if args.plot:
        curve = lpu_curve(a, model, args.chips, context, args.numerics, args.plot_lpu_batch, args.expert_parallel)
        systems = f"{args.chips} chips" if args.chips else "the smallest system that fits each batch"
        curves = {f"LPU, predicted ({systems})": curve}
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
        "lpu_prediction": {k: v for k, v in lpu.as_dict().items() if k in LPU_KEYS},
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
    for col in ("system", "batch", "users", "tokens/s per user", "tokens/s system", "$ per Mtoken", "throughput from"):
        per.add_column(col, justify="left" if col in ("system", "throughput from") else "right")
    for p in data["points"]:
        per.add_row(p["system"], str(p["batch"]), str(p["users"]), f"{p['tokens_per_s_per_user']:,.1f}",
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
