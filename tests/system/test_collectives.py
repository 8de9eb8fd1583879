import math

import numpy as np
import pytest
from netkit import EJECT, INJECT, LATENCY, REDUCE, SLOT, first_slot, start

from openlpu.errors import UserError
from openlpu.system import topology
from openlpu.system.collectives import active_chips, compile_collective, groups, lower_bound, run

NODE = topology.build(chips=8)
RACK = topology.build(chips=72)


def test_levels_follow_the_wiring_and_spare_nodes_sit_out():
    assert groups(NODE).sizes == (8,)
    rack = groups(RACK)
    assert rack.sizes == (8, 8) and rack.names == ("node", "rack")
    assert set(range(64, 72)).isdisjoint(rack.chips)  # node 8 of the rack is the hot spare
    assert groups(topology.dragonfly(8)).sizes == (8, 8, 8)
    assert groups(topology.build(chips=264)).sizes == (8, 33)
    assert len(active_chips(topology.dragonfly(3))) == 3 * 64
    # Chips that do not fill nodes evenly make one flat level.
    assert groups(RACK, [0, 1, 8]).sizes == (3,)
    # A broadcast root is renumbered to position 0, keeping the level structure.
    g = groups(RACK, root=19)
    assert g.pos[np.flatnonzero(g.chips == 19)[0]] == 0 and sorted(g.pos) == list(range(64))


@pytest.mark.parametrize("topo", [NODE, RACK, topology.dragonfly(2)], ids=lambda t: t.name)
def test_allreduce_gives_every_chip_the_numpy_sum(topo):
    n = groups(topo).n
    rng = np.random.default_rng(0)
    xs = [rng.integers(-1000, 1000, 333).astype(np.int32) for _ in range(n)]
    plan = compile_collective("allreduce", topo, xs[0].nbytes)
    for out in run(plan, xs):
        assert np.array_equal(out, np.sum(xs, axis=0, dtype=np.int32))


def test_float_allreduce_is_close_to_numpy_and_identical_on_every_chip():
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((10, 48)).astype(np.float32) for _ in range(64)]
    outs = run(compile_collective("allreduce", RACK, xs[0].nbytes), xs)
    np.testing.assert_allclose(outs[0], np.sum(xs, axis=0), rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(o, outs[0]) for o in outs)


@pytest.mark.parametrize("topo", [NODE, RACK], ids=lambda t: t.name)
def test_reduce_scatter_allgather_broadcast_and_send(topo):
    n = groups(topo).n
    rng = np.random.default_rng(2)
    m = 70
    xs = [rng.integers(-50, 50, n * m).astype(np.int16) for _ in range(n)]
    total = np.sum(xs, axis=0, dtype=np.int16)
    out = run(compile_collective("reduce-scatter", topo, m * 2), xs)
    assert all(np.array_equal(out[r], total[r * m:(r + 1) * m]) for r in range(n))

    blocks = [rng.standard_normal(m) for _ in range(n)]
    out = run(compile_collective("allgather", topo, m * 8), blocks)
    assert all(np.array_equal(o, np.stack(blocks)) for o in out)

    root = int(groups(topo).chips[n // 2 + 1])
    out = run(compile_collective("broadcast", topo, m * 8, root=root), blocks)
    assert all(np.array_equal(o, blocks[n // 2 + 1]) for o in out)

    out = run(compile_collective("send", topo, m * 8, root=0, dst=topo.chips - 1), [blocks[0], blocks[1] * 0])
    assert np.array_equal(out[1], blocks[0])


def test_one_vector_allreduce_in_a_node_is_two_hops_and_one_add():
    plan = compile_collective("allreduce", NODE, 320)
    reduced = start(first_slot(INJECT) + 1) + LATENCY + REDUCE  # reduce-scatter: the vector's owner adds
    gathered = start(first_slot(reduced + INJECT) + 1) + LATENCY + EJECT  # all-gather: sent back to everyone
    assert plan.latency == gathered
    assert [s.name for s in plan.steps] == ["reduce-scatter node", "allgather node"]


def test_broadcasting_one_vector_needs_no_scatter():
    plan = compile_collective("broadcast", RACK, 320, root=19)
    assert plan.steps[0].name == "scatter" and not plan.steps[0].moves
    assert len(plan.schedule.transfers) == 63  # the root's vector reaches the 63 others by all-gather


def test_a_big_allreduce_in_a_node_runs_at_the_link_bandwidth():
    nbytes = 512 * 1024
    plan = compile_collective("allreduce", NODE, nbytes)
    bound = lower_bound(plan)
    # Each pass sends 1/8 of the tensor over each of 7 links: the beta bound is those flits back to back.
    per_link = math.ceil(nbytes / 320) / 8
    assert bound["beta_cycles"] == pytest.approx(2 * per_link * SLOT)
    assert plan.latency >= bound["cycles"]
    # Pipelined: at most the two passes' slack (one hop and an add each way) above the bound.
    assert plan.latency <= bound["beta_cycles"] + 2 * (SLOT + LATENCY) + REDUCE + INJECT + EJECT + 4 * SLOT


@pytest.mark.parametrize("op", ["allreduce", "reduce-scatter", "allgather", "broadcast"])
def test_no_collective_beats_its_lower_bound(op):
    for nbytes in (320, 20_000):
        plan = compile_collective(op, RACK, nbytes, root=0 if op == "broadcast" else None)
        bound = lower_bound(plan)
        assert bound["hops"] == 3
        assert plan.latency >= bound["cycles"] >= bound["alpha_cycles"] == 3 * (SLOT + LATENCY)


def test_levels_are_pipelined_vector_by_vector():
    plan = compile_collective("allreduce", RACK, 64 * 1024)
    node_step, rack_step = plan.steps[0], plan.steps[1]
    first_rack_departure = min(plan.schedule.hop_depart[np.isin(plan.schedule.flit_transfer[plan.schedule.hop_flit],
                                                                [m.tid for m in rack_step.moves])])
    assert first_rack_departure < node_step.end  # the rack level starts on the first reduced vectors


def test_wrong_inputs_are_refused():
    plan = compile_collective("allreduce", NODE, 64)
    with pytest.raises(UserError, match="needs 8 input arrays"):
        run(plan, [np.zeros(16, np.int32)] * 7)
    with pytest.raises(UserError, match="compiled for 64 bytes"):
        run(plan, [np.zeros(8, np.int32)] * 8)
    with pytest.raises(UserError, match="unknown collective"):
        compile_collective("alltoall", NODE, 64)
    with pytest.raises(UserError, match="root chip 70 is not one of the participants"):
        compile_collective("broadcast", RACK, 64, root=70)  # a chip of the hot-spare node
