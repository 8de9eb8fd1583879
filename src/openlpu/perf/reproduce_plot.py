"""The plots of `openlpu reproduce --plots`: tokens/s against chips, and time per decode token broken down."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from openlpu.errors import UserError
from openlpu.perf.predict import PARTS, Prediction


def plot_scaling(sweep: dict[str, list[Prediction]], path: Path) -> None:
    """Per user and for the whole system, a line per model over the chips it was predicted on."""
    fig = Figure(figsize=(11, 4.5))
    per_user, system = fig.subplots(1, 2)
    for name, runs in sweep.items():
        chips = [r.plan.system_chips for r in runs]
        per_user.plot(chips, [r.tokens_per_s_per_user for r in runs], marker="o", label=name)
        system.plot(chips, [r.tokens_per_s_system for r in runs], marker="o", label=name)
    for ax, what in ((per_user, "tokens/s per user"), (system, "tokens/s, whole system")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("chips")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    per_user.set_title("decode at batch 1, each model at its context: per user", fontsize=9)
    system.set_title("users in flight as the stages' SRAM allows", fontsize=9)
    system.legend(fontsize=7)
    _save(fig, path)


def plot_breakdown(predictions: list[Prediction], path: Path) -> None:
    """A stacked bar per prediction: where a decode token's time goes."""
    fig = Figure(figsize=(9, 1.2 + 0.5 * len(predictions)))
    ax = fig.subplots()
    labels = [f"{p.plan.model.name}, {p.plan.system_chips} chips: {p.tokens_per_s_per_user:,.0f} tokens/s"
              for p in predictions]
    left = [0.0] * len(predictions)
    for part in PARTS:
        widths = [p.breakdown[part] * 1e6 for p in predictions]
        ax.barh(labels, widths, left=left, label=part)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("microseconds per decode token (batch 1)")
    ax.legend(fontsize=7, ncol=len(PARTS), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror}; give a writable --plots folder") from None
