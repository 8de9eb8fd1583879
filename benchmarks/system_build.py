"""Time to build the 576-chip (8 racks) and 10,440-chip (145 racks) systems and compute their diameter.

The diameter is computed twice: from one source per symmetry orbit (what `openlpu system` does) and
from every chip (bit-parallel breadth-first search, 64 sources per pass), to show the exhaustive check
is also cheap. Also times the bisection search and the minimal and non-minimal paths between the two
farthest-numbered chips. Prints seconds, then the peak memory of building a system and computing its
diameter (measured in a second run: tracing allocations slows the networkx-based bisection threefold):

    .venv/bin/python benchmarks/system_build.py
"""

from __future__ import annotations

import time
import tracemalloc

from openlpu.system.bisection import bisection
from openlpu.system.paths import minimal_paths, nonminimal_paths
from openlpu.system.topology import dragonfly


def timed(work):
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def main() -> None:
    for racks in (8, 145):
        topo, t_build = timed(lambda racks=racks: dragonfly(racks))
        diameter, t_diameter = timed(topo.diameter)
        exhaustive, t_exhaustive = timed(lambda topo=topo: topo.diameter(exhaustive=True))
        cut, t_cut = timed(lambda topo=topo: bisection(topo))
        last = topo.chips - 1
        paths, t_paths = timed(lambda topo=topo, last=last: (minimal_paths(topo, 0, last),
                                                               nonminimal_paths(topo, 0, last)))
        print(f"{topo.name}: {len(topo.ends):,} links")
        print(f"  build {t_build:.3f} s; diameter {diameter} hops in {t_diameter:.3f} s "
              f"(symmetry, {topo.symmetry_step} sources); build + diameter {t_build + t_diameter:.3f} s")
        print(f"  diameter from all {topo.chips:,} chips: {exhaustive} hops in {t_exhaustive:.3f} s")
        print(f"  bisection {cut.links:,} links in {t_cut:.3f} s")
        print(f"  paths 0 -> {last}: {len(paths[0])} minimal, {len(paths[1])} non-minimal in {t_paths:.3f} s")
        tracemalloc.start()
        dragonfly(racks).diameter(exhaustive=True)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  peak memory of build + exhaustive diameter {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
