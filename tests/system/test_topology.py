from collections import Counter

import networkx as nx
import numpy as np
import pytest

from conftest import as_networkx
from openlpu.errors import UserError
from openlpu.system import topology
from openlpu.system.spec import GROQ_V1


def pair_counts(topo, unit):
    """Links between each pair of units (unit = chips per node or per rack)."""
    units = np.sort(topo.ends // unit, axis=1)
    return Counter(map(tuple, units[units[:, 0] != units[:, 1]].tolist()))


@pytest.mark.parametrize("chips", [1, 2, 4, 8])
def test_a_node_is_fully_connected_by_local_links(chips):
    topo = topology.build(chips=chips)
    assert (topo.chips, topo.nodes, topo.racks, topo.spare_chips) == (chips, 1, 1, 0)
    assert topo.local_links == chips * (chips - 1) // 2 and topo.global_links == 0
    assert topo.diameter() == min(chips - 1, 1)
    assert {tuple(e) for e in topo.ends.tolist()} == {(i, j) for i in range(chips) for j in range(i + 1, chips)}


def test_a_rack_doubly_connects_its_nine_nodes():
    rack = topology.build(chips=72)
    assert (rack.chips, rack.nodes, rack.racks, rack.spare_chips, rack.active_chips) == (72, 9, 1, 8, 64)
    assert rack.local_links == 9 * 28
    assert rack.global_links == 72 == 144 // 2  # 144 ports doubly connect the nodes
    assert pair_counts(rack, 8) == {(a, b): 2 for a in range(9) for b in range(a + 1, 9)}
    assert rack.rack_to_rack_links == 0
    assert rack.sram_bytes == 72 * 220 * 2**20


@pytest.mark.parametrize("racks", [2, 3, 8, 145])
def test_racks_are_dragonfly_groups_with_equal_links_between_each_pair(racks, full_scale):
    topo = full_scale if racks == 145 else topology.dragonfly(racks)
    per_pair = 144 // (racks - 1)
    assert topo.chips == 72 * racks and topo.spare_chips == 8 * racks
    assert topo.local_links == racks * 9 * 28
    assert topo.rack_to_rack_links == per_pair * racks * (racks - 1) // 2
    assert topo.global_links == racks * 72 + topo.rack_to_rack_links
    assert set(pair_counts(topo, 72).values()) == {per_pair}
    assert len(pair_counts(topo, 72)) == racks * (racks - 1) // 2
    degree = np.bincount(topo.ends.ravel(), minlength=topo.chips)
    assert degree.max() <= 7 + 4
    if 144 % (racks - 1) == 0:  # every global port in use
        assert np.all(degree == 11)


def test_links_respect_the_node_boundaries_and_never_loop(full_scale):
    nodes = full_scale.ends // 8
    assert np.all(full_scale.ends[:, 0] != full_scale.ends[:, 1])
    assert np.all((nodes[:, 0] == nodes[:, 1]) == ~full_scale.is_global)


def test_thirty_three_nodes_wire_every_node_pair_directly():
    topo = topology.build(chips=264)
    assert (topo.nodes, topo.spare_chips) == (33, 0)
    assert topo.local_links == 33 * 28 and topo.global_links == 33 * 32 // 2
    assert set(pair_counts(topo, 8).values()) == {1} and len(pair_counts(topo, 8)) == 33 * 32 // 2
    assert topo.diameter() == 3  # ISCA22: local hop to the port, global hop, local hop to the chip


def test_links_carry_their_kind_lanes_rate_and_latency():
    rack = topology.build(chips=72)
    local, glob = rack.link(0), rack.link(len(rack.ends) - 1)
    assert (local.a, local.b, local.kind, local.lanes, local.lane_gbps) == (0, 1, "local", 4, 25.0)
    assert local.latency_cycles == GROQ_V1.link_latency_cycles
    assert glob.kind == "global" and glob.latency_cycles == GROQ_V1.global_link_latency_cycles
    assert [link.id for link in rack.links()] == list(range(324))


def test_chip_ids_are_rack_node_chip():
    topo = topology.dragonfly(3)
    assert topo.chip_id(2, 4, 5) == (2 * 9 + 4) * 8 + 5
    for chip in (0, 71, 72, 150, 215):
        loc = topo.location(chip)
        assert topo.chip_id(loc.rack, loc.node, loc.chip) == chip
    with pytest.raises(UserError, match="chip 216 does not exist"):
        topo.location(216)
    with pytest.raises(UserError, match="not a place"):
        topo.chip_id(0, 9, 0)


@pytest.mark.parametrize("build", [lambda: topology.build(chips=72), lambda: topology.dragonfly(2),
                                   lambda: topology.dragonfly(3), lambda: topology.fully_connected_nodes(5),
                                   lambda: topology.build(chips=8)])
def test_diameter_matches_networkx(build):
    topo = build()
    assert topo.diameter() == topo.diameter(exhaustive=True) == nx.diameter(nx.Graph(as_networkx(topo)))


@pytest.mark.parametrize("build", [lambda: topology.build(chips=72), lambda: topology.dragonfly(8),
                                   lambda: topology.build(chips=264), lambda: topology.build(chips=4)])
def test_rotating_ids_by_the_symmetry_step_maps_the_wiring_onto_itself(build, full_scale):
    for topo in (build(), full_scale):
        rotated = np.sort((topo.ends + topo.symmetry_step) % topo.chips, axis=1)
        assert Counter(map(tuple, rotated.tolist())) == Counter(map(tuple, topo.ends.tolist()))


def test_full_scale_diameter(full_scale):
    rack = topology.build(chips=72)
    # One link between two racks: reach its chip inside the rack, cross, reach the chip: rack + 1 + rack.
    assert full_scale.diameter() == 2 * rack.diameter() + 1 == 7
    assert full_scale.diameter(exhaustive=True) == 7
    # Counting nodes as virtual routers (ISCA22): local, node to node, global, node to node, local.
    assert full_scale.router_diameter() == 5


def test_router_diameter_adds_one_local_hop_at_each_end():
    assert topology.build(chips=8).router_diameter() == 1
    assert topology.build(chips=72).router_diameter() == 1 + 2
    assert topology.dragonfly(2).router_diameter() == 2 + 2  # node, then the other rack, then its node


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"chips": 3}, "3 chips cannot be built: choose 1, 2, 4 or 8 (one node), 264 (33 fully connected nodes) "
                   "or a multiple of 72 up to 10,440 (1 to 145 racks)."),
    ({"chips": 0}, "0 chips cannot be built"),
    ({"chips": 20000}, "20000 chips cannot be built"),
    ({"chips": 100}, "100 chips cannot be built"),
    ({"racks": 0}, "0 racks cannot be built: choose 1 to 145 racks."),
    ({"racks": 146}, "146 racks cannot be built"),
])
def test_unbuildable_sizes_say_what_is_buildable(kwargs, message):
    with pytest.raises(UserError) as err:
        topology.build(**kwargs)
    assert str(err.value).startswith(message)


def test_fully_connected_nodes_are_bounded_by_the_ports():
    with pytest.raises(UserError, match="choose 2 to 33 nodes"):
        topology.fully_connected_nodes(34)
