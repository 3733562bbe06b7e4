"""Serial vs 2 and 4 slots: the wall time of the same sweep on this machine.

The trials are the demo MLP (torch, one thread each), so the figure shows what the cores
allow: on 2 cores, 2 slots should take about half the time and 4 slots no less than 2.

    python bench/slots_scaling.py [--quick] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, emit, run_sweep, trial_records  # noqa: E402
from gpusweep.status import TrialStatus  # noqa: E402


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    trials, epochs = (4, 3) if args.quick else (8, 6)
    config = {
        "program": "examples/demo_mlp.py", "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"seed": {"values": list(range(trials))}, "epochs": {"value": epochs},
                       "hidden": {"value": 64}, "batch_size": {"value": 64}},
    }
    result: dict = {"trials": trials}
    walls = {}
    for slots in (1, 2, 4):
        wall, sweep_dir, *_ = run_sweep(config, extra=("--slots", str(slots)))
        records = trial_records(sweep_dir)
        assert all(r.status is TrialStatus.FINISHED for r in records), sweep_dir
        walls[slots] = wall
        result[f"wall_s_{slots}_slot{'s' if slots > 1 else ''}"] = round(wall, 2)
    result["speedup_2_slots"] = round(walls[1] / walls[2], 2)
    result["speedup_4_slots"] = round(walls[1] / walls[4], 2)
    emit(result, args.json)


if __name__ == "__main__":
    main()
