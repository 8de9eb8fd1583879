import dataclasses

import numpy as np
import pytest

from openlpu.errors import UserError
from openlpu.sources import sources
from openlpu.system import topology
from openlpu.system.clocks import GROQ_SYNC, DriftError, SyncSpec, check_drift, plan_deskews, simulate, spanning_tree
from openlpu.system.spec import GROQ_V1

SLACK = 0.5 * 2952 / 125  # half a flit time, in cycles


def test_every_sync_field_cites_a_source_and_nonsense_is_refused():
    for name, cite in sources(GROQ_SYNC).items():
        if name != "name":
            assert cite.startswith(("ISCA22", "assumed: ")), name
    with pytest.raises(UserError, match="hac_epoch_cycles = 300 must be between 1 and 2\\^hac_bits = 256"):
        SyncSpec(hac_epoch_cycles=300)
    assert GROQ_SYNC.slack_cycles(GROQ_V1) == pytest.approx(SLACK)


def test_the_spanning_tree_steps_one_hop_towards_chip_0():
    rack = topology.build(chips=72)
    parent, via = spanning_tree(rack)
    dist = rack.graph.distances(0)
    assert parent[0] == -1 and np.all(parent[1:] >= 0)
    assert np.all(dist[parent[1:]] == dist[1:] - 1)
    assert all(sorted(rack.ends[via[c]]) == sorted((c, parent[c])) for c in range(1, 72))


@pytest.mark.parametrize("topo", [topology.build(chips=8), topology.build(chips=72), topology.dragonfly(8)],
                         ids=lambda t: t.name)
def test_hacs_align_within_the_bound_and_programs_start_together(topo):
    run = simulate(topo, 0, seed=3)
    depth = int(topo.graph.distances(0).max())
    assert run.depth == depth and run.converged_after <= depth  # one exchange period per tree level
    bound = GROQ_SYNC.residual_bound(topo.spec, depth)
    assert 0 < run.residual_skew <= bound
    assert run.start_skew <= bound
    # Programs start after the go message crossed the tree: at least depth x the fastest link.
    assert run.alignment_cycles >= depth * topo.spec.link_latency_min_cycles


def test_runtime_deskews_keep_the_skew_inside_the_slack():
    rack = topology.build(chips=72)
    run = simulate(rack, 1_000_000, seed=5)
    interval = run.deskew.interval_cycles
    room = SLACK - GROQ_SYNC.residual_bound(rack.spec, run.depth)
    assert interval == int(room / (2 * 100e-6))  # two chips at +-100 ppm drift apart 2e-4 cycles per cycle
    assert run.deskew.deskews == -(-1_000_000 // interval) - 1
    assert run.deskew.cost_cycles == run.deskew.deskews * 252
    assert run.skew_after_deskew < run.skew_before_deskew <= SLACK


def test_a_schedule_longer_than_the_slack_allows_is_refused():
    rack = topology.build(chips=72)
    interval = plan_deskews(rack, 1).interval_cycles
    check_drift(rack, interval)  # fits without a deskew
    with pytest.raises(DriftError, match=f"drift past the links' 11.8-cycle slack after {interval:,} cycles: "
                                         "insert 2 RUNTIME_DESKEW"):
        check_drift(rack, 3 * interval)
    assert check_drift(rack, 3 * interval, deskews=2).deskews == 2
    assert plan_deskews(rack, 10**9, dataclasses.replace(GROQ_SYNC, clock_ppm=0)).deskews == 0


def test_uncalibrated_link_latencies_leave_no_slack():
    # With only the nominal latency known, one link may be off by 11 cycles (228 - 217): beyond the slack.
    with pytest.raises(UserError, match="calibrate link latencies"):
        plan_deskews(topology.build(chips=8), 1000, dataclasses.replace(GROQ_SYNC, latency_calibrated=False))
