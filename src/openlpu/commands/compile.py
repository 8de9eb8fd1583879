"""`openlpu compile`: compile a graph (a builtin example or a Python file) and show its schedule."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
from rich.table import Table

from openlpu.chip.spec import PRESETS, get_chip
from openlpu.commands.output import add_json_flag, emit, kv_table
from openlpu.compiler.compile import compile as compile_graph
from openlpu.compiler.examples import EXAMPLES, random_inputs
from openlpu.compiler.graph import Graph
from openlpu.errors import UserError
from openlpu.viz.trace import chrome_trace, write_trace

EPILOG = f"""examples:
  openlpu compile mlp                       a builtin example ({', '.join(EXAMPLES)})
  openlpu compile mlp --trace mlp.json      and a Perfetto timeline, one track per queue
  openlpu compile my_graph.py --chip tsp-mini
      a Python file with `def build(lanes): ... return graph` (an openlpu.Graph)
  openlpu compile gemv --executor none      only compile: the schedule's cycles are known already

The compiled program is run on random inputs and checked bit for bit against the graph's numpy
reference (--executor exact steps every vector; fast runs a tensor instruction at a time)."""


def register(sub) -> None:
    p = sub.add_parser("compile", help="compile a tensor graph to a scheduled program and run it",
                       description="Compile a tensor graph for a chip: lower, allocate SRAM, schedule every "
                                   "instruction in time and space, verify, and run it.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("graph", help=f"a builtin example ({', '.join(EXAMPLES)}) or a .py file with build(lanes)")
    p.add_argument("--chip", default="tsp-v1", choices=list(PRESETS), help="target chip (default tsp-v1)")
    p.add_argument("--executor", default="exact", choices=["exact", "fast", "none"],
                   help="run the program on random inputs with this executor (default exact)")
    p.add_argument("--trace", metavar="OUT.json", help="write a Perfetto/Chrome trace of the run")
    add_json_flag(p)
    p.set_defaults(run=run)


def load_graph(spec: str, lanes: int) -> Graph:
    if spec in EXAMPLES:
        return EXAMPLES[spec](lanes)
    path = Path(spec)
    if path.suffix != ".py" or not path.is_file():
        raise UserError(f"{spec!r} is neither a builtin example ({', '.join(EXAMPLES)}) nor a .py file: "
                        f"check the name or path.")
    module_spec = importlib.util.spec_from_file_location("openlpu_user_graph", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # a user's file: report its error in one sentence
        raise UserError(f"{spec} failed to load: {err.__class__.__name__}: {err}.") from None
    build = getattr(module, "build", None)
    if not callable(build):
        raise UserError(f"{spec} has no function build(lanes) returning an openlpu.Graph: add one.")
    graph = build(lanes)
    if not isinstance(graph, Graph):
        raise UserError(f"{spec}: build(lanes) returned {type(graph).__name__}, not an openlpu.Graph.")
    return graph


def run(args) -> int:
    chip = get_chip(args.chip)
    graph = load_graph(args.graph, chip.lanes)
    compiled = compile_graph(graph, chip)
    data = {
        "graph": args.graph, "chip": chip.name, "cycles_scheduled": compiled.cycles_scheduled,
        "instructions": compiled.program.instructions(),
        "ops": [{"name": o.name, "op": o.op, "shape": list(o.shape), "dtype": o.dtype, "start": o.start,
                 "end": o.end} for o in compiled.ops],
        "matmuls": [{"name": m.name, "dtype": m.dtype, "cycles": m.end - m.start, "macs": m.macs,
                     "mxm_utilisation": m.utilisation(chip)} for m in compiled.matmuls],
    }
    if args.executor != "none":
        inputs = random_inputs(graph)
        result = compiled.run(inputs, args.executor)
        reference = graph.evaluate(inputs, lanes=chip.lanes)
        data["run"] = {
            "executor": args.executor, "cycles": result.cycles, "seconds": result.seconds,
            "vector_instructions": result.vector_instructions, "utilisation": result.utilisation(),
            "matches_reference": all(np.array_equal(result.outputs[k].view(np.uint8), v.view(np.uint8))
                                     for k, v in reference.items()),
        }
        if args.trace:
            write_trace(args.trace, chrome_trace(result))
    elif args.trace:
        raise UserError("--trace needs a run: drop --executor none.")
    emit(args, data, _render)
    return 0


def _render(console, d) -> None:
    rows = [("chip", d["chip"]), ("scheduled cycles", f"{d['cycles_scheduled']:,}"),
            ("instructions", f"{d['instructions']:,}")]
    if "run" in d:
        r = d["run"]
        rows += [(f"run ({r['executor']})", f"{r['cycles']:,} cycles = {r['seconds'] * 1e6:.2f} us, "
                  f"{r['vector_instructions']:,} vector instructions"),
                 ("matches the numpy reference", "yes, bit for bit" if r["matches_reference"] else "NO")]
        rows += [(f"{u} utilisation", f"{v:.1%}") for u, v in sorted(r["utilisation"].items())]
    console.print(kv_table(f"{d['graph']} on {d['chip']}", rows))
    table = Table(title="schedule", title_justify="left")
    for col in ("op", "tensor", "shape", "dtype", "first issue", "result ready"):
        table.add_column(col)
    for o in d["ops"]:
        table.add_row(o["op"], o["name"], "x".join(map(str, o["shape"])), o["dtype"], f"{o['start']:,}",
                      f"{o['end']:,}")
    console.print(table)
    for m in d["matmuls"]:
        console.print(f"roofline {m['name']} ({m['dtype']}): {m['macs']:,} MACs in {m['cycles']:,} cycles = "
                      f"{m['mxm_utilisation']:.1%} of MXM peak")
