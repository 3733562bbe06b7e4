"""Isolation's cost between trials: ours (adaptive wait) vs the incident's fixed 5 s vs none.

The same N short trials run through tools/sweep.py under three wait policies, in one run.
Overhead per trial = (sweep wall time - sum of trial durations) / N, where the wall time is
the orchestrator's loop (its start-up, paid once per sweep, excluded: the target is on this).
Also reported: the start-up itself (from the command's start to the first trial's launch)
and the overhead per trial of the whole command (timed around the subprocess: start-up and
exit included). On a GPU the trials
really allocate and free CUDA memory, and the residual left when the next trial could start
shows whether "none" is safe.

    python bench/inter_trial_overhead.py [--quick] [--json] [--trials N] [--repeats R]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bench_parser, emit, first_gpu, median, run_sweep, trial_records  # noqa: E402

POLICIES = {"adaptive": {"mode": "adaptive"}, "fixed": {"mode": "fixed", "fixed_s": 5.0},
            "none": {"mode": "none"}}


def sweep_config(trials: int, wait: dict) -> dict:
    return {
        "program": str((ROOT / "bench" / "programs" / "short_trial.py").relative_to(ROOT)),
        "method": "grid",
        "parameters": {"i": {"values": list(range(trials))}, "seconds": {"value": 0.2}},
        "isolation": {"wait": wait, "stop": {"grace_s": 5}},
    }


def measure(trials: int, wait: dict) -> tuple[float, float, float, list[float | None]]:
    """(overhead per trial, start-up excluded; the same included; start-up; residuals)."""
    wall, sweep_dir, command_s, launched = run_sweep(sweep_config(trials, wait))
    records = trial_records(sweep_dir)
    busy = sum(r.duration_s for r in records)
    startup = records[0].timeline.start - launched
    return ((wall - busy) / len(records), (command_s - busy) / len(records), startup,
            [r.gpu.residual_mb for r in records])


def main() -> None:
    parser = bench_parser(__doc__, quick_help="a run of under 2 minutes", counts=True)
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 10)
    repeats = args.repeats or (2 if args.quick else 3)
    overheads: dict[str, list[float]] = {name: [] for name in POLICIES}
    residuals: dict[str, list[float]] = {name: [] for name in POLICIES}
    with_startup, startups = [], []
    for _ in range(repeats):
        for name, wait in POLICIES.items():
            if name == "fixed" and len(overheads["fixed"]) >= 1 and args.quick:
                continue  # 5 s a trial: once is enough to know what it costs
            overhead, overhead_with_startup, startup, residual = measure(trials, wait)
            overheads[name].append(overhead)
            if name == "adaptive":
                with_startup.append(overhead_with_startup)
            startups.append(startup)
            residuals[name] += [r for r in residual if r is not None]
    ours = median(overheads["adaptive"])
    fixed = median(overheads["fixed"])
    result = {
        "trials": trials,
        "repeats": repeats,
        "gpu": first_gpu(),
        "overhead_s_median": round(ours, 3),
        "overhead_s_incl_startup_median": round(median(with_startup), 3),
        "startup_s_median": round(median(startups), 3),
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
