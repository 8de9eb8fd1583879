"""Build the 576-chip system (8 racks), schedule one all-reduce over it, and run one on real data.

For each tensor size: seconds to build the wiring, seconds to compile the all-reduce into link schedules
(every flit of every transfer on every link), the all-reduce's latency next to its alpha-beta lower bound,
and the schedule's size. Then a smaller all-reduce is also run on real data through the network
executor and checked against numpy. Peak memory is the resident set of the process (ru_maxrss).

    .venv/bin/python benchmarks/network_allreduce.py [BYTES ...]    (default: 65536 1048576)
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from openlpu.system.collectives import compile_collective, lower_bound, run
from openlpu.system.topology import dragonfly

RUN_BYTES = 64 * 1024  # the size also run on data: 512 chips x 64 KiB of int32


def timed(work):
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def main(sizes: list[int]) -> None:
    topo, t_build = timed(lambda: dragonfly(8))
    print(f"{topo.name}: {len(topo.ends):,} links, built in {t_build:.3f} s")
    for nbytes in sizes:
        plan, t_compile = timed(lambda nbytes=nbytes: compile_collective("allreduce", topo, nbytes))
        bound = lower_bound(plan)
        s = plan.schedule
        print(f"all-reduce of {nbytes:,} B per chip over {plan.groups.n} active chips "
              f"({' x '.join(map(str, plan.groups.sizes))}):")
        print(f"  build + schedule {t_build + t_compile:.2f} s ({len(s.transfers):,} transfers, {s.flits:,} flits, "
              f"{len(s.hop_flit):,} flit-hops reserved)")
        print(f"  latency {plan.latency:,} cycles = {plan.latency_s * 1e6:.2f} us; lower bound "
              f"{bound['cycles']:,.0f} cycles (ratio {plan.latency / bound['cycles']:.2f})")
        for step in plan.steps:
            print(f"    {step.name:<22} {len(step.moves):>6,} transfers, done at cycle {step.end:,}")
    plan = compile_collective("allreduce", topo, RUN_BYTES)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(-1000, 1000, RUN_BYTES // 4).astype(np.int32) for _ in range(plan.groups.n)]
    outputs, t_run = timed(lambda: run(plan, inputs))
    total = np.sum(inputs, axis=0, dtype=np.int32)
    ok = all(np.array_equal(o, total) for o in outputs)
    print(f"run on data ({RUN_BYTES:,} B per chip, {plan.groups.n * RUN_BYTES / 2**20:.0f} MiB in all): "
          f"{t_run:.2f} s, {'every chip matches numpy' if ok else 'MISMATCH'}")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [65536, 1048576])
