"""`openlpu system`: the many-chip system of a given size: counts, links, diameter, bisection, SRAM."""

from __future__ import annotations

import argparse

from rich.table import Table

from openlpu.commands.output import add_json_flag, emit, kv_table, si
from openlpu.system.summary import summarize
from openlpu.system.topology import build

EPILOG = """sizes: 1, 2, 4 or 8 chips (one node, fully connected by local links); 264 chips (33 nodes wired
directly to each other); a multiple of 72 chips up to 10,440 (1 to 145 racks of 9 nodes, a Dragonfly
whose groups are racks). Chip ids are (rack * 9 + node) * 8 + chip-in-node.

examples:
  openlpu system                    one rack: 72 chips, 9 nodes (one a hot spare)
  openlpu system --chips 8          one node
  openlpu system --racks 8          the 576-chip system
  openlpu system --racks 145 --json the largest system, as JSON"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "system",
        help="describe a many-chip system: counts, links, diameter, bisection, global SRAM",
        description="Build the wiring of a many-chip LPU system and report its counts, link totals, "
        "diameter in hops, bisection bandwidth and global SRAM, next to the published figures that apply.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--chips", type=int, metavar="N", help="number of chips (default: one rack)")
    size.add_argument("--racks", type=int, metavar="R", help="number of racks, 1 to 145")
    add_json_flag(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    emit(args, summarize(build(chips=args.chips, racks=args.racks)), _render)
    return 0


def _render(console, data) -> None:
    console.print(kv_table(data["name"], [
        ("chips", f"{data['chips']:,} ({data['active_chips']:,} active, {data['spare_chips']:,} hot spare)"),
        ("nodes / racks", f"{data['nodes']:,} / {data['racks']:,}"),
        ("links", f"{data['links']:,}: {data['local_links']:,} local, {data['global_links']:,} global "
                  f"({data['rack_to_rack_links']:,} between racks)"),
        ("link", f"{si(data['link_bytes_per_s'], 'B/s')} payload each way, "
                 f"{data['link_latency_cycles']} cycles latency"),
        ("diameter", f"{_hops(data['diameter_hops'])} ({data['router_diameter_hops']} hops counting nodes as "
                     f"virtual routers), {si(data['diameter_latency_s'], 's')} over the links"),
        ("bisection", f"{data['bisection_links']:,} links, {si(data['bisection_bytes_per_s'], 'B/s')} each way"),
        ("global SRAM", si(data["sram_bytes"], "B")),
    ]))
    if data["published"]:
        table = Table(title="model vs published", title_justify="left")
        for column in ("figure", "model", "published", "model/published", "source"):
            table.add_column(column)
        for row in data["published"]:
            table.add_row(row["figure"], si(row["model"], row["unit"]), si(row["published"], row["unit"]),
                          f"{row['ratio']:.2f}", row["source"].split(":")[0])
        console.print(table)


def _hops(n: int) -> str:
    return f"{n} link hop{'s' * (n != 1)}"
