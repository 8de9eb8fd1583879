"""The text assembly format (docs/assembly.md): assembler and disassembler, which round-trip.

    .chip tsp-mini
    .tensor x int8 2 at MEM_W0:0 = random(1)      # [2, lanes] int8 at MEM_W0 addresses 0..1
    .tensor z int8 2 at MEM_E1:0 output
    .map rev = 31 30 29 ...                        # a lane map for PERMUTE / DISTRIBUTE
    .queue MEM_W0
        READ 0, e0                                 # issues at cycle 0
        REPEAT 1, 1                                # READ 1, e0 at cycle 1
    .queue VXM.0
        @12 ADD int8, e0, w4, e8                   # @N: issue at cycle N

Errors name the line and column. Comments start with `#`.
"""

from __future__ import annotations

import re
from pathlib import Path

from openlpu.chip import numerics as nx
from openlpu.chip.isa import ISA, queue_kind
from openlpu.chip.operands import Operand, OperandError
from openlpu.chip.program import Instr, Program, Tensor, queue_cycles
from openlpu.chip.spec import ChipSpec, get_chip
from openlpu.errors import UserError


class AsmError(UserError):
    """An assembly error at a line and column."""


_TENSOR = re.compile(
    r"^(?P<name>[A-Za-z_]\w*)\s+(?P<dtype>\w+)\s+(?P<rows>\d+)\s+at\s+(?P<slices>[\w,]+):(?P<addr>\d+)"
    r"(?:\s*=\s*(?P<init>zeros|iota|random\(\d+\)))?(?P<output>\s+output)?\s*$"
)


def _fail(where: str, lineno: int, col: int, msg: str):
    raise AsmError(f"{where}:{lineno}:{col}: {msg}")


def assemble(text: str, chip: ChipSpec | str | None = None, where: str = "<asm>") -> Program:
    """Assembly text -> Program. `chip` is used when the text has no `.chip` line (default tsp-mini)."""
    spec: ChipSpec | None = get_chip(chip) if chip is not None else None
    tensors: dict[str, Tensor] = {}
    maps: dict[str, tuple[int, ...]] = {}
    entries: dict[str, list[tuple[str, tuple, int | None]]] = {}
    lines: dict[str, list[int]] = {}
    queue: str | None = None

    for lineno, raw in enumerate(text.splitlines(), start=1):
        code = raw.split("#", 1)[0].rstrip()
        stripped = code.strip()
        if not stripped:
            continue
        col = len(code) - len(code.lstrip()) + 1
        head, _, rest = stripped.partition(" ")
        rest = rest.strip()
        rest_col = col + len(head) + (len(stripped[len(head):]) - len(stripped[len(head):].lstrip()))
        if head == ".chip":
            if spec is not None and chip is None:
                _fail(where, lineno, col, "`.chip` must come before any .tensor or .queue line")
            if chip is not None and rest != spec.name:
                _fail(where, lineno, rest_col, f"the file is for chip {rest!r} but {spec.name!r} was asked for")
            try:
                spec = get_chip(rest)
            except UserError as err:
                _fail(where, lineno, rest_col, str(err))
        elif head == ".tensor":
            spec = spec or get_chip("tsp-mini")
            t = _parse_tensor(rest, spec, where, lineno, rest_col)
            if t.name in tensors:
                _fail(where, lineno, rest_col, f"tensor {t.name!r} is declared twice")
            tensors[t.name] = t
        elif head == ".map":
            name, eq, values = rest.partition("=")
            name = name.strip()
            if not eq or not re.match(r"^[A-Za-z_]\w*$", name):
                _fail(where, lineno, rest_col, "write a map as `.map NAME = i0 i1 ...`")
            try:
                maps[name] = tuple(int(v) for v in values.split())
            except ValueError:
                _fail(where, lineno, rest_col, f"map {name!r} must list integers")
        elif head == ".queue":
            spec = spec or get_chip("tsp-mini")
            try:
                spec.queue_target(rest)
            except UserError as err:
                _fail(where, lineno, rest_col, str(err))
            queue = rest
            entries.setdefault(queue, [])
            lines.setdefault(queue, [])
        elif head.startswith("."):
            _fail(where, lineno, col, f"unknown directive {head!r}: use .chip, .tensor, .map or .queue")
        else:
            if queue is None:
                _fail(where, lineno, col, "an instruction before any `.queue NAME` line")
            op, args, explicit = _parse_instr(stripped, col, spec, queue, where, lineno)
            entries[queue].append((op, args, explicit))
            lines[queue].append(lineno)

    spec = spec or get_chip("tsp-mini")
    cycles = queue_cycles(spec, entries)
    queues = {
        q: [Instr(op, args, c, ln) for (op, args, _), c, ln in zip(es, cycles[q], lines[q], strict=True)]
        for q, es in entries.items()
    }
    return Program(spec, queues, tensors, maps)


