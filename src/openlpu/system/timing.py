"""The clock of the scheduled network: flit slots on the links, and what a chip adds around each hop.

A link carries one flit (a 320-byte vector sent as 328 bytes) per flit time: 328 B at 100 Gb/s is
23.616 cycles at 900 MHz. Every link counts the same slots from cycle 0 (the HACs keep the chips aligned,
see `clocks`): slot s starts at cycle ceil(s x flit_cycles), kept as an exact fraction so a long schedule
never drifts from the link rate.

Around a hop the chip itself spends cycles, derived from the chip's instruction table (`chip.isa.LATENCY`)
and floorplan, never typed here:
- inject: a vector leaves SRAM for a link: READ from the MEM slice beside the switch, one stream hop to
  the SXM, SEND;
- eject: a vector arrives: RECEIVE, one stream hop, WRITE into that MEM slice;
- forward (an intermediate chip, virtual cut-through through SRAM): eject then inject. A flit is a whole
  vector, so it is forwarded once it has fully arrived; the tensor it belongs to is cut through flit by
  flit, never stored whole;
- reduce (a collective adds what arrives to its own partial sum): RECEIVE, the stream crosses the
  hemisphere to the VXM, one add, crosses back and is written beside the switch, ready to be sent on.
The in and out links of a forward are assumed to sit on the same hemisphere (the compiler can pick
them); crossing to the other hemisphere would add the chip's width in stream hops.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np

from openlpu.chip.isa import LATENCY
from openlpu.chip.spec import TSP_V1, ChipSpec
from openlpu.system.spec import SystemSpec


def _d_func(kind: str) -> int:
    return LATENCY[kind][1]


@dataclass(frozen=True)
class NetworkTiming:
    spec: SystemSpec
    chip: ChipSpec = TSP_V1

    # ---- the slot grid ----
    @cached_property
    def flit_fraction(self) -> Fraction:
        """Cycles per flit as an exact fraction (2952/125 = 23.616 for the published figures)."""
        return Fraction(self.spec.flit_cycles).limit_denominator(1_000_000)

    @property
    def flit_cycles(self) -> float:
        return float(self.flit_fraction)

    @cached_property
    def _ratio(self) -> tuple[int, int]:
        return self.flit_fraction.numerator, self.flit_fraction.denominator

    def slot_start(self, slot):
        """First cycle of a slot (vectorised): ceil(slot x flit_cycles)."""
        num, den = self._ratio
        return -((-np.asarray(slot, dtype=np.int64) * num) // den)

    def first_slot(self, cycle):
        """The earliest slot starting at or after `cycle` (vectorised)."""
        num, den = self._ratio
        return (np.asarray(cycle, dtype=np.int64) - 1) * den // num + 1

    # ---- cycles a chip adds around a hop ----
    @property
    def switch_to_buffer_hops(self) -> int:
        """Stream hops from the switch slice (where the C2C links attach) to the MEM slice beside it."""
        return 1

    @property
    def switch_to_vxm_hops(self) -> int:
        pos = self.chip.position
        return pos["VXM"] - pos["SXM_W"]

    @property
    def inject_cycles(self) -> int:
        return _d_func("mem.read") + self.switch_to_buffer_hops + _d_func("c2c.send")

    @property
    def eject_cycles(self) -> int:
        return _d_func("c2c.receive") + self.switch_to_buffer_hops + _d_func("mem.write")

    @property
    def forward_cycles(self) -> int:
        return self.eject_cycles + self.inject_cycles

    @property
    def reduce_cycles(self) -> int:
        return (_d_func("c2c.receive") + 2 * self.switch_to_vxm_hops + _d_func("vxm.simple")
                + _d_func("mem.write"))

    # ---- links ----
    def latency_cycles(self, kind: str) -> int:
        return self.spec.latency_cycles(kind)

    @property
    def spread_min_flits(self) -> int:
        """Fewest flits for which sending some over a one-hop-longer detour can finish sooner.

        n flits on the direct route finish after n x flit + hop; moving k to a detour that costs one more
        hop and a forward finishes both by max((n - k) x flit + hop, k x flit + 2 hop + forward), which beats
        the direct route iff n x flit > hop + forward."""
        return int((self.hop_cycles("local") + self.forward_cycles) // self.flit_cycles) + 1

    def hop_cycles(self, kind: str = "local") -> float:
        """One flit over one link, start of its slot to fully arrived: serialisation plus latency."""
        return self.flit_cycles + self.latency_cycles(kind)
