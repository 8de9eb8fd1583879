"""Published figures of the many-chip system: what the model is compared with, never an input to it."""

from __future__ import annotations

from dataclasses import dataclass

from openlpu.sources import cited


@dataclass(frozen=True)
class PublishedFigures:
    pipelined_hop_s: float = cited(722e-9, "ISCA22 5.6: 722 ns per pipelined hop in an all-reduce")
    rack_bisection_bytes_per_s: float = cited(3.2e12, "ISCA22, RACK: 3.2 TB/s bisection per rack")
    rack_end_to_end_s: float = cited(1.6e-6, "ISCA22, RACK: 1.6 us end to end within a rack")
    fully_connected_diameter_hops: int = cited(3, "ISCA22: up to 33 nodes (264 TSPs) fully connected, 3 hops")
    fully_connected_worst_s: float = cited(2.17e-6, "ISCA22 5.6: 256-TSP worst case, 3 hops = 2.17 us")
    nonminimal_no_gain_bytes: int = cited(8 * 1024, "ISCA22: non-minimal routing gives no benefit under 8 kB "
                                                    "inside a node")
    full_scale_diameter_hops: int = cited(
        5, "ISCA22: 10,440 TSPs at <= 5 hops (2 in rack, 1 global, 2 in rack)"
    )
    full_scale_sram_bytes: float = cited(2e12, "ISCA22: > 2 TB of SRAM reachable in < 3 us")
    full_scale_latency_s: float = cited(3e-6, "ISCA22: > 2 TB of SRAM reachable in < 3 us")
    chip_global_bytes_per_s_small: float = cited(
        50e9, "ISCA22 Fig. 2: ~50 GB/s global bandwidth per TSP up to a few hundred TSPs"
    )
    chip_global_bytes_per_s_large: float = cited(14e9, "ISCA22 Fig. 2: ~14 GB/s per TSP beyond 264 TSPs")


PUBLISHED = PublishedFigures()