def _parse_tensor(rest: str, spec: ChipSpec, where: str, lineno: int, col: int) -> Tensor:
    m = _TENSOR.match(rest)
    if not m:
        _fail(where, lineno, col,
              "write a tensor as `.tensor NAME DTYPE ROWS at SLICE[,SLICE..]:ADDR [= zeros|iota|random(S)] "
              "[output]`")
    dtype = m["dtype"]
    if dtype not in nx.DTYPES:
        _fail(where, lineno, col + m.start("dtype"), f"unknown dtype {dtype!r}: use one of {', '.join(nx.DTYPES)}")
    slices = tuple(m["slices"].split(","))
    if len(slices) != nx.width(dtype):
        _fail(where, lineno, col + m.start("slices"),
              f"a {dtype} tensor needs {nx.width(dtype)} slice(s), one per byte plane; got {len(slices)}")
    for s in slices:
        if not s.startswith("MEM") or s not in spec.position:
            _fail(where, lineno, col + m.start("slices"), f"{s!r} is not a MEM slice of {spec.name}")
    rows, addr = int(m["rows"]), int(m["addr"])
    if rows < 1 or addr + rows > spec.mem_addresses:
        _fail(where, lineno, col + m.start("rows"),
              f"rows {addr}..{addr + rows - 1} do not fit the {spec.mem_addresses} addresses of a slice")
    return Tensor(m["name"], dtype, rows, slices, addr, m["init"] or "zeros", bool(m["output"]))


def _parse_instr(text: str, col: int, spec: ChipSpec | None, queue: str, where: str, lineno: int):
    explicit = None
    if text.startswith("@"):
        cyc, _, text2 = text[1:].partition(" ")
        if not cyc.isdigit():
            _fail(where, lineno, col, f"@ must be followed by a cycle number, not {cyc!r}")
        explicit = int(cyc)
        col += len(text) - len(text2.lstrip())
        text = text2.strip()
    mnemonic, _, rest = text.partition(" ")
    op = ISA.get(mnemonic.upper())
    if op is None:
        _fail(where, lineno, col, f"unknown instruction {mnemonic!r} (see docs/assembly.md for the ISA)")
    kind = queue_kind(op)
    qkind = spec.queue_target(queue)[0]
    if kind is not None and kind != qkind:
        _fail(where, lineno, col, f"{op.name} is a {op.unit} instruction and cannot issue on queue {queue}")
    fields = [f for f in rest.split(",")] if rest.strip() else []
    if len(fields) != len(op.operands):
        names = ", ".join(o.name for o in op.operands) or "no operands"
        _fail(where, lineno, col, f"{op.name} takes {len(op.operands)} operand(s) ({names}), got {len(fields)}")
    args = []
    pos = col + len(mnemonic) + 1
    for operand, raw in zip(op.operands, fields, strict=True):
        value = raw.strip()
        vcol = pos + len(raw) - len(raw.lstrip())
        try:
            args.append(operand.parse(value))
        except OperandError as err:
            _fail(where, lineno, vcol, str(err))
        pos += len(raw) + 1
    return op.name, tuple(args), explicit


def disassemble(program: Program) -> str:
    """Program -> assembly text that assembles back to an equal Program."""
    out = [f".chip {program.chip.name}"]
    for t in program.tensors.values():
        out.append(f".tensor {t.name} {t.dtype} {t.rows} at {','.join(t.slices)}:{t.addr} = {t.init}"
                   + (" output" if t.output else ""))
    for name, values in program.maps.items():
        out.append(f".map {name} = {' '.join(map(str, values))}")
    for q, instrs in program.queues.items():
        out.append(f".queue {q}")
        for i in instrs:
            operands = ", ".join(Operand.format(a) for a in i.args)
            out.append(f"    @{i.cycle} {i.op}" + (f" {operands}" if operands else ""))
    return "\n".join(out) + "\n"


def load(path: str | Path, chip: ChipSpec | str | None = None) -> Program:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"no assembly file at {str(path)!r}: check the path.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {str(path)!r} as assembly text ({err.__class__.__name__}).") from None
    return assemble(text, chip, where=str(path))
