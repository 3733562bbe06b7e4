"""The orchestrator's start-up: from starting ``tools/sweep.py`` to its first trial's launch.

For a grid, a random and a bayes sweep of short trials: the first trial's launch time, from
its record (``timeline.start``), minus the unix time just before the command was started (its
process starts a little later, so the figure is if anything too high); and how long
``--dry-run`` (validation and the first proposals) takes. Medians over repeats.

    python bench/orchestrator_startup.py [--quick] [--json] [--repeats R] [--root DIR]

``--root`` measures another checkout's ``tools/sweep.py`` (for a before/after comparison).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, SUMMARY, bench_parser, emit, median, trial_records  # noqa: E402

PARAMETERS = {
    "i": {"values": [0, 1, 2]},
    "lr": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.1},
    "seconds": {"value": 0.05},
}
METHODS = ("grid", "random", "bayes")


def sweep_config(method: str) -> dict:
    parameters = dict(PARAMETERS)
    if method == "grid":
        parameters["lr"] = {"values": [0.01]}
    return {"program": "bench/programs/short_trial.py", "method": method, "run_cap": 2,
            "metric": {"name": "loss", "goal": "minimize"}, "parameters": parameters}


def startup(root: Path, config_file: str) -> float:
    """Seconds from the command's start to its first trial's launch."""
    log_dir = tempfile.mkdtemp(prefix="gpusweep-bench-")
    try:
        launched = time.time()
        proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", config_file,
                               "--log-dir", log_dir, "--quiet"], cwd=root, capture_output=True,
                              text=True, timeout=300,
                              env=dict(os.environ, WANDB_MODE="disabled"))
        match = SUMMARY.search(proc.stdout)
        if proc.returncode != 0 or not match:
            raise RuntimeError(f"sweep failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        starts = [r.timeline.start for r in trial_records(Path(match["dir"]))]
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    return min(starts) - launched


def dry_run(root: Path, config_file: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", config_file,
                    "--dry-run"], cwd=root, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - started


def python_start() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    return time.perf_counter() - started


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--root", default=str(ROOT), help="the checkout to measure")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    repeats = args.repeats or (3 if args.quick else 7)
    files = {}
    for method in METHODS:
        with tempfile.NamedTemporaryFile("w", suffix=f"-{method}.yaml", delete=False) as handle:
            yaml.safe_dump(sweep_config(method), handle)
        files[method] = handle.name
    starts: dict[str, list[float]] = {m: [] for m in METHODS}
    dry: dict[str, list[float]] = {m: [] for m in METHODS}
    bare = []
    try:
        for _ in range(repeats):  # interleaved, so that a busy spell hits every method
            bare.append(python_start())
            for method in METHODS:
                starts[method].append(startup(root, files[method]))
                dry[method].append(dry_run(root, files[method]))
    finally:
        for name in files.values():
            os.unlink(name)
    result = {"repeats": repeats, "python_start_s_median": round(median(bare), 3)}
    for method in METHODS:
        result[f"{method}_startup_s_median"] = round(median(starts[method]), 3)
    for method in METHODS:
        result[f"{method}_dry_run_s_median"] = round(median(dry[method]), 3)
    if root != ROOT:
        result["root"] = str(root)
    emit(result, args.json)


if __name__ == "__main__":
    main()
