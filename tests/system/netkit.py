"""Network timing for the tests, derived on its own from the published link figures, the chip's
instruction table and its floorplan (not from `openlpu.system.timing`, which the tests check)."""

import math

from openlpu.chip.isa import LATENCY as ISA
from openlpu.chip.spec import TSP_V1

D_FUNC = {kind: timing[1] for kind, timing in ISA.items()}
SWITCH_TO_VXM = TSP_V1.floorplan.index("VXM") - TSP_V1.floorplan.index("SXM_W")
# 328 wire bytes at 4 lanes x 25 Gb/s is 26.24 ns = 23.616 cycles of 900 MHz = 2952/125.
NUM, DEN = 2952, 125
SLOT = NUM / DEN
LATENCY = 217  # ISCA22 Table 2 mean
INJECT = D_FUNC["mem.read"] + 1 + D_FUNC["c2c.send"]  # SRAM beside the switch -> link
EJECT = D_FUNC["c2c.receive"] + 1 + D_FUNC["mem.write"]  # link -> SRAM beside the switch
FORWARD = EJECT + INJECT
REDUCE = D_FUNC["c2c.receive"] + 2 * SWITCH_TO_VXM + D_FUNC["vxm.simple"] + D_FUNC["mem.write"]


def start(slot: int) -> int:
    """First cycle of a flit slot."""
    return math.ceil(slot * NUM / DEN)


def first_slot(cycle: int) -> int:
    """The earliest slot starting at or after `cycle`."""
    return next(s for s in range(max(cycle, 0) + 2) if start(s) >= cycle)


def through(hops: int) -> int:
    """One vector over `hops` idle links, SRAM to SRAM, forwarded through SRAM at every chip between."""
    t = INJECT
    for hop in range(hops):
        t = start(first_slot(t) + 1) + LATENCY + (FORWARD if hop < hops - 1 else EJECT)
    return t
