import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.system import topology
from openlpu.system.collectives import groups
from openlpu.system.faults import links_of, parse_link, probe_links, run_with_faults

NODE = topology.build(chips=8)
TWO_RACKS = topology.dragonfly(2)


def test_links_are_named_by_id_or_by_their_chips():
    rack = topology.build(chips=72)
    assert parse_link(NODE, "4") == 4 and parse_link(NODE, "0-5") == 4 and parse_link(NODE, "5-0") == 4
    parallel = np.flatnonzero(np.all(rack.ends == rack.ends[300], axis=1))
    a, b = rack.ends[300]
    assert [parse_link(rack, f"{a}-{b}#{i}") for i in range(len(parallel))] == parallel.tolist()
    with pytest.raises(UserError, match="chips 0 and 9 are joined by 0 link"):
        parse_link(rack, "0-9")
    with pytest.raises(UserError, match="cannot read the link 'north'"):
        parse_link(NODE, "north")
    assert len(links_of(TWO_RACKS, 3)) == 11  # 7 local + 4 global
    assert len(links_of(rack, 3)) == 9  # alone, a rack leaves its 2 ports per chip to other racks unused


def _sum_inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-100, 100, 4000).astype(np.int32) for _ in range(n)]
    return xs, np.sum(xs, axis=0, dtype=np.int32)


def test_a_dead_link_is_detected_and_the_replanned_allreduce_is_right():
    xs, total = _sum_inputs(8)
    result = run_with_faults("allreduce", NODE, xs, xs[0].nbytes, [parse_link(NODE, "0-5")])
    assert [d.link for d in result.detections] == [4] and result.detections[0].chip in (0, 5)
    assert result.replanned and not result.spare
    assert 4 not in result.plan.schedule.hop_link and 4 in result.first_plan.schedule.hop_link
    assert result.plan.latency > result.first_plan.latency  # chips 0 and 5 now talk over two hops
    assert all(np.array_equal(o, total) for o in result.outputs)


def test_a_link_the_collective_does_not_use_changes_nothing():
    xs, total = _sum_inputs(2)
    spare_link = parse_link(NODE, "6-7")
    result = run_with_faults("allreduce", NODE, xs, xs[0].nbytes, [spare_link], chips=[0, 1])
    assert not result.detections and not result.replanned
    assert all(np.array_equal(o, total) for o in result.outputs)


@pytest.mark.parametrize("op", ["allreduce", "reduce-scatter", "allgather"])
def test_a_chip_cut_off_moves_its_node_to_the_hot_spare(op):
    n = groups(TWO_RACKS).n
    m = 40
    rng = np.random.default_rng(1)
    xs = [rng.integers(-100, 100, m * (n if op == "reduce-scatter" else 1)).astype(np.int32) for _ in range(n)]
    result = run_with_faults(op, TWO_RACKS, xs, m * 4, links_of(TWO_RACKS, 80))
    assert result.spare == {c: c + 56 for c in range(80, 88)}  # node 10 -> node 17, the spare of rack 1
    assert set(range(136, 144)) <= set(result.plan.groups.chips.tolist())
    total = np.sum(xs, axis=0, dtype=np.int32)
    expected = (np.split(total, n) if op == "reduce-scatter" else [np.stack(xs)] * n if op == "allgather"
                else [total] * n)
    assert all(np.array_equal(o, e) for o, e in zip(result.outputs, expected, strict=True))


def test_with_no_spare_left_the_fault_is_reported():
    rack = topology.build(chips=72)
    xs, _ = _sum_inputs(64)
    with pytest.raises(UserError, match="no reachable hot-spare node left"):
        run_with_faults("allreduce", rack, xs, xs[0].nbytes, links_of(rack, 3) + links_of(rack, 20))


def test_probing_finds_exactly_the_dead_links():
    rack = topology.build(chips=72)
    dead = [parse_link(rack, "0-1"), 300, 301]
    assert sorted(d.link for d in probe_links(rack, dead)) == sorted(dead)
    assert probe_links(rack, []) == []
