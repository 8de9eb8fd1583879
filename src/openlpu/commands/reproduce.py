"""`openlpu reproduce`: the published results, each next to the figure openlpu's model computes."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from openlpu.commands.output import add_json_flag, emit, si
from openlpu.errors import UserError
from openlpu.perf.reproduce import SECTIONS, reproduce

EPILOG = f"""examples:
  openlpu reproduce                          every row (about a minute: Llama-2-70B is compiled shard by shard)
  openlpu reproduce --only network matmul    some sections ({', '.join(SECTIONS)})
  openlpu reproduce --plots out/             and a PNG of Llama-2-70B's time per token, broken down"""


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
    if args.plots:
        _plots(Path(args.plots), keep)
    emit(args, {"rows": [r.as_dict() for r in rows]}, _render)
    return 0


def _plots(folder: Path, predictions: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the plots folder {str(folder)!r} ({err.strerror}): choose another.") from None
    for p in predictions:
        fig, ax = plt.subplots(figsize=(7, 3))
        left = 0.0
        for part, seconds in p.breakdown.items():
            ax.barh([0], [seconds * 1e6], left=left, label=part)
            left += seconds * 1e6
        ax.set_yticks([])
        ax.set_xlabel("microseconds per decode token")
        ax.set_title(f"{p.plan.model.name} on {p.plan.chips} chips: {p.tokens_per_s_per_user:.0f} tokens/s per user")
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35))
        fig.tight_layout()
        fig.savefig(folder / f"{p.plan.model.name}-{p.plan.chips}-breakdown.png", dpi=120)
        plt.close(fig)


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
