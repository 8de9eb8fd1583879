import math

import numpy as np
import pytest
from netkit import EJECT, FORWARD, INJECT, LATENCY, SLOT, first_slot, start

from openlpu.errors import UserError
from openlpu.system import topology
from openlpu.system.dynamic import random_traffic
from openlpu.system.paths import Path
from openlpu.system.schedule import ScheduleConflict, Scheduler, Transfer, schedule

NODE = topology.build(chips=8)


def test_one_flit_over_one_link():
    sched = schedule(NODE, [Transfer(0, 5, 320)])
    s = first_slot(INJECT)
    assert sched.flit_arrival[0] == start(s + 1) + LATENCY
    assert sched.completion[0] == start(s + 1) + LATENCY + EJECT
    assert list(sched.hop_slot) == [s]


def test_a_link_carries_one_flit_per_slot_back_to_back():
    n = 20
    sched = schedule(NODE, [Transfer(2, 3, n * 320 - 7, earliest=100)], nonminimal=False)
    s0 = first_slot(100 + INJECT)
    assert list(sched.hop_slot) == list(range(s0, s0 + n))
    assert sched.completion[0] == start(s0 + n) + LATENCY + EJECT


def test_a_big_tensor_is_spread_over_detours_and_beats_one_link():
    nbytes = 64 * 1024
    flits = math.ceil(nbytes / 320)
    direct = schedule(NODE, [Transfer(0, 5, nbytes)], nonminimal=False)
    spread = schedule(NODE, [Transfer(0, 5, nbytes)])
    routes = spread.routes(0)
    assert {p.chips for p, _ in routes} == {(0, 5)} | {(0, m, 5) for m in (1, 2, 3, 4, 6, 7)}
    assert sum(c for _, c in routes) == flits
    # Seven routes leave chip 0 on seven links: no faster than flits / 7 slots, much faster than one link.
    assert spread.makespan >= flits / 7 * SLOT + LATENCY
    assert spread.makespan < direct.makespan / 4


def test_below_the_break_even_a_detour_is_never_used():
    timing = Scheduler(NODE).timing
    for flits in range(1, timing.spread_min_flits):
        sched = schedule(NODE, [Transfer(0, 5, flits * 320)], spread_bytes=0)
        assert [p.chips for p, _ in sched.routes(0)] == [(0, 5)]


def test_busy_network_no_slot_twice_and_no_flit_leaves_before_it_arrived():
    rack = topology.build(chips=72)
    traffic = random_traffic(rack, 120, 5000, seed=3, window_cycles=2000)
    sched = schedule(rack, traffic)
    pairs = np.stack([sched.hop_channel, sched.hop_slot], axis=1)
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    order = np.lexsort((sched.hop_index, sched.hop_flit))
    flit, depart, arrive = sched.hop_flit[order], sched.hop_depart[order], sched.hop_arrive[order]
    same = flit[1:] == flit[:-1]
    assert np.all(depart[1:][same] >= arrive[:-1][same] + FORWARD)
    first = np.r_[True, ~same]
    assert np.all(depart[first] >= sched.flit_ready[flit[first]] + INJECT)
    # Each hop's far chip is the next hop's near chip, and every route ends at its transfer's destination.
    assert np.array_equal(sched.hop_to[order][:-1][same], sched.hop_from[order][1:][same])
    last = np.r_[~same, True]
    dst = np.array([t.dst for t in traffic])[sched.flit_transfer[flit[last]]]
    assert np.array_equal(sched.hop_to[order][last], dst)


def test_the_same_transfers_give_the_same_schedule():
    rack = topology.build(chips=72)
    traffic = random_traffic(rack, 40, 9000, seed=1)
    a, b = schedule(rack, traffic), schedule(rack, traffic)
    assert np.array_equal(a.hop_slot, b.hop_slot) and np.array_equal(a.completion, b.completion)


def test_forcing_a_taken_slot_names_both_transfers_the_link_and_the_slot():
    sched = Scheduler(NODE)
    sched.add(Transfer(0, 5, 320, name="weights"))
    with pytest.raises(ScheduleConflict) as err:
        sched.force(Transfer(0, 5, 320, name="activations"), Path((0, 5), (4,)), [[1]])
    message = str(err.value)
    assert "transfer 1 (activations: chip 0 -> chip 5)" in message
    assert "transfer 0 (weights: chip 0 -> chip 5)" in message
    assert "link 4 (chip 0 -> chip 5) in slot 1 (cycles 24-47)" in message
    # The other direction of the link is a separate channel: the same slot is free there.
    sched.force(Transfer(5, 0, 320), Path((5, 0), (4,)), [[1]])


def test_forcing_two_flits_into_one_slot_or_leaving_too_early_is_refused():
    sched = Scheduler(NODE)
    with pytest.raises(ScheduleConflict, match="itself"):
        sched.force(Transfer(0, 1, 640), Path((0, 1), (0,)), [[3, 3]])
    with pytest.raises(UserError, match="before it is there"):
        sched.force(Transfer(0, 1, 320, earliest=100), Path((0, 1), (0,)), [[2]])
    with pytest.raises(UserError, match="before it is there"):  # the second hop before the first arrives
        sched.force(Transfer(0, 2, 320), Path((0, 1, 2), (0, 7)), [[1], [5]])
    tid = sched.force(Transfer(0, 2, 320), Path((0, 1, 2), (0, 7)), [[1], [20]])
    assert sched.arrivals(tid)[0] == start(21) + LATENCY


def test_failed_links_are_routed_around():
    sched = schedule(NODE, [Transfer(0, 5, 320)], failed_links=(4,))
    assert 4 not in sched.hop_link
    assert sched.routes(0)[0][0].hops == 2
    alone = topology.build(chips=2)
    with pytest.raises(UserError, match="no route from chip 0 to chip 1"):
        schedule(alone, [Transfer(0, 1, 320)], failed_links=(0,))


def test_bad_transfers_are_refused():
    with pytest.raises(UserError, match="to itself"):
        schedule(NODE, [Transfer(3, 3, 320)])
    with pytest.raises(UserError, match="chip 9 does not exist"):
        schedule(NODE, [Transfer(0, 9, 320)])
    with pytest.raises(UserError, match="2 flits, but 3 ready cycles"):
        schedule(NODE, [Transfer(0, 1, 640, ready=np.zeros(3))])
    with pytest.raises(UserError, match="link 99 does not exist"):
        schedule(NODE, [Transfer(0, 1, 640)], failed_links=(99,))
