"""Every hardware number has a source: spec fields carry a citation of ../shared/FACTS.md or `assumed`.

A spec dataclass declares each field with `cited(value, "ISCA20: ...")` or `assumed(value, "why")`;
`sources(spec)` lists them, so `openlpu info` can show where each number comes from.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def cited(default: Any, source: str) -> Any:
    """A dataclass field whose value comes from a published source (a FACTS.md row)."""
    return dataclasses.field(default=default, metadata={"source": source})


def assumed(default: Any, why: str) -> Any:
    """A dataclass field whose value is not published: chosen here, with the reason."""
    return dataclasses.field(default=default, metadata={"source": f"assumed: {why}"})


def sources(spec: Any) -> dict[str, str]:
    """Field name -> its citation, for every field of a spec dataclass."""
    return {f.name: f.metadata.get("source", "") for f in dataclasses.fields(spec)}
