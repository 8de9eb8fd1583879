"""Shared output for commands: `--json` for machines, a rich table for people."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def emit(args, data: dict[str, Any], render: Callable[[Console, dict[str, Any]], None]) -> None:
    """Print `data` as JSON when `--json` was given, else let `render` draw it for people."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=_jsonable))
    else:
        render(Console(), data)


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def si(value: float, unit: str) -> str:
    """A figure with an SI prefix: 12.2 GB/s, 394 ns."""
    if unit == "hops":
        return f"{value:g}"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-6, "u"), (1e-9, "n")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:g} {unit}"
