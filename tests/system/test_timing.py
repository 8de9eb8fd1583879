import math

import numpy as np
import pytest
from netkit import D_FUNC, DEN, EJECT, FORWARD, INJECT, NUM, REDUCE, SWITCH_TO_VXM

from openlpu.system.spec import GROQ_V1
from openlpu.system.timing import NetworkTiming

TIMING = NetworkTiming(GROQ_V1)


def test_a_slot_is_one_flit_at_the_link_rate():
    assert TIMING.flit_fraction.numerator == NUM and TIMING.flit_fraction.denominator == DEN
    slots = np.arange(0, 5000)
    assert np.array_equal(TIMING.slot_start(slots), [math.ceil(s * NUM / DEN) for s in range(5000)])
    assert TIMING.slot_start(125) == 2952  # exact: no drift from the link rate over a long schedule


def test_first_slot_is_the_earliest_starting_at_or_after_a_cycle():
    cycles = np.arange(-3, 3000)
    first = TIMING.first_slot(cycles)
    assert np.all(TIMING.slot_start(first) >= cycles)
    assert np.all(TIMING.slot_start(first - 1) < cycles)


def test_chip_cycles_come_from_the_instruction_table_and_floorplan():
    assert SWITCH_TO_VXM == 45  # 44 MEM slices between the switch and the VXM
    assert (TIMING.inject_cycles, TIMING.eject_cycles) == (INJECT, EJECT)
    assert TIMING.forward_cycles == FORWARD
    assert TIMING.reduce_cycles == REDUCE
    assert 2 * SWITCH_TO_VXM + D_FUNC["vxm.simple"] < REDUCE


def test_a_detour_pays_only_beyond_hop_plus_forward_worth_of_flits():
    hop = NUM / DEN + GROQ_V1.link_latency_cycles
    n = TIMING.spread_min_flits
    assert (n - 1) * NUM / DEN <= hop + TIMING.forward_cycles < n * NUM / DEN
    assert TIMING.hop_cycles("local") == pytest.approx(hop)
