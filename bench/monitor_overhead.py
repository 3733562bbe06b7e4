"""CPU cost of the monitor at 10 Hz over a tree of 8 processes, as % of one core.

A parent with 7 sleeping children (8 processes) is sampled by the same Monitor the
orchestrator uses, in this process, while the main thread sleeps: the process's CPU time is
the monitor's. Median over repeats.

    python bench/monitor_overhead.py [--quick] [--json] [--seconds S] [--hz HZ]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, emit, median  # noqa: E402
from gpusweep.gpu.visible import default_device  # noqa: E402
from gpusweep.process.monitor import Monitor  # noqa: E402

TREE = textwrap.dedent("""
    import subprocess, sys, time
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
                for _ in range(7)]
    time.sleep(600)
""")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(seconds: float, hz: float) -> tuple[float, int]:
    root = subprocess.Popen([sys.executable, "-c", TREE], start_new_session=True)
    try:
        time.sleep(1.0)  # let the 7 children start
        with tempfile.TemporaryDirectory() as tmp:
            monitor = Monitor(root.pid, default_device(), hz, os.path.join(tmp, "m.csv"))
            before = cpu_seconds()
            monitor.start()
            time.sleep(seconds)
            monitor.stop()
            used = cpu_seconds() - before
            processes = monitor.last.processes if monitor.last else 0
    finally:
        os.killpg(root.pid, 9)
        root.wait()
    return 100.0 * used / seconds, processes


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--hz", type=float, default=10.0)
    args = parser.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    repeats = 3
    results = [measure(seconds, args.hz) for _ in range(repeats)]
    emit({"hz": args.hz, "processes": results[0][1], "seconds": seconds, "repeats": repeats,
          "cpu_percent_of_core_median": round(median([r[0] for r in results]), 3)}, args.json)


if __name__ == "__main__":
    main()
