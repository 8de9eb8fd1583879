"""`openlpu reproduce`: the published results, each next to the figure openlpu's model computes."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from openlpu.commands.output import add_json_flag, emit, si
from openlpu.errors import UserError
from openlpu.perf.reproduce import SECTIONS, reproduce, scaling
from openlpu.perf.reproduce_plot import plot_breakdown, plot_scaling

EPILOG = f"""examples:
  openlpu reproduce                          every row (about a minute: Llama-2-70B is compiled shard by shard)
  openlpu reproduce --only network matmul    some sections ({', '.join(SECTIONS)})
  openlpu reproduce --plots out/             and PNGs: tokens/s against chips for the zoo's decoders (a few
                                             minutes more), and time per decode token broken down"""


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="published results next to openlpu's figures",
                       description="One table: workload, system, openlpu's figure, the published figure, ratio, "
                                   "source. Figures come out of the model as it stands; a miss stays a miss.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), metavar="SECTION", help="run only these sections")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR")
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    keep: list = []
    rows = reproduce(args.only, keep)
    data: dict = {"rows": [r.as_dict() for r in rows]}
    if args.plots:
        data["plots"] = _plots(Path(args.plots), keep, data)
    emit(args, data, _render)
    return 0


def _plots(folder: Path, published: list, data: dict) -> list[str]:
    """Tokens/s against chips for every zoo decoder, and the time per token of each broken down (Llama-2-70B
    on the published 576 chips first when its row ran); the sweep goes into the JSON as `scaling`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the plots folder {str(folder)!r} ({err.strerror}): choose another.") from None
    sweep = scaling()
    data["scaling"] = {name: [{"chips": r.plan.system_chips, "tokens_per_s_per_user": r.tokens_per_s_per_user,
                               "tokens_per_s_system": r.tokens_per_s_system, "breakdown": r.breakdown}
                              for r in runs] for name, runs in sweep.items()}
    paths = [folder / "tokens-per-s-vs-chips.png", folder / "time-per-token.png"]
    plot_scaling(sweep, paths[0])
    plot_breakdown(published + [runs[0] for runs in sweep.values()], paths[1])
    return [str(p) for p in paths]


def _render(console, data) -> None:
    table = Table(title="published results and openlpu's figures", title_justify="left")
    for col in ("workload", "system", "openlpu", "published", "ratio", "source"):
        table.add_column(col, justify="right" if col in ("openlpu", "published", "ratio") else "left")
    for r in data["rows"]:
        model = "not modelled" if r["model"] is None else si(r["model"], r["unit"]) if r["unit"] in ("s",) \
            else f"{r['model']:,.3g} {r['unit']}"
        published = si(r["published"], r["unit"]) if r["unit"] == "s" else f"{r['published']:,.3g} {r['unit']}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        table.add_row(r["workload"], r["system"], model, published, ratio, r["source"])
    console.print(table)
    for r in data["rows"]:
        if r["note"]:
            console.print(f"[dim]{r['workload']}: {r['note']}[/dim]")
    if "scaling" in data:
        sweep = Table(title="decode at batch 1 against chips (tokens/s per user / whole system)", title_justify="left")
        sweep.add_column("model")
        sweep.add_column("chips: tokens/s per user / system")
        for name, runs in data["scaling"].items():
            sweep.add_row(name, ", ".join(f"{r['chips']}: {r['tokens_per_s_per_user']:,.0f} / "
                                          f"{r['tokens_per_s_system']:,.0f}" for r in runs))
        console.print(sweep)
        console.print("plots: " + ", ".join(data["plots"]))
