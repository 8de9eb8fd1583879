"""`Builder` checks operands like the assembler does: what the assembler rejects, `emit` rejects too.

Programs built from Python skip the assembler, so an operand the Builder lets through reaches the verifier
and the executors unchecked (a traceback, or a silently wrong run).
"""

import pytest

from openlpu.chip.asm import AsmError, assemble
from openlpu.chip.builder import Builder
from openlpu.chip.operands import Ref
from openlpu.errors import UserError

CASES = [
    ("MEM_W0", "NOP", (0,), "NOP 0"),
    ("MEM_W0", "READ", (-1, "e0"), "READ -1, e0"),
    ("SXM_W.0", "ROTATE", (5, "w0", "e0"), "ROTATE 5, w0, e0"),
    ("MXM0.w", "LW", ("w0", 0, 0), "LW w0, 0, 0"),
    ("MXM0.w", "IW", ("int9",), "IW int9"),
    ("MXM0.a", "ACC", ("int8", "w4", None, -1, "set"), "ACC int8, w4, -, -1, set"),
    ("MXM0.a", "ACC", ("int8", "w4", None, 0, "bogus"), "ACC int8, w4, -, 0, bogus"),
    ("MXM0.a", "ACC", ("int8", Ref("alu", 0), None, 0, "set"), "ACC int8, alu0, -, 0, set"),
    ("VXM.0", "ADD", ("int8", Ref("b", 0), "w0", "e4"), "ADD int8, b0, w0, e4"),
    ("VXM.0", "CONFIG", ("vxm.bogus", "zero"), "CONFIG vxm.bogus, zero"),
]


@pytest.mark.parametrize("queue, op, args, text", CASES, ids=[c[3] for c in CASES])
def test_builder_rejects_what_the_assembler_rejects(queue, op, args, text):
    with pytest.raises(AsmError):
        assemble(f".queue {queue}\n    {text}\n")
    with pytest.raises(UserError):
        Builder("tsp-mini").emit(queue, 0, op, *args)


def test_builder_accepts_values_and_text_alike():
    b = Builder("tsp-mini")
    as_values = b.emit("MXM0.a", 3, "ACC", "int8", Ref("w", 4), None, 2, "acc")
    as_text = b.emit("MXM0.a", 3, "ACC", "int8", "w4", "-", "2", "acc")
    assert as_values.args == as_text.args == ("int8", Ref("w", 4), None, 2, "acc")
