"""What the trial API adds to a trial's start-up: ``import gpusweep.trial`` vs a bare Python.

Every trial pays it, so it must stay small: the module imports neither torch nor wandb.

    python bench/trial_startup.py [--quick] [--json]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bench_parser, emit, median  # noqa: E402


def timed(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    repeats = 10 if args.quick else 30
    bare, api = [], []
    for _ in range(repeats):
        bare.append(timed("pass"))
        api.append(timed("import gpusweep.trial"))
    emit({"repeats": repeats, "python_start_ms": round(1000 * median(bare), 1),
          "with_trial_api_ms": round(1000 * median(api), 1),
          "trial_api_import_ms": round(1000 * (median(api) - median(bare)), 1)}, args.json)


if __name__ == "__main__":
    main()
