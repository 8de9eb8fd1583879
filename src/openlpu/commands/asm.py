"""`openlpu asm`: assemble, verify, run and disassemble TSP assembly (docs/assembly.md)."""

from __future__ import annotations

import argparse

from openlpu.chip.asm import disassemble, load
from openlpu.chip.isa import ISA
from openlpu.chip.spec import PRESETS
from openlpu.commands.output import add_json_flag, emit, kv_table
from openlpu.errors import UserError
from openlpu.sim.exact import run as run_exact
from openlpu.sim.fast import run as run_fast
from openlpu.sim.verify import check
from openlpu.viz.trace import chrome_trace, write_trace

EPILOG = """examples:
  openlpu asm run examples/add.s                     verify, run cycle by cycle, print cycles
  openlpu asm run examples/matmul_int8.s --trace t.json   and write a Perfetto timeline
  openlpu asm check examples/transpose.s             only the static verifier
  openlpu asm disasm examples/gather.s               the program with every issue cycle
  openlpu asm isa                                    the instruction table with timings"""


def register(sub) -> None:
    p = sub.add_parser("asm", help="assemble, verify and run TSP assembly",
                       description="Work with TSP assembly programs: the text format is in docs/assembly.md.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, help_ in [("run", "verify and run a program on the cycle-accurate executor"),
                        ("check", "run only the static verifier"),
                        ("disasm", "print the program with the issue cycle of every instruction")]:
        v = verbs.add_parser(verb, help=help_, description=help_)
        v.add_argument("file", help="an assembly file (.s)")
        v.add_argument("--chip", choices=list(PRESETS), help="chip when the file has no .chip line (tsp-mini)")
        if verb != "disasm":
            add_json_flag(v)
        if verb == "run":
            v.add_argument("--trace", metavar="OUT.json", help="write a Perfetto/Chrome trace of the run")
            v.add_argument("--executor", choices=["exact", "fast"], default="exact",
                           help="exact: every vector, cycle by cycle (default); fast: a tensor instruction at a "
                                "time, the same bits and cycles (no trace)")
        v.set_defaults(run={"run": _run, "check": _check, "disasm": _disasm}[verb])
    isa = verbs.add_parser("isa", help="print the instruction table", description="Every instruction: "
                           "unit, operands, d_skew, d_func and where the timing comes from.")
    add_json_flag(isa)
    isa.set_defaults(run=_isa)


def _run(args) -> int:
    program = load(args.file, args.chip)
    if args.executor == "fast":
        if args.trace:
            raise UserError("--trace needs the exact executor: drop --executor fast.")
        result = run_fast(program)
    else:
        result = run_exact(program)
    if args.trace:
        write_trace(args.trace, chrome_trace(result))
    data = {"file": args.file, **result.summary()}
    data["outputs"] = {k: v.tolist() if args.json else v for k, v in result.outputs.items()}

    def render(console, d):
        rows = [("chip", d["chip"]), ("cycles", f"{d['cycles']:,} ({d['seconds'] * 1e6:.3f} us)"),
                ("vector instructions", f"{d['vector_instructions']:,}")]
        rows += [(f"{u} busy", f"{b:,} unit-cycles ({d['utilisation'][u]:.1%} of the unit)")
                 for u, b in sorted(d["busy_cycles"].items())]
        for name, value in d["outputs"].items():
            rows.append((f"output {name}", f"{value.dtype} {list(value.shape)}: {_preview(value)}"))
        if args.trace:
            rows.append(("trace", args.trace))
        console.print(kv_table(d["file"], rows))

    emit(args, data, render)
    return 0


def _preview(value) -> str:
    flat = value.reshape(-1)
    head = " ".join(str(x) for x in flat[:6])
    return head + (" ..." if flat.size > 6 else "")


def _check(args) -> int:
    program = load(args.file, args.chip)
    found = check(program)
    data = {"file": args.file, "ok": not found, "instructions": program.instructions(),
            "violations": [{"kind": v.kind, "message": v.message} for v in found]}

    def render(console, d):
        if d["ok"]:
            console.print(f"{d['file']}: ok ({d['instructions']} instructions)")
        for v in d["violations"]:
            console.print(f"[red]{v['kind']}[/red]: {v['message']}")

    emit(args, data, render)
    return 0 if not found else 1


def _disasm(args) -> int:
    print(disassemble(load(args.file, args.chip)), end="")
    return 0


def _isa(args) -> int:
    data = {name: {"unit": op.unit, "operands": [o.name for o in op.operands], "d_skew": op.d_skew,
                   "d_func": op.d_func, "timing_source": op.timing_source, "doc": op.doc}
            for name, op in ISA.items()}

    def render(console, d):
        from rich.table import Table

        table = Table(title="TSP instruction set (openlpu)", title_justify="left")
        for col in ("instruction", "unit", "operands", "d_skew", "d_func", "what it does"):
            table.add_column(col)
        for name, e in d.items():
            table.add_row(name, e["unit"], ", ".join(e["operands"]), str(e["d_skew"]), str(e["d_func"]), e["doc"])
        console.print(table)

    emit(args, data, render)
    return 0
