"""Routes between two chips: every minimal path, and Valiant-style non-minimal paths via another group.

The network is "scheduled, not routed" (ISCA22): the compiler picks source routes, minimal or not, and
spreads big tensors over many of them. These functions list the candidates; scheduling is elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlpu.system.topology import Topology


@dataclass(frozen=True)
class Path:
    chips: tuple[int, ...]  # source first, destination last
    links: tuple[int, ...]  # links[i] joins chips[i] and chips[i + 1]

    @property
    def hops(self) -> int:
        return len(self.links)


def minimal_paths(topo: Topology, src: int, dst: int, limit: int | None = None,
                  to_dst: np.ndarray | None = None) -> list[Path]:
    """Every shortest path from src to dst (parallel links give distinct paths), in order of chip ids.

    `to_dst`, the hop counts to dst (`topo.graph.distances(dst)`), may be passed in by callers that
    route many transfers to one chip."""
    topo.check_chip(src)
    topo.check_chip(dst)
    if to_dst is None:
        to_dst = topo.graph.distances(dst)
    paths: list[Path] = []
    # Depth-first, always stepping to a neighbour one hop closer to dst.
    stack = [((src,), ())]
    while stack and (limit is None or len(paths) < limit):
        chips, links = stack.pop()
        here = chips[-1]
        if here == dst:
            paths.append(Path(chips, links))
            continue
        nbrs, edges = topo.graph.adjacent(here)
        closer = to_dst[nbrs] == to_dst[here] - 1
        for v, e in reversed(list(zip(nbrs[closer].tolist(), edges[closer].tolist(), strict=True))):
            stack.append((chips + (v,), links + (e,)))
    return paths


def nonminimal_paths(topo: Topology, src: int, dst: int, limit: int | None = None) -> list[Path]:
    """Valiant-style routes: src to an intermediate group, then on to dst; only those longer than minimal.

    The groups are the level where src and dst part: other racks if they are in different racks, other
    nodes of the rack if they are in different nodes, other chips of the node if they share a node.
    Each route enters its group at the chip nearest to src by a shortest path, then takes the shortest
    path on to dst that avoids the chips already used (lowest chip ids first, so results are stable).
    Sorted by hop count, then by chip ids.
    """
    topo.check_chip(src)
    topo.check_chip(dst)
    if src == dst:
        return []
    sizes = (*topo.hierarchy, 1)
    level = next(i for i, size in enumerate(sizes) if src // size != dst // size)
    size = sizes[level]
    block = topo.chips if level == 0 else sizes[level - 1]  # the enclosing group holding src and dst
    first = src // block * block
    from_src = topo.graph.distances(src)
    minimal = from_src[dst]
    routes = []
    for start in range(first, min(first + block, topo.chips), size):
        if start // size in (src // size, dst // size):
            continue
        group = np.arange(start, min(start + size, topo.chips))
        group = group[from_src[group] >= 0]  # chips cut off (by failed links) cannot be passed through
        if not group.size:
            continue
        via = int(group[np.argmin(from_src[group])])
        to_via = _descend(topo, via, from_src)[::-1]
        used = np.array([c for c, _ in to_via[:-1]], dtype=np.int64)
        if np.any(used == dst):
            continue
        # The second leg avoids the chips of the first, so the route never crosses itself.
        to_dst = topo.graph.distances(dst, avoid=used)
        if to_dst[via] >= 0 and from_src[via] + to_dst[via] > minimal:
            routes.append(_join(to_via, _descend(topo, via, to_dst)))
    routes.sort(key=lambda p: (p.hops, p.chips))
    return routes[:limit]


def _descend(topo: Topology, start: int, dist: np.ndarray) -> list[tuple[int, int]]:
    """(chip, link used to reach it) from `start` down a distance field to its zero, lowest ids first."""
    steps = [(start, -1)]
    while dist[steps[-1][0]] > 0:
        nbrs, edges = topo.graph.adjacent(steps[-1][0])
        i = int(np.flatnonzero(dist[nbrs] == dist[steps[-1][0]] - 1)[0])
        steps.append((int(nbrs[i]), int(edges[i])))
    return steps


def _join(to_via: list[tuple[int, int]], from_via: list[tuple[int, int]]) -> Path:
    """A path from its two legs: to_via ends at via, from_via starts there."""
    # In to_via (reversed descent) the link stored with a chip is the one towards the *next* chip.
    chips = [c for c, _ in to_via] + [c for c, _ in from_via[1:]]
    links = [e for _, e in to_via[:-1]] + [e for _, e in from_via[1:]]
    return Path(tuple(chips), tuple(links))
