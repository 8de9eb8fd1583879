"""Bisection: the fewest links crossing a cut of the chips into two halves, and their bandwidth.

The exact minimum is NP-hard in general. We start from the cuts the structure suggests (the first half of
the chip ids, i.e. whole racks or nodes; and every rack or node cut in half), plus a few seeded random
halves on systems small enough for them to be cheap, improve each with Kernighan-Lin (networkx,
deterministic from a given start) and keep the best: an upper bound on the minimum, exact on the small
systems where the tests can try every cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
from networkx.algorithms.community import kernighan_lin_bisection

from openlpu.system.topology import Topology

RANDOM_STARTS = 4
RANDOM_STARTS_UP_TO_CHIPS = 1024  # a Kernighan-Lin pass on the 10,440-chip system takes about a second


@dataclass(frozen=True)
class Cut:
    side: np.ndarray  # True for the chips of one half
    links: int  # links crossing the cut
    bytes_per_s: float  # their payload bandwidth, one direction


def crossing(topo: Topology, side: np.ndarray) -> int:
    return int(np.count_nonzero(side[topo.ends[:, 0]] != side[topo.ends[:, 1]]))


def bisection(topo: Topology) -> Cut:
    n = topo.chips
    ids = np.arange(n)
    starts = [ids < n // 2]
    group = topo.hierarchy[0]
    if n > group and n % group == 0 and group % 2 == 0:
        starts.append(ids % group < group // 2)
    if n <= RANDOM_STARTS_UP_TO_CHIPS:
        starts += [np.random.default_rng(seed).permutation(n) < n // 2 for seed in range(RANDOM_STARTS)]
    best = min(starts, key=lambda side: crossing(topo, side))
    if n >= 4:
        weighted = _weighted_graph(topo)
        for side in starts:
            half = set(ids[side].tolist())
            a, _ = kernighan_lin_bisection(weighted, partition=(half, set(range(n)) - half), weight="weight")
            improved = np.isin(ids, list(a))
            if crossing(topo, improved) < crossing(topo, best):
                best = improved
    links = crossing(topo, best)
    return Cut(best, links, links * topo.spec.link_bytes_per_s)


def _weighted_graph(topo: Topology) -> nx.Graph:
    """Chips joined by weight = number of parallel links (a networkx Graph keeps one edge per pair)."""
    pairs, count = np.unique(topo.ends, axis=0, return_counts=True)
    graph = nx.Graph()
    graph.add_nodes_from(range(topo.chips))
    graph.add_weighted_edges_from(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), count.tolist(), strict=True))
    return graph
