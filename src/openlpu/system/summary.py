"""Everything `openlpu system` reports about a topology, and how it compares with the published figures."""

from __future__ import annotations

from typing import Any

from openlpu.sources import sources
from openlpu.system.bisection import bisection
from openlpu.system.published import PUBLISHED
from openlpu.system.topology import Topology


def summarize(topo: Topology) -> dict[str, Any]:
    spec = topo.spec
    diameter = topo.diameter()
    cut = bisection(topo)
    figures: dict[str, Any] = {
        "name": topo.name,
        "chips": topo.chips,
        "nodes": topo.nodes,
        "racks": topo.racks,
        "spare_chips": topo.spare_chips,
        "active_chips": topo.active_chips,
        "links": len(topo.ends),
        "local_links": topo.local_links,
        "global_links": topo.global_links,
        "rack_to_rack_links": topo.rack_to_rack_links,
        "diameter_hops": diameter,
        "router_diameter_hops": topo.router_diameter(),
        "diameter_latency_s": spec.vector_seconds(diameter),
        "link_bytes_per_s": spec.link_bytes_per_s,
        "link_latency_cycles": spec.link_latency_cycles,
        "chip_global_bytes_per_s": spec.chip_global_bytes_per_s,
        "bisection_links": cut.links,
        "bisection_bytes_per_s": cut.bytes_per_s,
        "sram_bytes": topo.sram_bytes,
    }
    figures["published"] = comparisons(topo, figures)
    return figures


def comparisons(topo: Topology, figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Model against published figures, for the figures that apply to this topology."""
    spec, pub, cite = topo.spec, PUBLISHED, sources(PUBLISHED)
    rows = []

    def row(figure: str, model: float, field: str, unit: str) -> None:
        published = getattr(pub, field)
        rows.append({"figure": figure, "model": model, "published": published, "unit": unit,
                     "ratio": model / published, "source": cite[field]})

    if topo.chips > 1:
        row("one link hop, latency + one flit", spec.vector_seconds(1), "pipelined_hop_s", "s")
    if topo.family == "dragonfly" and topo.racks == 1:
        row("rack bisection, one direction", figures["bisection_bytes_per_s"], "rack_bisection_bytes_per_s",
            "B/s")
        row("rack worst-case vector latency, links only", figures["diameter_latency_s"], "rack_end_to_end_s", "s")
    if topo.family == "fully-connected" and topo.nodes == spec.max_fully_connected_nodes:
        row("diameter, link hops", figures["diameter_hops"], "fully_connected_diameter_hops", "hops")
    if topo.family == "dragonfly" and topo.chips == spec.max_chips:
        row("diameter, virtual-router hops", figures["router_diameter_hops"], "full_scale_diameter_hops", "hops")
        row("diameter, link hops", figures["diameter_hops"], "full_scale_diameter_hops", "hops")
        row("global SRAM", figures["sram_bytes"], "full_scale_sram_bytes", "B")
        row("worst-case vector latency, links only", figures["diameter_latency_s"], "full_scale_latency_s", "s")
    if topo.global_links and topo.chips <= spec.max_fully_connected_nodes * spec.chips_per_node:
        row("global bandwidth per chip (4 links)", spec.chip_global_bytes_per_s,
            "chip_global_bytes_per_s_small", "B/s")
    elif topo.global_links:
        row("bisection bandwidth per chip of one half", figures["bisection_bytes_per_s"] / (topo.chips / 2),
            "chip_global_bytes_per_s_large", "B/s")
    return rows
