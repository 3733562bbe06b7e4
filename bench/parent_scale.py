"""The orchestrator's own footprint over hundreds of trivial trials: RSS growth, flat overhead.

Each trial is ``true`` (no Python, no memory): what is left is the orchestrator. Its RSS is
sampled from outside (psutil on its pid) once the first 50 trials ended and at the end; the
per-trial overhead is the gap from one trial's exit to the next one's start (stop the tree,
wait, write the records, ask the engine, launch), compared over the first and last 50.
Every figure is the median over repeated sweeps (a sweep of 500 takes about 15 s).

    python bench/parent_scale.py [--quick] [--json] [--trials N] [--repeats R]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bench_parser, emit, median, trial_records  # noqa: E402
from gpusweep.records.layout import MEMORY_YAML  # noqa: E402

DIGITS = {"overhead_s_first_window_median": 4, "overhead_s_last_window_median": 4,
          "overhead_ratio_last_vs_first": 2}  # the others: MB, to 0.1


def main() -> None:
    parser = bench_parser(__doc__, counts=True)
    args = parser.parse_args()
    trials = args.trials or (150 if args.quick else 500)
    repeats = args.repeats or (2 if args.quick else 3)
    window = min(50, trials // 3)
    runs = [one_sweep(trials, window) for _ in range(repeats)]
    result = {"trials": runs[0]["trials"], "window": window, "repeats": repeats}
    for key in runs[0]:
        values = [run[key] for run in runs]
        if key != "trials":
            result[key] = None if None in values else round(median(values), DIGITS.get(key, 1))
    emit(result, args.json)


def one_sweep(trials: int, window: int) -> dict:
    """One sweep of ``trials`` trivial trials; its RSS and overhead figures."""
    config = {"method": "random", "run_cap": trials, "command": ["true", "${args}"],
              "parameters": {"x": {"min": 0.0, "max": 1.0}},
              "isolation": {"stop": {"grace_s": 1}}}
    log_dir = tempfile.mkdtemp(prefix="gpusweep-scale-")
    sweep_file = Path(log_dir) / "scale.yaml"
    sweep_file.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "sweep.py"), "--sweep-config",
                             str(sweep_file), "--log-dir", log_dir, "--quiet"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    orchestrator = psutil.Process(proc.pid)
    rss_after_window = None
    peak_rss = 0.0
    while proc.poll() is None:
        try:
            rss = orchestrator.memory_info().rss / 2**20
        except psutil.Error:
            break
        peak_rss = max(peak_rss, rss)
        if rss_after_window is None and _ended(log_dir) >= window:
            rss_after_window = rss
        time.sleep(0.05)
    out = proc.communicate()[0]
    sweep_dir = Path(out.split("records in ")[-1].strip())
    records = trial_records(sweep_dir)
    gaps = [b.timeline.start - a.timeline.exit
            for a, b in zip(records, records[1:], strict=False)]
    first, last = median(gaps[:window]), median(gaps[-window:])
    return {
        "trials": len(records),
        "orchestrator_rss_mb_after_first_window": rss_after_window or 0.0,
        "orchestrator_rss_mb_peak": peak_rss,
        "rss_growth_mb": peak_rss - (rss_after_window or peak_rss),
        "overhead_s_first_window_median": first,
        "overhead_s_last_window_median": last,
        "overhead_ratio_last_vs_first": last / first if first > 0 else None,
    }


def _ended(log_dir: str) -> int:
    return sum(1 for _ in Path(log_dir).glob(f"*/*/{MEMORY_YAML}"))


if __name__ == "__main__":
    main()
