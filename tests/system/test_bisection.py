import itertools

import networkx as nx
import numpy as np
import pytest

from conftest import as_networkx
from openlpu.system import topology
from openlpu.system.bisection import bisection
from openlpu.system.spec import GROQ_V1


def brute_force_min_bisection(topo) -> int:
    """Every balanced cut with chip 0 on the first side, counted over the links."""
    n, best = topo.chips, None
    for rest in itertools.combinations(range(1, n), n // 2 - 1):
        side = np.zeros(n, bool)
        side[[0, *rest]] = True
        cut = int(np.count_nonzero(side[topo.ends[:, 0]] != side[topo.ends[:, 1]]))
        best = cut if best is None else min(best, cut)
    return best


@pytest.mark.parametrize(("build", "hand_count"), [
    (lambda: topology.build(chips=2), 1),
    (lambda: topology.build(chips=4), 2 * 2),
    (lambda: topology.build(chips=8), 4 * 4),  # K8: each of 4 chips reaches the other 4
    (lambda: topology.fully_connected_nodes(2), 32),  # node | node: the 8 x 4 global links between them
])
def test_small_systems_match_a_hand_count_and_every_cut(build, hand_count):
    topo = build()
    cut = bisection(topo)
    assert cut.links == hand_count == brute_force_min_bisection(topo)
    assert cut.bytes_per_s == pytest.approx(hand_count * GROQ_V1.link_bytes_per_s)


@pytest.mark.parametrize("build", [lambda: topology.build(chips=72), lambda: topology.dragonfly(2),
                                   lambda: topology.dragonfly(8), lambda: topology.build(chips=264)])
def test_larger_cuts_are_balanced_counted_right_and_bounded(build):
    topo = build()
    cut = bisection(topo)
    assert np.count_nonzero(cut.side) == topo.chips // 2
    graph = as_networkx(topo)
    half = set(np.flatnonzero(cut.side).tolist())
    assert cut.links == nx.cut_size(graph, half)
    # No balanced cut is below the spectral bound lambda_2 * n / 4 (Fiedler), so neither is ours.
    fiedler = np.linalg.eigvalsh(_laplacian(topo))[1]
    assert cut.links >= fiedler * topo.chips / 4 - 1e-9
    # And it is no worse than cutting the hierarchy by chip ids (whole racks or nodes on each side).
    ids = np.arange(topo.chips) < topo.chips // 2
    assert cut.links <= nx.cut_size(graph, set(np.flatnonzero(ids).tolist()))


def test_cutting_between_racks_crosses_the_links_of_the_rack_pairs():
    # 8 racks, 144 // 7 = 20 links between each pair: racks 0-3 | racks 4-7 crosses 4 x 4 x 20 links.
    topo = topology.dragonfly(8)
    assert nx.cut_size(as_networkx(topo), set(range(4 * 72))) == 4 * 4 * 20
    assert bisection(topo).links <= 4 * 4 * 20


def _laplacian(topo):
    lap = np.zeros((topo.chips, topo.chips))
    np.add.at(lap, (topo.ends[:, 0], topo.ends[:, 1]), -1)
    np.add.at(lap, (topo.ends[:, 1], topo.ends[:, 0]), -1)
    lap[np.diag_indices(topo.chips)] = np.bincount(topo.ends.ravel(), minlength=topo.chips)
    return lap
