"""An undirected graph as compressed adjacency arrays, with breadth-first searches fast enough for 10k chips.

`eccentricities` runs 64 breadth-first searches at once, one bit of a uint64 per source, so the diameter
of the 10,440-chip system costs a handful of vectorised passes over its edges, not 10,440 Python loops.
"""

from __future__ import annotations

import numpy as np

_BITS = 64


class Graph:
    """Vertices 0..n-1; `edges` is an (m, 2) array of undirected edges, edge i joining edges[i]."""

    def __init__(self, n: int, edges: np.ndarray) -> None:
        self.n = n
        src = np.concatenate([edges[:, 0], edges[:, 1]])
        dst = np.concatenate([edges[:, 1], edges[:, 0]])
        edge_ids = np.concatenate([np.arange(len(edges))] * 2)
        order = np.lexsort((dst, src))  # by vertex, then by neighbour: deterministic walks
        self.neighbours = dst[order]
        self.edge_of = edge_ids[order]  # edge id of each adjacency entry
        self.indptr = np.searchsorted(src[order], np.arange(n + 1))

    def adjacent(self, v: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of v (ascending) and the edge ids that reach them."""
        lo, hi = self.indptr[v], self.indptr[v + 1]
        return self.neighbours[lo:hi], self.edge_of[lo:hi]

    def distances(self, source: int, avoid: np.ndarray | None = None) -> np.ndarray:
        """Hop count from `source` to every vertex (-1 if unreachable), never passing through `avoid`."""
        dist = np.full(self.n, -1, dtype=np.int64)
        if avoid is not None:
            dist[avoid] = -2  # marked as reached so the search never enters them
        dist[source] = 0
        frontier = np.array([source])
        level = 0
        while frontier.size:
            level += 1
            starts = self.indptr[frontier]
            counts = self.indptr[frontier + 1] - starts
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            reached = self.neighbours[np.repeat(starts, counts) + offsets]
            frontier = np.unique(reached[dist[reached] == -1])
            dist[frontier] = level
        dist[dist == -2] = -1
        return dist

    def eccentricities(self, sources: np.ndarray) -> np.ndarray:
        """Greatest hop count from each source to any vertex; raises if the graph is disconnected."""
        sources = np.asarray(sources)
        result = np.zeros(len(sources), dtype=np.int64)
        if self.n == 1:
            return result
        if np.any(self.indptr[1:] == self.indptr[:-1]):
            raise ValueError("graph has an isolated vertex")
        for first in range(0, len(sources), _BITS):
            chunk = sources[first:first + _BITS]
            bits = np.uint64(1) << np.arange(len(chunk), dtype=np.uint64)
            reached = np.zeros(self.n, dtype=np.uint64)
            np.bitwise_or.at(reached, chunk, bits)
            frontier, level = reached.copy(), 0
            while True:
                # OR of every vertex's neighbours' frontier bits: the sources that reach it next level.
                new = np.bitwise_or.reduceat(frontier[self.neighbours], self.indptr[:-1]) & ~reached
                if not new.any():
                    break
                level += 1
                reached |= new
                frontier = new
                result[first:first + len(chunk)][(np.bitwise_or.reduce(new) & bits) != 0] = level
            if not np.all(reached == np.bitwise_or.reduce(bits)):
                raise ValueError("graph is disconnected")
        return result
