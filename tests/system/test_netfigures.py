import pytest
from netkit import INJECT, LATENCY, REDUCE, first_slot, start, through

from openlpu.system import topology
from openlpu.system.netfigures import detour_crossover_flits, farthest_pair, figures, reduce_chain, worst_vector_cycles
from openlpu.system.published import PUBLISHED
from openlpu.system.schedule import Transfer, schedule
from openlpu.system.timing import NetworkTiming


def test_each_hop_of_a_pipelined_reduction_adds_then_sends_on():
    arrivals = reduce_chain()
    assert len(arrivals) == 7 and arrivals[0] == start(first_slot(INJECT) + 1) + LATENCY
    for a, b in zip(arrivals, arrivals[1:], strict=False):
        assert b == start(first_slot(a + REDUCE + INJECT) + 1) + LATENCY


def test_worst_case_vector_latency_at_full_scale_is_seven_forwarded_hops(full_scale):
    src, dst = farthest_pair(full_scale)
    assert full_scale.graph.distances(src)[dst] == full_scale.diameter() == 7
    assert worst_vector_cycles(full_scale) == (through(7), 7)
    assert worst_vector_cycles(topology.build(chips=72)) == (through(3), 3)


def test_detours_start_to_pay_at_the_crossover_and_never_below_the_closed_form_floor():
    node = topology.build(chips=8)
    flits = detour_crossover_flits()
    assert flits >= NetworkTiming(node.spec).spread_min_flits
    for n, gains in ((flits - 1, False), (flits, True)):
        t = [Transfer(0, 1, n * 320)]
        assert (schedule(node, t, spread_bytes=0).makespan < schedule(node, t, nonminimal=False).makespan) == gains


def test_figures_are_the_model_over_the_published_numbers(full_scale):
    rows = {r["figure"]: r for r in figures()}
    full = rows["10,440 chips: worst-case vector, end to end"]
    assert full["model"] == pytest.approx(through(7) / 900e6)
    assert full["published"] == PUBLISHED.full_scale_latency_s
    assert full["ratio"] == pytest.approx(full["model"] / full["published"])
    hop = rows["pipelined all-reduce hop"]
    arrivals = reduce_chain()
    assert hop["model"] == pytest.approx((arrivals[-1] - arrivals[0]) / 6 / 900e6)
    assert hop["published"] == PUBLISHED.pipelined_hop_s
    assert all(r["source"].startswith("ISCA22") for r in rows.values())
