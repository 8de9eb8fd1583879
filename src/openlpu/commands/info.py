"""`openlpu info`: a chip's parameters, where each comes from, and the derived peak figures."""

from __future__ import annotations

import argparse

from openlpu.chip.spec import PRESETS, get_chip
from openlpu.commands.output import add_json_flag, emit, kv_table
from openlpu.sources import sources

EPILOG = """examples:
  openlpu info                    the published chip (tsp-v1)
  openlpu info --chip tsp-mini    the small chip the tests use
  openlpu info --json             machine-readable, with every field's source"""


def register(sub) -> None:
    p = sub.add_parser("info", help="print a chip's spec and derived figures",
                       description="Print a chip's architectural parameters, the source of each "
                                   "(../shared/FACTS.md rows or `assumed`), and derived peak figures.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chip", default="tsp-v1", help=f"preset: {', '.join(PRESETS)} (default tsp-v1)")
    add_json_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    chip = get_chip(args.chip)
    data = chip.summary()
    data["sources"] = sources(chip)
    emit(args, data, _render)
    return 0


def _render(console, data) -> None:
    src = data["sources"]
    derived = [
        ("lanes", f"{data['lanes']} ({data['superlanes']} superlanes x {data['lanes_per_superlane']})"),
        ("SRAM", f"{data['sram_bytes'] / 2**20:.1f} MiB in {data['mem_slices']} slices"),
        ("peak int8", f"{data['peak_int8_tops']:.1f} TOPS"),
        ("peak fp16", f"{data['peak_fp16_tflops']:.1f} TFLOPS"),
        ("SRAM bandwidth", f"{data['sram_bandwidth_bytes_per_s'] / 1e12:.1f} TB/s"),
        ("stream bandwidth", f"{data['stream_bandwidth_bytes_per_s'] / 1e12:.1f} TB/s"),
        ("C2C bandwidth", f"{data['c2c_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s"),
        ("VXM ALUs", data["vxm_alus"]),
        ("ICU queues", data["icu_queues"]),
    ]
    console.print(kv_table(f"{data['name']}: derived figures", derived))
    spec = get_chip(data["name"])
    fields = [(k, f"{getattr(spec, k)}  [dim]({v})[/dim]") for k, v in src.items() if v]
    console.print(kv_table("parameters and their sources", fields))
    console.print("floorplan (west to east): " + " ".join(_compress(data["floorplan"])))


def _compress(floorplan: list[str]) -> list[str]:
    """MEM_W43 .. MEM_W0 as a range, so the floorplan fits on a line."""
    out, run_ = [], []
    for name in [*floorplan, ""]:
        if name.startswith("MEM") and (not run_ or name[:5] == run_[0][:5]):
            run_.append(name)
            continue
        if run_:
            out.append(run_[0] if len(run_) == 1 else f"{run_[0]}..{run_[-1]}")
            run_ = [name] if name.startswith("MEM") else []
        if name and not name.startswith("MEM"):
            out.append(name)
    return out
