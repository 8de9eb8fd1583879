"""`openlpu demo`: the main job of `make demo`. For now: run every example program and show its cycles."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from openlpu.chip.asm import load
from openlpu.commands.output import add_json_flag, emit
from openlpu.errors import UserError
from openlpu.sim.exact import run as run_exact


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the example programs on the simulated chip",
                       description="Assemble, verify and run every program in examples/ cycle by cycle, "
                                   "and print cycles, time at the chip's clock and instructions executed.",
                       epilog="example:\n  openlpu demo --examples examples",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", default="examples", help="folder of .s programs (default: examples)")
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    files = sorted(Path(args.examples).glob("*.s"))
    if not files:
        raise UserError(f"no .s programs in {args.examples!r}: run from the repository root or pass --examples.")
    rows = []
    for f in files:
        r = run_exact(load(f))
        rows.append({"program": f.name, "chip": r.chip.name, "cycles": r.cycles, "microseconds": r.seconds * 1e6,
                     "vector_instructions": r.vector_instructions, "outputs": sorted(r.outputs)})

    def render(console, d):
        table = Table(title="example programs on the cycle-accurate executor", title_justify="left")
        for col in ("program", "chip", "cycles", "time", "vector instrs", "outputs"):
            table.add_column(col, justify="right" if col in ("cycles", "time", "vector instrs") else "left")
        for r in d["programs"]:
            table.add_row(r["program"], r["chip"], f"{r['cycles']:,}", f"{r['microseconds']:.3f} us",
                          f"{r['vector_instructions']:,}", ", ".join(r["outputs"]))
        console.print(table)

    emit(args, {"programs": rows}, render)
    return 0
