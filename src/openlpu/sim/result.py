"""What a run returns: outputs, cycles, per-unit busy cycles, and the executions for a trace."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openlpu.chip.spec import ChipSpec


@dataclass
class RunResult:
    chip: ChipSpec
    cycles: int
    outputs: dict[str, np.ndarray]
    vector_instructions: int
    busy: dict[str, int]  # unit -> busy cycles (summed over its slices)
    execs: list = field(default_factory=list, repr=False)

    @property
    def seconds(self) -> float:
        return self.cycles / self.chip.clock_hz

    def unit_capacity(self, unit: str) -> int:
        """How many unit-cycles the chip offers per cycle: one per queue of that unit."""
        prefix = {"MEM": "MEM", "VXM": "VXM", "MXM": "MXM", "SXM": "SXM", "C2C": "SXM"}[unit]
        return sum(1 for q in self.chip.queues if q.startswith(prefix))

    def utilisation(self) -> dict[str, float]:
        """Busy unit-cycles over available unit-cycles, per unit, over the whole run."""
        if not self.cycles:
            return {u: 0.0 for u in self.busy}
        return {u: b / (self.unit_capacity(u) * self.cycles) for u, b in self.busy.items()}

    def summary(self) -> dict:
        return {
            "chip": self.chip.name,
            "cycles": self.cycles,
            "seconds": self.seconds,
            "vector_instructions": self.vector_instructions,
            "busy_cycles": self.busy,
            "utilisation": self.utilisation(),
            "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in self.outputs.items()},
        }
