"""Graph algorithms for the fast executor's schedule: a topological order and the steps on cycles.

A graph is `nodes` integers and edges given as arrays (src, dst), sorted by src.
"""

from __future__ import annotations

import heapq

import numpy as np


def _adjacency(nodes: int, src: np.ndarray, dst: np.ndarray) -> tuple[list[int], list[int]]:
    return np.searchsorted(src, np.arange(nodes + 1)).tolist(), dst.tolist()


def topological_order(nodes: int, src: np.ndarray, dst: np.ndarray, priority: list[int]) -> list[int] | None:
    """Nodes in an order that respects every edge, the lowest priority first among those ready;
    None when the graph has a cycle."""
    starts, succ = _adjacency(nodes, src, dst)
    indegree = np.bincount(dst, minlength=nodes).tolist()
    ready = [(priority[u], u) for u in range(nodes) if indegree[u] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, u = heapq.heappop(ready)
        out.append(u)
        for t in succ[starts[u]:starts[u + 1]]:
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(ready, (priority[t], t))
    return out if len(out) == nodes else None


def on_cycles(nodes: int, src: np.ndarray, dst: np.ndarray) -> set[int]:
    """Nodes in a strongly connected component of two or more nodes (Tarjan's algorithm, iterative)."""
    starts, succ = _adjacency(nodes, src, dst)
    index, low = [-1] * nodes, [0] * nodes
    on_stack = [False] * nodes
    stack: list[int] = []
    counter = 0
    found: set[int] = set()
    for root in range(nodes):
        if index[root] >= 0:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, starts[root])]  # (node, next edge to follow)
        while work:
            u, i = work[-1]
            if i < starts[u + 1]:
                work[-1] = (u, i + 1)
                t = succ[i]
                if index[t] < 0:
                    index[t] = low[t] = counter
                    counter += 1
                    stack.append(t)
                    on_stack[t] = True
                    work.append((t, starts[t]))
                elif on_stack[t]:
                    low[u] = min(low[u], index[t])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[u])
            if low[u] == index[u]:
                component = []
                while True:
                    t = stack.pop()
                    on_stack[t] = False
                    component.append(t)
                    if t == u:
                        break
                if len(component) > 1:
                    found.update(component)
    return found
