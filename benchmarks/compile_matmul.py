"""Compiled matmul schedules on tsp-v1: MXM utilisation against peak, the decode GEMV's bound, compile time.

- [2304 x 4096] x [4096 x N] fp16 for N = 1376, 2048, 3500 (ISCA22 Fig. 13 reports >= 80% at this size);
- [1 x 4096] x [4096 x 4096] int8, the decode case: cycles and what bounds them.
Utilisation is useful MACs over (scheduled cycles x peak MACs per cycle): the schedule's cycles are known
at compile time (deterministic execution), so no run is needed for the figure.
"""

from __future__ import annotations

import time

import numpy as np

import openlpu
import openlpu.sim.verify
from openlpu.chip.spec import TSP_V1
from openlpu.compiler.lower_matmul import weight_streams


def build(m: int, k: int, n: int, dtype: str) -> openlpu.Graph:
    g = openlpu.Graph()
    x = g.input("x", (m, k), dtype)
    # random weights: identical tiles (zeros) are stored once and would all stream from the same slices
    w = np.random.default_rng(0).integers(-100, 100, (k, n)).astype(np.float16 if dtype == "fp16" else np.int8)
    g.output("y", g.matmul(x, g.constant("w", w)))
    return g


def measure(m: int, k: int, n: int, dtype: str) -> dict:
    g = build(m, k, n, dtype)
    t0 = time.perf_counter()
    compiled = openlpu.compile(g, "tsp-v1", check=False)
    t1 = time.perf_counter()
    openlpu.sim.verify.verify(compiled.program)
    t2 = time.perf_counter()
    stat = compiled.matmuls[0]
    return {"shape": f"[{m}x{k}]x[{k}x{n}] {dtype}", "cycles": stat.end - stat.start,
            "utilisation": stat.utilisation(TSP_V1), "compile_s": t1 - t0, "verify_s": t2 - t1,
            "instructions": compiled.program.instructions()}


def main() -> None:
    for n in (1376, 2048, 3500):
        r = measure(2304, 4096, n, "fp16")
        print(f"{r['shape']}: {r['cycles']:,} cycles, MXM utilisation {r['utilisation']:.1%} (target >= 80%), "
              f"compile {r['compile_s']:.1f} s + verify {r['verify_s']:.1f} s, {r['instructions']:,} instructions")
    r = measure(1, 4096, 4096, "int8")
    chip = TSP_V1
    tiles = 13 * 13
    streams = weight_streams(chip, "int8")
    weight_bound = tiles / chip.mxm_planes * (chip.lanes // streams)  # LW cycles per plane
    stream_bound = tiles * chip.lanes * chip.lanes / (2 * chip.streams_per_direction * chip.lanes)
    print(f"{r['shape']} (decode GEMV): {r['cycles']:,} cycles = {r['cycles'] / chip.clock_hz * 1e6:.2f} us; "
          f"bound: weight install, {tiles} tiles over {chip.mxm_planes} planes at {chip.lanes // streams} cycles "
          f"each ({streams} weight streams per plane) = {weight_bound:,.0f} cycles; all 64 streams carrying "
          f"weights would allow {stream_bound:,.0f}; MXM utilisation {r['utilisation']:.2%}")


if __name__ == "__main__":
    main()
