"""Assembler and disassembler: round trips, errors with line and column, and fuzzing."""

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openlpu.chip.asm import AsmError, assemble, disassemble, load
from openlpu.chip.isa import ISA
from openlpu.cli import main
from openlpu.errors import UserError

EXAMPLES = ["add", "matmul_int8", "matmul_fp16", "gather", "transpose"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_round_trip_through_the_disassembler(examples_dir, name):
    program = load(examples_dir / f"{name}.s")
    text = disassemble(program)
    again = assemble(text)
    assert again == program
    assert disassemble(again) == text


def test_cycles_follow_dispatch_rules():
    p = assemble("""
.chip tsp-mini
.queue VXM.0
    NOP 5
    MOV int8, e0, -        # after the 5-cycle NOP
    REPEAT 3, 2            # right after MOV, occupying 6 cycles
    MOV int8, e0, -
""")
    assert [i.cycle for i in p.queues["VXM.0"]] == [0, 5, 6, 12]


def test_sync_waits_for_notify_plus_35_cycles():
    p = assemble("""
.queue VXM.1
    NOP 10
    NOTIFY
.queue VXM.0
    SYNC
    MOV int8, e0, -
""")
    assert p.queues["VXM.0"][1].cycle == 10 + 35


@pytest.mark.parametrize("text, line, col, words", [
    (".queue VXM.0\n    FOO e1", 2, 5, "unknown instruction 'FOO'"),
    (".queue VXM.0\n    ADD int8, e0, e1", 2, 5, "takes 4 operand(s)"),
    (".queue VXM.0\n    ADD int9, e0, e1, e2", 2, 9, "dtype must be one of"),
    (".queue VXM.0\n    ADD int8, e0, q1, e2", 2, 19, "an eastward stream like e5"),
    (".queue MEM_W0\n    READ -1, e0", 2, 10, "at least 0"),
    (".queue MEM_W0\n    ADD int8, e0, e1, e2", 2, 5, "cannot issue on queue MEM_W0"),
    ("    READ 0, e0", 1, 5, "before any `.queue"),
    (".queue MEM_Q1", 1, 8, "unknown queue 'MEM_Q1'"),
    (".tensor x int8 4 at MEM_W0,MEM_W1:0", 1, 21, "needs 1 slice"),
    (".tensor x fp32 1 at MEM_W0:0", 1, 21, "needs 4 slice"),
    (".bogus", 1, 1, "unknown directive"),
    (".queue VXM.0\n    @x MOV int8, e0, -", 2, 5, "cycle number"),
])
def test_errors_name_line_and_column(text, line, col, words):
    with pytest.raises(AsmError) as err:
        assemble(text, "tsp-mini", where="t.s")
    msg = str(err.value)
    assert msg.startswith(f"t.s:{line}:{col}: "), msg
    assert words in msg


def test_missing_file_is_one_sentence(tmp_path):
    with pytest.raises(UserError, match="no assembly file"):
        load(tmp_path / "nope.s")


_MNEMONICS = sorted(ISA)
_alphabet = string.ascii_letters + string.digits + " ,.:@-#=()_\t"
_token = st.one_of(st.sampled_from(_MNEMONICS), st.sampled_from(
    [".queue", ".tensor", ".map", ".chip", "VXM.0", "MEM_W0", "SXM_E.1", "MXM0.a", "e0", "w31", "alu2", "b1",
     "int8", "fp16", "@3", "-", ",", "at", "=", "random(1)", "output"]), st.text(_alphabet, max_size=6))
_line = st.lists(_token, max_size=7).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, max_size=8).map("\n".join))
def test_random_text_never_gives_a_traceback(text):
    try:
        assemble(text, "tsp-mini")
    except UserError as err:
        assert str(err).strip() and "\n" not in str(err)


def test_asm_run_json(examples_dir, capsys, tmp_path):
    trace = tmp_path / "t.json"
    assert main(["asm", "run", str(examples_dir / "add.s"), "--json", "--trace", str(trace)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cycles"] == 31 and data["vector_instructions"] == 16
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert {"MEM_W0", "MEM_E0", "MEM_E1", "VXM / VXM.0"} <= names  # one track per queue, named by slice
    assert sum(e["ph"] == "X" for e in events) == 16  # one span per vector instruction


def test_asm_check_reports_violations_and_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.s"
    bad.write_text(".chip tsp-mini\n.queue VXM.0\n    MOV int8, e0, e1\n")
    assert main(["asm", "check", str(bad)]) == 1
    assert "before any value reaches it" in capsys.readouterr().out


def test_asm_run_fast_gives_the_exact_cycles_and_bytes(examples_dir, capsys):
    path = str(examples_dir / "matmul_fp16.s")
    assert main(["asm", "run", path, "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert main(["asm", "run", path, "--json", "--executor", "fast"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert (fast["cycles"], fast["outputs"], fast["busy_cycles"]) == (exact["cycles"], exact["outputs"],
                                                                      exact["busy_cycles"])
