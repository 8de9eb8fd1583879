"""Host time of the cycle-accurate and the fast executor on the full-chip tsp-v1 int8 matmul.

The program is benchmarks/chip_matmul.py's (four MXM planes, each multiplying M activation rows by its
own 320x320 weights). Both executors run it without the verifier (its cost, paid once per program,
is printed apart). The fast executor's first run includes its static analysis of the program; later
runs reuse it, as an LLM decode step would with new inputs each token (`Program.set_input`). Every
figure counts only if the two executors agree bit for bit and cycle for cycle.

BLAS runs on one thread unless OPENBLAS_NUM_THREADS says otherwise: on a busy machine, BLAS threads
waiting for a core make a 256-row matmul take 30 times longer, which would measure the scheduler.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from chip_matmul import build  # noqa: E402

from openlpu.sim import exact, fast  # noqa: E402
from openlpu.sim.verify import verify  # noqa: E402


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def same(a, b) -> bool:
    return ((a.cycles, a.vector_instructions, a.busy) == (b.cycles, b.vector_instructions, b.busy)
            and all(a.outputs[k].tobytes() == b.outputs[k].tobytes() for k in a.outputs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4096, help="activation rows per plane (<= 4096)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is shown")
    args = parser.parse_args()
    program = build(args.rows)
    t_verify, _ = timed(lambda: verify(program))
    t_exact, ref = timed(lambda: exact.run(program, check=False), args.repeat)
    t_first, first = timed(lambda: fast.run(program, check=False))
    t_again, again = timed(lambda: fast.run(program, check=False), args.repeat)
    assert same(ref, first) and same(ref, again), "the executors disagree"

    rng = np.random.default_rng(1)  # new activations: the analysis is reused, the answer is new
    program.set_input("x0", rng.integers(-128, 128, (args.rows, 320)))
    t_new, new = timed(lambda: fast.run(program, check=False))
    assert same(exact.run(program, check=False), new), "the executors disagree on new inputs"

    print(f"tsp-v1 int8 matmul, 4 planes x {args.rows} rows: {ref.vector_instructions:,} vector instructions, "
          f"{ref.cycles:,} cycles; outputs equal bit for bit; BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"  verifier (once per program)      {t_verify:8.3f} s")
    print(f"  exact executor                   {t_exact:8.3f} s")
    print(f"  fast executor, first run         {t_first:8.3f} s   {t_exact / t_first:6.1f}x  (includes its analysis)")
    print(f"  fast executor, again             {t_again:8.3f} s   {t_exact / t_again:6.1f}x")
    print(f"  fast executor, new inputs        {t_new:8.3f} s   {t_exact / t_new:6.1f}x")


if __name__ == "__main__":
    main()
