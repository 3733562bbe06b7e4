"""Isolation's cost between trials: ours (adaptive wait) vs the incident's fixed 5 s vs none.

The same N short trials run through tools/sweep.py under three wait policies, in one run.
Overhead per trial = (sweep wall time - sum of trial durations) / N. On a GPU the trials
really allocate and free CUDA memory, and the residual left when the next trial could start
shows whether "none" is safe.

    python bench/inter_trial_overhead.py [--quick] [--json] [--trials N] [--repeats R]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, emit, median, run_sweep, trial_records  # noqa: E402

POLICIES = {"adaptive": {"mode": "adaptive"}, "fixed": {"mode": "fixed", "fixed_s": 5.0},
            "none": {"mode": "none"}}


def sweep_config(trials: int, wait: dict) -> dict:
    return {
        "program": str((ROOT / "bench" / "programs" / "short_trial.py").relative_to(ROOT)),
        "method": "grid",
        "parameters": {"i": {"values": list(range(trials))}, "seconds": {"value": 0.2}},
        "isolation": {"wait": wait, "stop": {"grace_s": 5}},
    }


def measure(trials: int, wait: dict) -> tuple[float, list[float | None]]:
    wall, sweep_dir = run_sweep(sweep_config(trials, wait))
    records = trial_records(sweep_dir)
    overhead = (wall - sum(r["duration_s"] for r in records)) / len(records)
    return overhead, [r["gpu"]["residual_mb"] for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of under 2 minutes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--repeats", type=int)
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 10)
    repeats = args.repeats or (2 if args.quick else 3)
    overheads: dict[str, list[float]] = {name: [] for name in POLICIES}
    residuals: dict[str, list[float]] = {name: [] for name in POLICIES}
    for _ in range(repeats):
        for name, wait in POLICIES.items():
            if name == "fixed" and len(overheads["fixed"]) >= 1 and args.quick:
                continue  # 5 s a trial: once is enough to know what it costs
            overhead, residual = measure(trials, wait)
            overheads[name].append(overhead)
            residuals[name] += [r for r in residual if r is not None]
    ours = median(overheads["adaptive"])
    fixed = median(overheads["fixed"])
    result = {
        "trials": trials,
        "repeats": repeats,
        "overhead_s_median": round(ours, 3),
        "fixed_overhead_s": round(fixed, 3),
        "none_overhead_s": round(median(overheads["none"]), 3),
        "ratio_vs_fixed": round(fixed / ours, 1) if ours > 0 else None,
    }
    for name in POLICIES:
        if residuals[name]:
            result[f"{name}_residual_mb_max"] = round(max(residuals[name]), 1)
    emit(result, args.json)


if __name__ == "__main__":
    main()
