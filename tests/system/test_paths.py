import networkx as nx
import pytest

from conftest import as_networkx
from openlpu.errors import UserError
from openlpu.system import topology
from openlpu.system.paths import minimal_paths, nonminimal_paths


def assert_walk(topo, path, src, dst):
    """The path starts and ends where asked and every step crosses the link it names."""
    assert path.chips[0] == src and path.chips[-1] == dst
    assert len(path.links) == len(path.chips) - 1 == path.hops
    for a, b, link in zip(path.chips, path.chips[1:], path.links, strict=False):
        assert sorted(topo.ends[link].tolist()) == sorted([a, b])
    assert len(set(path.chips)) == len(path.chips)  # no chip twice


PAIRS = [
    (lambda: topology.build(chips=8), [(0, 5)]),
    (lambda: topology.build(chips=72), [(0, 71), (0, 13), (3, 60), (17, 18)]),
    (lambda: topology.dragonfly(3), [(0, 215), (5, 100), (72, 80)]),
    (lambda: topology.build(chips=264), [(0, 263), (9, 130)]),
]


@pytest.mark.parametrize(("build", "pairs"), PAIRS)
def test_minimal_paths_are_exactly_the_shortest_walks(build, pairs):
    topo = build()
    graph = as_networkx(topo)
    for src, dst in pairs:
        paths = minimal_paths(topo, src, dst)
        for path in paths:
            assert_walk(topo, path, src, dst)
        assert {p.hops for p in paths} == {nx.shortest_path_length(graph, src, dst)}
        # Parallel links give distinct paths over the same chips; the chip sequences are networkx's.
        assert {p.chips for p in paths} == set(map(tuple, nx.all_shortest_paths(graph, src, dst)))
        assert len(set(paths)) == len(paths)


@pytest.mark.parametrize(("build", "pairs"), PAIRS)
def test_nonminimal_paths_detour_through_another_group(build, pairs):
    topo = build()
    for src, dst in pairs:
        minimal = minimal_paths(topo, src, dst)[0].hops
        detours = nonminimal_paths(topo, src, dst)  # may be empty when every detour is itself minimal
        level = next(size for size in (*topo.hierarchy, 1) if src // size != dst // size)
        for path in detours:
            assert_walk(topo, path, src, dst)
            assert path.hops > minimal
            groups = {chip // level for chip in path.chips}
            assert groups - {src // level, dst // level}  # it visits a third group
        assert [p.hops for p in detours] == sorted(p.hops for p in detours)


def test_inside_a_node_every_other_chip_is_a_two_hop_detour():
    detours = nonminimal_paths(topology.build(chips=8), 0, 5)
    assert [p.chips for p in detours] == [(0, m, 5) for m in (1, 2, 3, 4, 6, 7)]


def test_paths_at_full_scale(full_scale):
    src, dst = 0, full_scale.chips - 1
    paths = minimal_paths(full_scale, src, dst)
    assert paths and all(p.hops == paths[0].hops <= 7 for p in paths)
    detours = nonminimal_paths(full_scale, src, dst, limit=20)
    assert len(detours) == 20 and detours[0].hops > paths[0].hops
    for path in paths + detours:
        assert_walk(full_scale, path, src, dst)


def test_limit_and_unknown_chips():
    rack = topology.build(chips=72)
    assert len(minimal_paths(topology.dragonfly(2), 0, 143, limit=3)) == 3
    assert nonminimal_paths(rack, 4, 4) == [] and len(minimal_paths(rack, 4, 4)) == 1
    with pytest.raises(UserError, match="chip 72 does not exist"):
        minimal_paths(rack, 0, 72)
