"""The plot of cost per million tokens against tokens/s per user (matplotlib PNG)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from openlpu.errors import UserError
from openlpu.perf.cost import CostPoint


def plot_cost(curves: dict[str, list[CostPoint]], title: str, path: Path) -> None:
    """One line per system (a GPU's or the LPU's batch sweep), log-log, batch sizes labelled (and the
    system, where a curve's points are on different ones)."""
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for label, points in curves.items():
        speeds = [p.tokens_per_s_per_user for p in points]
        costs = [p.usd_per_mtoken for p in points]
        ax.plot(speeds, costs, marker="o", label=label)
        several = len({p.system for p in points}) > 1
        for p in points:
            label = f"b{p.batch}" + (f", {p.system}" if several else "")
            ax.annotate(label, (p.tokens_per_s_per_user, p.usd_per_mtoken), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("tokens/s per user")
    ax.set_ylabel("$ per million tokens")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}; give a writable --plot path") from None
