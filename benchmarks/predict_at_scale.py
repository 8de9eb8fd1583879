"""Wall and CPU time of `openlpu predict llama2-70b-4096 --chips 576` and `openlpu reproduce`, each in a
fresh process (nothing compiled yet), with the machine's load beside them: on a shared machine the wall
time says as much about the neighbours as about openlpu. Issue 7's targets: 60 s and 5 minutes.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

RUNS = {
    "predict llama2-70b-4096 --chips 576": 60,
    "reproduce": 300,
}


def main() -> None:
    cli = [sys.executable, "-m", "openlpu.cli"]
    print(f"{os.cpu_count()} cores")
    for command, target_s in RUNS.items():
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cli + command.split() + ["--json"], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        print(f"openlpu {command}: {wall:.1f} s wall (target {target_s} s), {cpu:.1f} s CPU in all its "
              f"processes, load average {load:.1f} before it")


if __name__ == "__main__":
    main()
