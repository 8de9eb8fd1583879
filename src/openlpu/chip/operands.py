"""Operand kinds of the ISA: how each is written in assembly, parsed, checked and printed.

Stream references are `e5` (eastward stream 5) or `w12` (westward stream 12); `alu3` names the output
latch of VXM ALU 3 (ALU chaining inside a lane); `b7` is MXM activation buffer 7; `-` means none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from openlpu.chip.numerics import DTYPES

EAST, WEST = "e", "w"


@dataclass(frozen=True)
class Ref:
    """A place an instruction reads or writes: a stream, an ALU latch or an activation buffer."""

    kind: str  # "e", "w", "alu", "b"
    index: int

    @property
    def is_stream(self) -> bool:
        return self.kind in (EAST, WEST)

    def __str__(self) -> str:
        return f"{self.kind}{self.index}"


NONE = None
_REF = re.compile(r"^(e|w|alu|b)(\d+)$")
_INT = re.compile(r"^[+-]?\d+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class OperandError(ValueError):
    """A malformed operand; the assembler adds the line and column."""


@dataclass(frozen=True)
class Operand:
    name: str
    kind: str  # int | dtype | ref | name | choice
    refs: tuple[str, ...] = ()  # for kind "ref": which ref kinds are allowed ("e","w","alu","b","-")
    choices: tuple[str, ...] = ()  # for kind "choice"
    minimum: int | None = None
    maximum: int | None = None

    def parse(self, text: str):
        if self.kind == "int":
            if not _INT.match(text):
                raise OperandError(f"{self.name} must be an integer, not {text!r}")
            value = int(text)
            if self.minimum is not None and value < self.minimum:
                raise OperandError(f"{self.name} must be at least {self.minimum}, not {value}")
            if self.maximum is not None and value > self.maximum:
                raise OperandError(f"{self.name} must be at most {self.maximum}, not {value}")
            return value
        if self.kind == "dtype":
            if text not in DTYPES:
                raise OperandError(f"{self.name} must be one of {', '.join(DTYPES)}, not {text!r}")
            return text
        if self.kind == "choice":
            if text not in self.choices:
                raise OperandError(f"{self.name} must be one of {', '.join(self.choices)}, not {text!r}")
            return text
        if self.kind == "name":
            if not _NAME.match(text):
                raise OperandError(f"{self.name} must be a name, not {text!r}")
            return text
        if self.kind == "ref":
            if text == "-" and "-" in self.refs:
                return NONE
            m = _REF.match(text)
            if not m or m.group(1) not in self.refs:
                allowed = ", ".join(_REF_HELP[k] for k in self.refs)
                raise OperandError(f"{self.name} must be {allowed}; got {text!r}")
            return Ref(m.group(1), int(m.group(2)))
        raise AssertionError(self.kind)

    @staticmethod
    def format(value) -> str:
        return "-" if value is None else str(value)


_REF_HELP = {
    "e": "an eastward stream like e5",
    "w": "a westward stream like w5",
    "alu": "an ALU latch like alu3",
    "b": "an activation buffer like b0",
    "-": "'-' for none",
}


def ints(name: str, minimum: int | None = None, maximum: int | None = None) -> Operand:
    return Operand(name, "int", minimum=minimum, maximum=maximum)


def dtype(name: str = "dtype") -> Operand:
    return Operand(name, "dtype")


def stream(name: str, *extra: str) -> Operand:
    return Operand(name, "ref", refs=("e", "w", *extra))


def choice(name: str, *choices: str) -> Operand:
    return Operand(name, "choice", choices=choices)


def name(name_: str) -> Operand:
    return Operand(name_, "name")
