"""What the per-trial launcher adds to each trial: start and stop, against a bare Popen.

Each cycle starts a trial, waits for its exit and ends its tree exactly as the orchestrator
does. ``direct`` is the path before the launcher (``Popen`` in a new session, then
``end_tree`` on its group, token and seen processes); ``subreaper`` starts it through
``gpusweep/process/reaper.py`` (``containment.start``, ``TrialContainment.end``); ``cgroup`` does
the same in a cgroup v2 of its own, where this machine delegates one. The trial is
``/bin/true`` (its own run time is in every path alike), and separately a ``sleep`` stopped
while it runs (SIGTERM, which it obeys). Paths alternate cycle by cycle; medians.

    python bench/containment_cost.py [--quick] [--json]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, emit, median  # noqa: E402
from gpusweep.cleanup import end_tree  # noqa: E402
from gpusweep.isolation import IsolationConfig, StopConfig  # noqa: E402
from gpusweep.process import (
    cgroup,  # noqa: E402
    containment,  # noqa: E402
)
from gpusweep.records.layout import TrialPaths  # noqa: E402

GRACE_S = 5.0


def direct(argv: list[str], paths: TrialPaths, stop_running: bool) -> tuple[float, float]:
    """The path before the launcher: start, (stop or) wait, end the tree; (start, stop) s."""
    env = dict(os.environ, GPUSWEEP_TRIAL_TOKEN=paths.run_id)
    t0 = time.perf_counter()
    with open(paths.output_log, "ab") as log:
        popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 close_fds=True)
    t1 = time.perf_counter()
    if not stop_running:
        popen.wait()
    t2 = time.perf_counter()
    end_tree(popen.pid, paths.run_id, (), GRACE_S)
    popen.wait()
    return t1 - t0, time.perf_counter() - t2


def launched(argv: list[str], paths: TrialPaths, stop_running: bool,
             isolation: IsolationConfig) -> tuple[float, float]:
    """Through the launcher (and a cgroup, if ``isolation`` allows one here)."""
    env = dict(os.environ, GPUSWEEP_TRIAL_TOKEN=paths.run_id)
    t0 = time.perf_counter()
    contained = containment.start(argv, env, paths, name=f"bench-{paths.run_id}",
                                  isolation=isolation)
    t1 = time.perf_counter()
    if not stop_running:
        while contained.process.poll(1.0) is None:
            pass
    t2 = time.perf_counter()
    contained.end(paths.run_id, (), GRACE_S)
    return t1 - t0, time.perf_counter() - t2


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    repeats = 20 if args.quick else 100
    stop = StopConfig(grace_s=GRACE_S)
    modes = {"direct": None, "subreaper": IsolationConfig(stop=stop, containment="subreaper")}
    if cgroup.detect().kind == "cgroup":
        modes["cgroup"] = IsolationConfig(stop=stop)
    cases = {"exits": (["/bin/true"], False), "stopped": (["/bin/sleep", "60"], True)}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="gpusweep-bench-") as root:
        for i in range(repeats):
            for case, (argv, stop_running) in cases.items():
                for path, isolation in modes.items():
                    paths = TrialPaths(root, f"{path}-{case}-{i}-{os.getpid()}")
                    os.makedirs(paths.dir)
                    if isolation is None:
                        measured = direct(argv, paths, stop_running)
                    else:
                        measured = launched(argv, paths, stop_running, isolation)
                    times.setdefault((path, case), []).append(measured)
    result: dict = {"repeats": repeats, "containment_here": cgroup.detect().kind,
                    "containment_note": cgroup.detect().note}
    table = {}
    for (path, case), pairs in times.items():
        table[f"{path}, trial {case}"] = {
            "start_ms": round(1000 * median([a for a, _ in pairs]), 2),
            "stop_ms": round(1000 * median([b for _, b in pairs]), 2),
            "start_plus_stop_ms": round(1000 * median([a + b for a, b in pairs]), 2)}
    result["per_path"] = table

    def added(path: str, case: str) -> float | None:
        if (path, case) not in times:
            return None
        ours = median([a + b for a, b in times[(path, case)]])
        return round(1000 * (ours - median([a + b for a, b in times[("direct", case)]])), 2)

    result["added_ms_median"] = added("subreaper", "exits")
    result["added_ms_stopped_median"] = added("subreaper", "stopped")
    result["added_ms_cgroup_median"] = added("cgroup", "exits")
    result["added_ms_cgroup_stopped_median"] = added("cgroup", "stopped")
    emit(result, args.json)


if __name__ == "__main__":
    main()
