"""Speed of the cycle-accurate executor on a full-chip tsp-v1 int8 matmul.

All four MXM planes each multiply M activation rows by their own 320x320 weights: 16 MEM slices per
plane stream the weights (20 cycles of LW), one slice streams activations, four slices write the int32
results. Prints vector instructions per host second, simulated cycles per host second, and the peak
memory of the run (it must not grow with idle cycles: the second run adds idle cycles and compares).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from openlpu.chip.builder import Builder
from openlpu.sim.exact import run

READ_D, ACC_D = 2, 22  # d_func of READ and ACC (openlpu.chip.isa.LATENCY)


def build(rows: int, idle: int = 0):
    b = Builder("tsp-v1")
    chip = b.chip
    for plane in range(chip.mxm_planes):
        west = chip.plane_slice(plane) == "MXM_W"
        side, inward, outward = ("W", "w", "e") if west else ("E", "e", "w")
        local = plane % 2  # two planes per hemisphere share its 44 slices: 21 each
        slices = [f"MEM_{side}{i}" for i in range(local * 21, local * 21 + 21)]
        wslices, xslice, zslices = slices[:16], slices[16], slices[17:21]
        mxm = chip.plane_slice(plane)
        s0 = 16 * local  # the two planes of a hemisphere use streams 0..15 and 16..31
        # weights: slice i holds rows i, i+16, ...; all 16 rows reach the plane in the same cycle
        arrive = idle + max(b.hops(s, mxm) for s in wslices) + READ_D
        for i, s in enumerate(wslices):
            b.tensor(f"w{plane}_{i}", "int8", 20, s, 0, init=f"random({plane * 100 + i})")
            b.emit(s, arrive - READ_D - b.hops(s, mxm), "READ", 0, f"{inward}{s0 + i}")
            b.repeat(s, 19)
        b.emit(f"MXM{plane}.w", arrive, "LW", f"{inward}{s0}", 16, 0)
        b.repeat(f"MXM{plane}.w", 19)
        installed = arrive + 20 + 20
        b.emit(f"MXM{plane}.w", arrive + 20, "IW", "int8")
        # activations: one row per cycle from one slice, on a stream the weights no longer use
        b.tensor(f"x{plane}", "int8", rows, xslice, 0, init=f"random({plane})")
        b.emit(xslice, installed - READ_D - b.hops(xslice, mxm), "READ", 0, f"{inward}{s0}")
        b.repeat(xslice, rows - 1)
        b.emit(f"MXM{plane}.a", installed, "ACC", "int8", f"{inward}{s0}", f"{outward}{s0}", 0, "set")
        b.repeat(f"MXM{plane}.a", rows - 1)
        out = installed + ACC_D
        b.tensor(f"z{plane}", "int32", rows, tuple(zslices), 0, output=True)
        for k, s in enumerate(zslices):
            b.emit(s, out + b.hops(mxm, s), "WRITE", 0, f"{outward}{s0 + k}")
            b.repeat(s, rows - 1)
    return b.build()


def measure(rows: int, idle: int) -> dict:
    program = build(rows, idle)
    t0 = time.perf_counter()
    result = run(program, check=False)
    host = time.perf_counter() - t0
    tracemalloc.start()  # a second run for memory: tracing slows the first one's timing
    run(program, check=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the answer must be right for the figure to count
    for plane in range(4):
        x = program.initial_value(program.tensors[f"x{plane}"]).astype(np.int64)
        w = np.empty((320, 320), np.int64)
        for i in range(16):
            w[i::16] = program.initial_value(program.tensors[f"w{plane}_{i}"])
        assert np.array_equal(result.outputs[f"z{plane}"], (x @ w.T).astype(np.int32))
    return {"rows": rows, "idle": idle, "vector_instructions": result.vector_instructions, "cycles": result.cycles,
            "host_s": host, "instr_per_s": result.vector_instructions / host, "cycles_per_s": result.cycles / host,
            "peak_mib": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4096, help="activation rows per plane (<= 4096)")
    args = parser.parse_args()
    for idle in (0, 1_000_000):
        m = measure(args.rows, idle)
        print(f"tsp-v1 int8 matmul, 4 planes x {m['rows']} rows, {m['idle']:,} idle cycles first: "
              f"{m['vector_instructions']:,} vector instructions, {m['cycles']:,} cycles in {m['host_s']:.2f} s "
              f"-> {m['instr_per_s']:,.0f} vector instructions/s, {m['cycles_per_s']:,.0f} cycles/s, "
              f"peak traced memory {m['peak_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
