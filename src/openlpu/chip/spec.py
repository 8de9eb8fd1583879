"""`ChipSpec`: every architectural parameter of a TSP, each citing ../shared/FACTS.md or saying `assumed`.

Derived figures (SRAM bytes, peak TOPS, bandwidths, the floorplan, the queue count) are computed
properties, never typed numbers. Presets: `tsp-v1` (the published chip) and `tsp-mini` (small, for tests).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

from openlpu.errors import UserError
from openlpu.sources import assumed, cited

SUBLANE_TILE = 16  # lanes per superlane is fixed by the 16x16 SXM transpose and MXM supercells


@dataclass(frozen=True)
class ChipSpec:
    name: str = "tsp-v1"
    superlanes: int = cited(20, "ISCA20: 20 superlanes x 16 lanes = 320 lanes")
    lanes_per_superlane: int = cited(16, "ISCA20: 20 superlanes x 16 lanes = 320 lanes")
    streams_per_direction: int = cited(32, "ISCA20: 32 eastward + 32 westward streams per lane")
    mem_slices_per_hemisphere: int = cited(44, "ISCA20: 88 MEM slices, 44 per hemisphere")
    mem_addresses: int = cited(8192, "ISCA20: 13-bit address per slice, one 320-byte vector each")
    mem_banks: int = cited(2, "ISCA20: 2 banks per slice, 1 read + 1 write per cycle if in different banks")
    mxm_planes: int = cited(4, "ISCA20: 4 independent 320x320 planes, 2 per hemisphere")
    mxm_acc_slots: int = assumed(4096, "accumulator depth is unpublished; bounds the rows of one matmul tile")
    mxm_act_buffers: int = assumed(320, "activation buffer depth is unpublished; one plane's worth of rows")
    vxm_alus_per_lane: int = cited(16, "ISCA20: 16 ALUs per lane as a 4x4 mesh = 5,120 ALUs")
    sxm_units_per_hemisphere: int = assumed(
        16, "unpublished; with 88 MEM + 16 VXM + 8 MXM queues it gives ISCA20's 144 ICU queues"
    )
    c2c_links: int = cited(16, "ISCA20: 16 C2C links x 4 lanes")
    c2c_lanes_per_link: int = cited(4, "ISCA20: 16 C2C links x 4 lanes x 30 Gb/s")
    c2c_lane_gbps: float = cited(30.0, "ISCA20: 30 Gb/s per lane (ISCA22 deploys 25 Gb/s)")
    c2c_loopback_cycles: int = assumed(
        217, "a link looped back to its own chip takes the intra-node latency (ISCA22 Table 2 mean)"
    )
    clock_hz: float = cited(900e6, "ISCA20, CHIP: 900 MHz nominal")
    notify_cycles: int = cited(35, "ISCA20: Sync/Notify chip-wide barrier = 35 cycles")
    ifetch_bytes: int = cited(640, "ISCA20: Ifetch brings 640 bytes a time")
    instruction_bytes: int = assumed(8, "encoding unpublished; 8 bytes gives 80 instructions per Ifetch")
    queue_preload: int = assumed(80, "the host loads one Ifetch block into every queue before start")
    power_max_w: float = cited(300.0, "CHIP: 300 W max")
    power_tdp_w: float = cited(215.0, "CHIP: 215 W TDP")
    power_avg_w: float = cited(185.0, "CHIP: 185 W average")

    def __post_init__(self) -> None:
        checks = [
            (self.superlanes >= 1, "superlanes", "at least 1"),
            (self.lanes_per_superlane == SUBLANE_TILE, "lanes_per_superlane", f"{SUBLANE_TILE}"),
            (self.streams_per_direction >= 4 and self.streams_per_direction % 4 == 0,
             "streams_per_direction", "a positive multiple of 4 (int32/fp32 use aligned groups of 4)"),
            (self.mem_slices_per_hemisphere >= 1, "mem_slices_per_hemisphere", "at least 1"),
            (self.mem_addresses >= 2 and self.mem_addresses % self.mem_banks == 0,
             "mem_addresses", "at least 2 and a multiple of mem_banks"),
            (self.mem_banks >= 1, "mem_banks", "at least 1"),
            (self.mxm_planes in (2, 4), "mxm_planes", "2 or 4 (planes come in pairs for fp16)"),
            (self.mxm_acc_slots >= 1 and self.mxm_act_buffers >= 1, "mxm_acc_slots", "at least 1"),
            (self.vxm_alus_per_lane >= 1, "vxm_alus_per_lane", "at least 1"),
            (self.sxm_units_per_hemisphere >= 1, "sxm_units_per_hemisphere", "at least 1"),
            (self.c2c_links % 2 == 0 and self.c2c_links >= 2, "c2c_links", "an even number >= 2"),
            (self.clock_hz > 0, "clock_hz", "positive"),
            (self.ifetch_bytes % self.instruction_bytes == 0, "ifetch_bytes",
             "a multiple of instruction_bytes"),
            (self.queue_preload >= 1, "queue_preload", "at least 1"),
        ]
        for ok, field, need in checks:
            if not ok:
                raise UserError(
                    f"chip spec {self.name!r} is inconsistent: {field} = {getattr(self, field)!r} "
                    f"must be {need}."
                )

    # ---- lanes, vectors, memory ----
    @property
    def lanes(self) -> int:
        return self.superlanes * self.lanes_per_superlane

    @property
    def vector_bytes(self) -> int:
        return self.lanes  # one byte per lane per stream

    @property
    def mem_slices(self) -> int:
        return 2 * self.mem_slices_per_hemisphere

    @property
    def sram_bytes(self) -> int:
        return self.mem_slices * self.mem_addresses * self.vector_bytes

    @property
    def bank_size(self) -> int:
        """Addresses per bank: bank b holds addresses [b * bank_size, (b + 1) * bank_size)."""
        return self.mem_addresses // self.mem_banks

    @property
    def vxm_alus(self) -> int:
        return self.lanes * self.vxm_alus_per_lane

    @property
    def mxm_size(self) -> int:
        """A plane is lanes x lanes: one weight row per lane of the activation vector."""
        return self.lanes

    @property
    def ifetch_instructions(self) -> int:
        return self.ifetch_bytes // self.instruction_bytes

    # ---- floorplan and queues ----
    @cached_property
    def floorplan(self) -> tuple[str, ...]:
        """Slice names west to east: MXM SXM MEM(n-1)..MEM0 VXM MEM0..MEM(n-1) SXM MXM (ISCA20)."""
        n = self.mem_slices_per_hemisphere
        west = [f"MEM_W{i}" for i in reversed(range(n))]
        east = [f"MEM_E{i}" for i in range(n)]
        return ("MXM_W", "SXM_W", *west, "VXM", *east, "SXM_E", "MXM_E")

    @cached_property
    def position(self) -> dict[str, int]:
        """Slice name -> its position (stream-register hops from the west edge)."""
        return {name: i for i, name in enumerate(self.floorplan)}

    @cached_property
    def queues(self) -> tuple[str, ...]:
        """Instruction queue names; each issues at most one instruction per cycle to its slice."""
        mem = [s for s in self.floorplan if s.startswith("MEM")]
        vxm = [f"VXM.{i}" for i in range(self.vxm_alus_per_lane)]
        mxm = [f"MXM{p}.{role}" for p in range(self.mxm_planes) for role in ("w", "a")]
        sxm = [f"SXM_{h}.{u}" for h in "WE" for u in range(self.sxm_units_per_hemisphere)]
        return (*mem, *vxm, *mxm, *sxm)

    @property
    def icu_queues(self) -> int:
        return len(self.queues)

    def queue_target(self, queue: str) -> tuple[str, str, int]:
        """Queue name -> (queue kind, slice it issues to, unit index: ALU, plane or SXM unit)."""
        if queue not in self._queue_set:
            raise UserError(
                f"unknown queue {queue!r} on {self.name}: use a MEM slice (MEM_W0, MEM_E3), VXM.0-"
                f"{self.vxm_alus_per_lane - 1}, MXM0.w/MXM0.a .. MXM{self.mxm_planes - 1}.a or "
                f"SXM_W.0-{self.sxm_units_per_hemisphere - 1} / SXM_E.0-{self.sxm_units_per_hemisphere - 1}."
            )
        head, _, tail = queue.partition(".")
        if head.startswith("MEM"):
            return "MEM", head, 0
        if head == "VXM":
            return "VXM", "VXM", int(tail)
        if head.startswith("MXM"):
            plane = int(head[3:])
            return f"MXM.{tail}", self.plane_slice(plane), plane
        return "SXM", head, int(tail)

    @cached_property
    def _queue_set(self) -> frozenset[str]:
        return frozenset(self.queues)

    def plane_slice(self, plane: int) -> str:
        """Planes 0..n/2-1 sit at the west edge, the rest at the east edge."""
        return "MXM_W" if plane < self.mxm_planes // 2 else "MXM_E"

    def link_slice(self, link: int) -> str:
        """C2C links hang off the switch slices (assumed): the first half west, the rest east."""
        return "SXM_W" if link < self.c2c_links // 2 else "SXM_E"

    # ---- peak figures ----
    @property
    def peak_int8_ops(self) -> float:
        """Each plane does [1 x lanes] x [lanes x lanes] int8 MACs per cycle; 2 ops per MAC."""
        return self.mxm_planes * self.mxm_size * self.mxm_size * 2 * self.clock_hz

    @property
    def peak_fp16_flops(self) -> float:
        """fp16 pairs two byte-planes and takes two cycles per vector: a quarter of the int8 rate.

        Equivalent to ISCA22's [1x160]x[160x320] fp16 sub-operation per plane pair per cycle.
        """
        return self.peak_int8_ops / 4

    @property
    def peak_int8_tops(self) -> float:
        return self.peak_int8_ops / 1e12

    @property
    def peak_fp16_tflops(self) -> float:
        return self.peak_fp16_flops / 1e12

    @property
    def sram_bandwidth(self) -> float:
        """Bytes/s: every slice reads one vector from each bank per cycle (ISCA20's 55 TiB/s method)."""
        return self.mem_slices * self.mem_banks * self.vector_bytes * self.clock_hz

    @property
    def stream_bandwidth(self) -> float:
        """Bytes/s crossing one slice boundary: all streams of both directions, one byte per lane."""
        return 2 * self.streams_per_direction * self.lanes * self.clock_hz

    @property
    def c2c_bandwidth(self) -> float:
        """Raw bytes/s over all C2C links at the lane rate."""
        return self.c2c_links * self.c2c_lanes_per_link * self.c2c_lane_gbps * 1e9 / 8

    def summary(self) -> dict:
        """The figures `openlpu info --json` prints."""
        return {
            "name": self.name,
            "clock_hz": self.clock_hz,
            "lanes": self.lanes,
            "superlanes": self.superlanes,
            "lanes_per_superlane": self.lanes_per_superlane,
            "streams_per_direction": self.streams_per_direction,
            "mem_slices": self.mem_slices,
            "mem_addresses": self.mem_addresses,
            "mem_banks": self.mem_banks,
            "sram_bytes": self.sram_bytes,
            "mxm_planes": self.mxm_planes,
            "mxm_size": self.mxm_size,
            "vxm_alus": self.vxm_alus,
            "sxm_units": 2 * self.sxm_units_per_hemisphere,
            "icu_queues": self.icu_queues,
            "c2c_links": self.c2c_links,
            "peak_int8_tops": self.peak_int8_tops,
            "peak_fp16_tflops": self.peak_fp16_tflops,
            "sram_bandwidth_bytes_per_s": self.sram_bandwidth,
            "stream_bandwidth_bytes_per_s": self.stream_bandwidth,
            "c2c_bandwidth_bytes_per_s": self.c2c_bandwidth,
            "floorplan": list(self.floorplan),
            "power_tdp_w": self.power_tdp_w,
        }


TSP_V1 = ChipSpec()

# Small enough that a test program runs in milliseconds, shaped like the real chip: 2 superlanes
# (32 lanes), 8 MEM slices per hemisphere, a 32x32 MXM plane, 16 streams per direction.
TSP_MINI = dataclasses.replace(
    TSP_V1,
    name="tsp-mini",
    superlanes=2,
    streams_per_direction=16,
    mem_slices_per_hemisphere=8,
    mem_addresses=1024,
    mxm_acc_slots=512,
    mxm_act_buffers=32,
    sxm_units_per_hemisphere=4,
    c2c_loopback_cycles=20,
)

PRESETS: dict[str, ChipSpec] = {c.name: c for c in (TSP_V1, TSP_MINI)}


def get_chip(chip: str | ChipSpec) -> ChipSpec:
    """A preset by name (or a spec passed through); an unknown name names the presets."""
    if isinstance(chip, ChipSpec):
        return chip
    try:
        return PRESETS[chip]
    except KeyError:
        raise UserError(f"unknown chip {chip!r}: choose one of {', '.join(PRESETS)}.") from None
