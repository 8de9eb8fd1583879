"""The ISA table in docs/assembly.md is the one in the code."""

import re
from pathlib import Path

from openlpu.chip.isa import ISA

DOC = Path(__file__).resolve().parents[2] / "docs" / "assembly.md"


def test_docs_table_matches_the_instruction_table():
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([A-Z.]+)` \| (\w+) \| [^|]* \| (\d+) \| (\d+) \|", line)
        if m:
            rows[m[1]] = (m[2], int(m[3]), int(m[4]))
    assert rows == {name: (op.unit, op.d_skew, op.d_func) for name, op in ISA.items()}
