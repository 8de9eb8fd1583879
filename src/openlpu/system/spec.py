"""`SystemSpec`: the many-chip hardware (links, node, rack, Dragonfly), each field citing ../shared/FACTS.md.

Only inputs are fields; bandwidths, port budgets and latencies in seconds are computed properties.
Published figures that the model is compared with (the 722 ns pipelined hop, the rack bisection, ...)
are not here: they live in `openlpu.system.published` and are never inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from openlpu.errors import UserError
from openlpu.sources import assumed, cited


@dataclass(frozen=True)
class SystemSpec:
    name: str = "groq-v1"
    chips_per_node: int = cited(8, "ISCA22: a node is 8 TSPs fully connected by 7 local links each")
    c2c_links_per_chip: int = cited(16, "ISCA20: 16 C2C links per chip")
    local_links_per_chip: int = cited(7, "ISCA22: 8 TSPs fully connected by 7 local links each")
    global_links_per_chip: int = cited(4, "ISCA22: 8 x 4 global links = a 32-port virtual router per node")
    lanes_per_link: int = cited(4, "ISCA20: 16 links x 4 lanes")
    lane_gbps: float = cited(25.0, "ISCA22: lanes deployed at 25 Gb/s (100 Gb/s per link)")
    lane_gbps_capable: float = cited(30.0, "ISCA20: lanes capable of 30 Gb/s")
    flit_payload_bytes: int = cited(320, "ISCA22: a 320-byte vector is one flit")
    flit_wire_bytes: int = cited(328, "ISCA22: a flit is sent as 328 bytes (97.5% efficient)")
    link_latency_cycles: int = cited(217, "ISCA22 Table 2: intra-node link latency, mean ~217 cycles")
    link_latency_min_cycles: int = cited(209, "ISCA22 Table 2: intra-node link latency, min 209 cycles")
    link_latency_max_cycles: int = cited(228, "ISCA22 Table 2: intra-node link latency, max 228 cycles")
    global_link_latency_cycles: int = assumed(
        217, "no published latency for inter-node cables; taken equal to the measured intra-node mean"
    )
    nodes_per_rack: int = cited(9, "ISCA22, RACK: a rack is 9 nodes = 72 TSPs")
    spare_nodes_per_rack: int = cited(1, "ISCA22, RACK: one node of the rack is a hot spare (N+1)")
    rack_links_per_node_pair: int = cited(
        2, "ISCA22: of a rack's 288 global ports, 144 doubly connect its 9 nodes"
    )
    max_racks: int = cited(145, "ISCA22: up to 145 racks = 10,440 TSPs")
    clock_hz: float = cited(900e6, "ISCA20, CHIP: 900 MHz nominal chip clock")
    sram_bytes_per_chip: int = cited(220 * 2**20, "ISCA20: 88 MEM slices x 2.5 MiB = 220 MiB per chip")

    def __post_init__(self) -> None:
        checks = [
            (self.chips_per_node >= 1, "chips_per_node", "at least 1"),
            (self.local_links_per_chip == self.chips_per_node - 1, "local_links_per_chip",
             f"chips_per_node - 1 = {self.chips_per_node - 1} (a node is fully connected)"),
            (self.global_links_per_chip >= 0, "global_links_per_chip", "0 or more"),
            (self.local_links_per_chip + self.global_links_per_chip <= self.c2c_links_per_chip,
             "global_links_per_chip", f"at most c2c_links_per_chip - local = "
             f"{self.c2c_links_per_chip - self.local_links_per_chip}"),
            (self.lanes_per_link >= 1, "lanes_per_link", "at least 1"),
            (0 < self.lane_gbps <= self.lane_gbps_capable, "lane_gbps",
             f"positive and at most the capable rate {self.lane_gbps_capable} Gb/s"),
            (0 < self.flit_payload_bytes <= self.flit_wire_bytes, "flit_payload_bytes",
             f"positive and at most flit_wire_bytes = {self.flit_wire_bytes}"),
            (0 < self.link_latency_min_cycles <= self.link_latency_cycles <= self.link_latency_max_cycles,
             "link_latency_cycles", "between link_latency_min_cycles and link_latency_max_cycles (all > 0)"),
            (self.global_link_latency_cycles > 0, "global_link_latency_cycles", "positive"),
            (self.nodes_per_rack >= 1, "nodes_per_rack", "at least 1"),
            (0 <= self.spare_nodes_per_rack < self.nodes_per_rack, "spare_nodes_per_rack",
             "at least 0 and fewer than nodes_per_rack"),
            (self.rack_links_per_node_pair >= 0 and self.rack_internal_ports <= self.node_global_ports,
             "rack_links_per_node_pair", f"at most {self.node_global_ports // max(1, self.nodes_per_rack - 1)} "
             "(a node has only chips_per_node x global_links_per_chip global ports)"),
            (1 <= self.max_racks <= self.rack_external_ports + 1, "max_racks",
             f"between 1 and {self.rack_external_ports + 1} (one global link per pair of racks)"),
            (self.clock_hz > 0, "clock_hz", "positive"),
            (self.sram_bytes_per_chip > 0, "sram_bytes_per_chip", "positive"),
        ]
        for ok, field, need in checks:
            if not ok:
                raise UserError(
                    f"system spec {self.name!r} is inconsistent: {field} = {getattr(self, field)!r} "
                    f"must be {need}."
                )

    # ---- links ----
    @property
    def flit_efficiency(self) -> float:
        return self.flit_payload_bytes / self.flit_wire_bytes

    @property
    def link_wire_bytes_per_s(self) -> float:
        """Raw rate of one link in one direction (links are full duplex)."""
        return self.lanes_per_link * self.lane_gbps * 1e9 / 8

    @property
    def link_bytes_per_s(self) -> float:
        """Payload bandwidth of one link in one direction: the wire rate times 320/328."""
        return self.link_wire_bytes_per_s * self.flit_efficiency

    @property
    def flit_seconds(self) -> float:
        """Time to serialise one flit (328 wire bytes) onto a link."""
        return self.flit_wire_bytes / self.link_wire_bytes_per_s

    @property
    def flit_cycles(self) -> float:
        return self.flit_seconds * self.clock_hz

    def latency_cycles(self, kind: str) -> int:
        """Latency of one link of `kind` ("local" or "global") in chip cycles."""
        return self.link_latency_cycles if kind == "local" else self.global_link_latency_cycles

    def latency_seconds(self, kind: str) -> float:
        return self.latency_cycles(kind) / self.clock_hz

    def vector_seconds(self, hops: int) -> float:
        """One vector over `hops` links, cut-through (each chip forwards as bits arrive, at no cost):
        the slower link kind's latency per hop plus one flit's serialisation. Links only."""
        slowest = max(self.latency_seconds("local"), self.latency_seconds("global"))
        return hops * slowest + self.flit_seconds * (hops > 0)

    # ---- per chip ----
    @property
    def links_per_chip(self) -> int:
        return self.local_links_per_chip + self.global_links_per_chip

    @property
    def chip_injection_bytes_per_s(self) -> float:
        """All of a chip's used links sending at once, one direction each."""
        return self.links_per_chip * self.link_bytes_per_s

    @property
    def chip_global_bytes_per_s(self) -> float:
        """What a chip can send off its node: its global links only."""
        return self.global_links_per_chip * self.link_bytes_per_s

    # ---- node and rack port budgets ----
    @property
    def node_global_ports(self) -> int:
        return self.chips_per_node * self.global_links_per_chip

    @property
    def chips_per_rack(self) -> int:
        return self.nodes_per_rack * self.chips_per_node

    @property
    def active_chips_per_rack(self) -> int:
        return (self.nodes_per_rack - self.spare_nodes_per_rack) * self.chips_per_node

    @property
    def rack_internal_ports(self) -> int:
        """Global ports per node that connect it to the other nodes of its rack."""
        return (self.nodes_per_rack - 1) * self.rack_links_per_node_pair

    @property
    def rack_external_ports(self) -> int:
        """Global ports of a whole rack left for links to other racks."""
        return self.nodes_per_rack * (self.node_global_ports - self.rack_internal_ports)

    @property
    def max_chips(self) -> int:
        return self.max_racks * self.chips_per_rack

    @property
    def max_fully_connected_nodes(self) -> int:
        """Nodes that can all be wired directly to each other: one global port per other node."""
        return self.node_global_ports + 1


GROQ_V1 = SystemSpec()
