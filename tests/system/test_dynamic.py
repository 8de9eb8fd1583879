import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.system import topology
from openlpu.system.dynamic import compare, random_traffic, simulate
from openlpu.system.paths import minimal_paths
from openlpu.system.schedule import Transfer, schedule

RACK = topology.build(chips=72)


@pytest.mark.parametrize("routing", ["minimal", "adaptive"])
def test_alone_on_the_network_a_dynamic_transfer_takes_as_long_as_a_scheduled_one(routing):
    # Same links, flits and chip cycles: without contention (and with one minimal route, so that adaptive
    # routing has no choice) the two networks must agree exactly.
    for transfer in (Transfer(0, 1, 320), Transfer(0, 9, 3000, earliest=50)):
        assert len(minimal_paths(RACK, transfer.src, transfer.dst)) == 1
        fixed = schedule(RACK, [transfer], nonminimal=False).completion
        assert np.array_equal(simulate(RACK, [transfer], routing).completion, fixed)


def test_a_queue_serves_one_flit_per_slot():
    # Two 10-flit transfers from chip 0 to chip 1 at once share one link: 20 slots, whatever the order.
    slot = 2952 / 125
    run = simulate(topology.build(chips=8), [Transfer(0, 1, 3200), Transfer(0, 1, 3200)], "adaptive")
    alone = simulate(topology.build(chips=8), [Transfer(0, 1, 3200)], "adaptive").completion[0]
    assert run.completion.max() == pytest.approx(alone + 10 * slot, abs=1)
    assert run.flit_hops == 20


def test_only_the_scheduled_network_repeats_itself():
    traffic = random_traffic(RACK, 60, 12_000, seed=4, window_cycles=3000)
    rows = {r["mode"]: r for r in compare(RACK, traffic, seeds=(0, 1, 2), jitter_cycles=24)}
    assert set(rows) == {"scheduled", "dynamic minimal", "dynamic adaptive"}
    assert rows["scheduled"]["p99_spread_ns"] == 0 and rows["scheduled"]["max_spread_ns"] == 0
    assert rows["dynamic minimal"]["max_spread_ns"] > 0
    for r in rows.values():
        assert r["p50_ns"] <= r["p99_ns"] <= r["max_ns"]


def test_random_traffic_and_bad_routing():
    traffic = random_traffic(RACK, 50, 100, seed=1, window_cycles=10)
    assert all(t.src != t.dst and 0 <= t.earliest <= 10 for t in traffic)
    with pytest.raises(UserError, match="unknown routing"):
        simulate(RACK, traffic, "valiant")
