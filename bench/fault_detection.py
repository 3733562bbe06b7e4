"""How long each fault takes to be detected, and the status the records give it.

Runs each program of tests/faults/ once through tools/sweep.py and measures, from the
trial's own records, the time from the fault's onset to its detection:

- oom, crash, segfault, SIGKILL: the trial's exit is the fault; detection is the time from
  its exit to the end of its cleanup (tree stopped, status decided);
- host RSS hog: from the first memory.csv sample over the limit to the trial's exit;
- stall: from the trial's last report to its exit, minus isolation.stall_s (the wait the
  user asked for);
- SIGTERM ignorer: from timeout_s to the trial's exit (the grace period included);
- setsid escapee: the tree stop that found it (cleanup.wait_start - timeline.exit).

    python bench/fault_detection.py [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, emit, run_sweep, trial_records  # noqa: E402
from gpusweep.events import EventTail  # noqa: E402
from gpusweep.records import TrialRecord  # noqa: E402
from gpusweep.records.layout import SweepLayout  # noqa: E402
from gpusweep.records.reader import read_samples  # noqa: E402

FAULTS = {
    "cuda_oom": ("oom.py", {"batch_size": {"values": [256]}}, {}),
    "host_rss_hog": ("rss_hog.py", {"x": {"values": [1]}}, {"limits": {"rss_mb": 400}}),
    "stall": ("stall.py", {"x": {"values": [1]}}, {"stall_s": 2}),
    "segfault": ("segfault.py", {"x": {"values": [1]}}, {}),
    "sigterm_ignorer": ("ignore_term.py", {"x": {"values": [1]}}, {"timeout_s": 1}),
    "setsid_escapee": ("escapee.py", {"x": {"values": [1]}}, {}),
    "leak_per_step": ("leak.py", {"steps": {"values": [10]}}, {}),
    "crash_at_start": ("crash_at_start.py", {"x": {"values": [1]}}, {}),
    "sigkill_not_ours": ("sigkill_self.py", {"x": {"values": [1]}}, {}),
}


def detection_s(name: str, record: TrialRecord, sweep_dir: Path, isolation: dict) -> float:
    timeline = record.timeline
    paths = SweepLayout(str(sweep_dir)).trial(record.run)
    if name == "host_rss_hog":
        limit = isolation["limits"]["rss_mb"]
        samples = read_samples(paths.memory_csv)
        over = [t for t, rss in zip(samples.t, samples.rss_mb, strict=True) if rss > limit]
        return timeline.exit - (timeline.start + over[0])
    if name == "stall":
        events = EventTail(paths.events).read_new()
        last_report = max(e["t"] for e in events if e.get("kind") == "report")
        return timeline.exit - last_report - isolation["stall_s"]
    if name == "sigterm_ignorer":
        return record.duration_s - isolation["timeout_s"]
    return timeline.wait_start - timeline.exit


def main() -> None:
    parser = bench_parser(__doc__, quick_help="(always quick: one run each)")
    args = parser.parse_args()
    table = {}
    for name, (program, parameters, isolation) in FAULTS.items():
        isolation = {"stop": {"grace_s": 1}, **isolation}
        config = {"program": f"tests/faults/{program}", "method": "grid",
                  "metric": {"name": "loss", "goal": "minimize"}, "parameters": parameters,
                  "isolation": isolation}
        extra = ("--profile-leaks",) if name == "leak_per_step" else ()
        _, sweep_dir, *_ = run_sweep(config, extra=extra)
        (record,) = trial_records(sweep_dir)
        status = record.status.value
        if name == "leak_per_step":
            status += f" (leak suspected: {record.leak.suspected}, " \
                      f"{record.leak.rss_mb_per_step} MB/step)"
        if name == "setsid_escapee":
            status += f" (escapees_killed: {record.cleanup.escapees_killed})"
        table[name] = {"status": status,
                       "detection_s": round(detection_s(name, record, sweep_dir, isolation), 3)}
    emit({"faults": table}, args.json)


if __name__ == "__main__":
    main()
