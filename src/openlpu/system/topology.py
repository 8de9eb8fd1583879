"""The wiring of many chips: a node, a rack, a Dragonfly of racks, or up to 33 fully connected nodes.

Chip ids are stable: chip = (rack * nodes_per_rack + node) * chips_per_node + chip_in_node, so for the
published system chip 0..7 is node 0 of rack 0, chip 72 is the first chip of rack 1. The 33-node
configuration numbers its nodes 0..32 the same way (nodes 9..17 sit in "rack" 1, and so on).

Wiring (ISCA22 publishes the counts, not the cabling; the cabling here is chosen and documented):
- local links join every pair of chips of a node;
- a group of G units (the 9 nodes of a rack, the racks of a Dragonfly, fully connected nodes) is wired as
  a circulant: unit u's port q goes to unit u + q % (G - 1) + 1 and lands on port
  (q // (G - 1)) * (G - 1) + G - 2 - q % (G - 1) there; every pair of units gets the same number of links;
- a node's global ports are dealt to its chips back and forth (0..7, 7..0, 0..7, ...): rack-internal ports
  first, then the ports to other racks; a rack's ports to other racks are dealt to its nodes in turn.
Because the wiring only depends on differences of unit numbers, rotating every id by `symmetry_step`
chips maps the system onto itself, so `symmetry_step` sources are enough to compute the diameter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from openlpu.errors import UserError
from openlpu.system.graph import Graph
from openlpu.system.spec import GROQ_V1, SystemSpec

KINDS = ("local", "global")


@dataclass(frozen=True)
class Link:
    id: int
    a: int
    b: int
    kind: str  # "local" (inside a node) or "global" (between nodes)
    lanes: int
    lane_gbps: float
    latency_cycles: int


@dataclass(frozen=True)
class Location:
    rack: int
    node: int  # node within its rack
    chip: int  # chip within its node


class Topology:
    """Chips 0..chips-1 and the links between them; `ends[i]` are link i's chips, `is_global[i]` its kind."""

    def __init__(self, spec: SystemSpec, family: str, name: str, chips: int, ends: np.ndarray,
                 is_global: np.ndarray, hierarchy: tuple[int, ...], symmetry_step: int, spare_chips: int) -> None:
        self.spec = spec
        self.family = family  # "node", "dragonfly" or "fully-connected"
        self.name = name
        self.chips = chips
        self.ends = ends
        self.is_global = is_global
        self.hierarchy = hierarchy  # routing group sizes in chips, outermost first (rack, node)
        self.symmetry_step = symmetry_step
        self.spare_chips = spare_chips

    # ---- counts ----
    @property
    def nodes(self) -> int:
        return -(-self.chips // self.spec.chips_per_node)

    @property
    def racks(self) -> int:
        """Racks the chips occupy (the last one may be partly filled)."""
        return -(-self.chips // self.spec.chips_per_rack)

    @property
    def active_chips(self) -> int:
        return self.chips - self.spare_chips

    @property
    def sram_bytes(self) -> int:
        return self.chips * self.spec.sram_bytes_per_chip

    @property
    def local_links(self) -> int:
        return int(np.count_nonzero(~self.is_global))

    @property
    def global_links(self) -> int:
        return int(np.count_nonzero(self.is_global))

    @property
    def rack_to_rack_links(self) -> int:
        """Global links whose chips are in different racks."""
        racks = self.ends // self.spec.chips_per_rack
        return int(np.count_nonzero(racks[:, 0] != racks[:, 1]))

    # ---- ids and links ----
    def check_chip(self, chip: int) -> None:
        if not 0 <= chip < self.chips:
            raise UserError(f"chip {chip} does not exist in {self.name}: use a chip id from 0 to {self.chips - 1}.")

    def location(self, chip: int) -> Location:
        self.check_chip(chip)
        spec = self.spec
        return Location(chip // spec.chips_per_rack, chip // spec.chips_per_node % spec.nodes_per_rack,
                        chip % spec.chips_per_node)

    def chip_id(self, rack: int, node: int, chip: int) -> int:
        spec = self.spec
        chip_id = (rack * spec.nodes_per_rack + node) * spec.chips_per_node + chip
        if not (0 <= node < spec.nodes_per_rack and 0 <= chip < spec.chips_per_node):
            raise UserError(f"(rack {rack}, node {node}, chip {chip}) is not a place: a rack has nodes "
                            f"0..{spec.nodes_per_rack - 1}, a node chips 0..{spec.chips_per_node - 1}.")
        self.check_chip(chip_id)
        return chip_id

    def link(self, i: int) -> Link:
        kind = KINDS[int(self.is_global[i])]
        a, b = (int(x) for x in self.ends[i])
        spec = self.spec
        return Link(i, a, b, kind, spec.lanes_per_link, spec.lane_gbps, spec.latency_cycles(kind))

    def links(self) -> Iterator[Link]:
        return (self.link(i) for i in range(len(self.ends)))

    # ---- distances ----
    @cached_property
    def graph(self) -> Graph:
        return Graph(self.chips, self.ends)

    @cached_property
    def node_graph(self) -> Graph:
        """Nodes as vertices (each node a 32-port "virtual router"), joined by the global links."""
        nodes = np.unique(np.sort(self.ends[self.is_global] // self.spec.chips_per_node, axis=1), axis=0)
        return Graph(self.nodes, nodes)

    def diameter(self, exhaustive: bool = False) -> int:
        """Most link hops on a shortest path between two chips. Sources: one per symmetry orbit, or all."""
        step = self.chips if exhaustive else self.symmetry_step
        return int(self.graph.eccentricities(np.arange(step)).max())

    def router_diameter(self) -> int:
        """Hops counted as ISCA22 counts them: each node is one virtual router, so a worst-case route is
        one local hop to the right port, the node-to-node hops, one local hop to the destination chip."""
        if self.nodes == 1:
            return self.diameter()
        node_step = max(1, self.symmetry_step // self.spec.chips_per_node)
        return int(self.node_graph.eccentricities(np.arange(node_step)).max()) + 2


# ---- builders ----
def node(chips: int, spec: SystemSpec = GROQ_V1) -> Topology:
    """`chips` chips of one node (a power of two up to a full node), fully connected by local links."""
    sizes = _node_sizes(spec)
    if chips not in sizes:
        raise UserError(f"a node holds {_listing(sizes)} chips, not {chips}.")
    name = f"node ({chips} chips)" if chips == spec.chips_per_node else f"{chips} chip{'s' * (chips > 1)}"
    ends = _local_links(1, chips)
    return Topology(spec, "node", name, chips, ends, np.zeros(len(ends), bool), (spec.chips_per_node,), 1, 0)


def dragonfly(racks: int, spec: SystemSpec = GROQ_V1) -> Topology:
    """`racks` racks of 9 doubly connected nodes; racks are Dragonfly groups, equally wired to each other."""
    if not 1 <= racks <= spec.max_racks:
        raise UserError(f"{racks} racks cannot be built: choose 1 to {spec.max_racks} racks.")
    c, n = spec.chips_per_node, spec.nodes_per_rack
    nodes = racks * n
    local = _local_links(nodes, c)
    # The 9 nodes of every rack, doubly connected.
    a, pa, b, pb = _circulant(n, spec.rack_links_per_node_pair)
    rack_base = np.repeat(np.arange(racks) * n, len(a))
    inside = np.stack([_port_chip(np.tile(a, racks) + rack_base, np.tile(pa, racks), c),
                       _port_chip(np.tile(b, racks) + rack_base, np.tile(pb, racks), c)], axis=1)
    parts = [local, inside]
    if racks > 1:
        # A rack's external ports are dealt to its nodes in turn, after each node's rack-internal ports.
        r, qr, s, qs = _circulant(racks, spec.rack_external_ports // (racks - 1))
        parts.append(np.stack([_port_chip(r * n + qr % n, spec.rack_internal_ports + qr // n, c),
                               _port_chip(s * n + qs % n, spec.rack_internal_ports + qs // n, c)], axis=1))
    ends, is_global = _assemble(parts)
    name = f"rack ({nodes * c} chips)" if racks == 1 else f"{racks} racks ({nodes * c:,} chips)"
    step = c if racks == 1 else spec.chips_per_rack
    spare = racks * spec.spare_nodes_per_rack * c
    return Topology(spec, "dragonfly", name, nodes * c, ends, is_global, (spec.chips_per_rack, c), step, spare)


def fully_connected_nodes(nodes: int, spec: SystemSpec = GROQ_V1) -> Topology:
    """`nodes` nodes wired directly to each other with their global ports (ISCA22: up to 33, at 3 hops)."""
    most = spec.max_fully_connected_nodes
    if not 2 <= nodes <= most:
        raise UserError(f"{nodes} fully connected nodes cannot be built: choose 2 to {most} nodes.")
    c = spec.chips_per_node
    a, pa, b, pb = _circulant(nodes, spec.node_global_ports // (nodes - 1))
    ends, is_global = _assemble([_local_links(nodes, c),
                                 np.stack([_port_chip(a, pa, c), _port_chip(b, pb, c)], axis=1)])
    name = f"{nodes} fully connected nodes ({nodes * c} chips)"
    return Topology(spec, "fully-connected", name, nodes * c, ends, is_global, (c,), c, 0)


def build(chips: int | None = None, racks: int | None = None, spec: SystemSpec = GROQ_V1) -> Topology:
    """The system with `chips` chips or `racks` racks (one rack if neither is given)."""
    if racks is not None:
        return dragonfly(racks, spec)
    if chips is None:
        return dragonfly(1, spec)
    if chips in _node_sizes(spec):
        return node(chips, spec)
    most = spec.max_fully_connected_nodes
    if chips == most * spec.chips_per_node:
        return fully_connected_nodes(most, spec)
    per_rack = spec.chips_per_rack
    if chips > 0 and chips % per_rack == 0 and chips // per_rack <= spec.max_racks:
        return dragonfly(chips // per_rack, spec)
    raise UserError(
        f"{chips} chips cannot be built: choose {_listing(_node_sizes(spec))} (one node), "
        f"{most * spec.chips_per_node} ({most} fully connected nodes) or a multiple of {per_rack} up to "
        f"{spec.max_chips:,} (1 to {spec.max_racks} racks)."
    )


# ---- wiring helpers ----
def _node_sizes(spec: SystemSpec) -> list[int]:
    return [1 << k for k in range(spec.chips_per_node.bit_length()) if spec.chips_per_node % (1 << k) == 0]


def _listing(values: list[int]) -> str:
    return ", ".join(str(v) for v in values[:-1]) + f" or {values[-1]}" if len(values) > 1 else str(values[0])


def _local_links(nodes: int, chips: int) -> np.ndarray:
    i, j = np.triu_indices(chips, 1)
    base = np.repeat(np.arange(nodes) * chips, len(i))
    return np.stack([np.tile(i, nodes) + base, np.tile(j, nodes) + base], axis=1)


def _circulant(units: int, per_pair: int) -> tuple[np.ndarray, ...]:
    """Each link once, as (unit, port, other unit, its port): unit u's port q goes to u + q % (units-1) + 1."""
    if units < 2:
        return (np.zeros(0, np.int64),) * 4
    ports = per_pair * (units - 1)
    u = np.repeat(np.arange(units), ports)
    q = np.tile(np.arange(ports), units)
    offset = q % (units - 1) + 1
    v = (u + offset) % units
    p = q // (units - 1) * (units - 1) + units - 1 - offset
    keep = u < v  # the same link seen from its other end has the smaller unit second
    return u[keep], q[keep], v[keep], p[keep]


def _port_chip(node: np.ndarray, port: np.ndarray, chips: int) -> np.ndarray:
    """Chip id holding a node's global port: ports are dealt to the chips back and forth, 0..7, 7..0, ..."""
    rank = port % chips
    return node * chips + np.where(port // chips % 2 == 0, rank, chips - 1 - rank)


def _assemble(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All links in one (m, 2) array, lower chip first; the first part is the local links."""
    ends = np.sort(np.concatenate(parts).astype(np.int64), axis=1)
    is_global = np.ones(len(ends), bool)
    is_global[:len(parts[0])] = False
    return ends, is_global
