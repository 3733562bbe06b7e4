"""``--slots auto`` against one slot: trials per hour of the same sweep, and the count reached.

Two ways to run it:

* ``--sim`` (the default on a machine without a GPU; what ``make bench`` records): trials
  on a SIMULATED GPU (tests/simnvml, a 40 GB device whose utilization is 25 % per 1000 MB
  trial), each holding 1000 MB for ``--trial-s`` seconds: auto should reach four at once.
  It measures the orchestrator's side (filling, the readings, the GPU wait), not a model.
* ``--sweep FILE`` on a real GPU (``make gpu-check`` runs it with sweeps/sweep_quick.yaml):
  the same sweep file once with ``--slots 1`` and once with ``--slots auto``, ``--count N``
  trials each.

Trials per hour is trials ended / the sweep loop's wall time (sweep.yaml ``wall_s``, the
CLI's start-up left out); ``reached`` is 1 + the most trials any trial ran beside.

    python bench/auto_slots.py [--quick] [--json] [--sim | --sweep FILE] [--count N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bench_parser, emit, first_gpu, run_sweep, trial_records  # noqa: E402

SIM_MB = 1000.0  # 25 % of the simulated GPU's util_full_mb: four trials make 100 %


def trials_per_hour(ended: int, wall_s: float) -> float | None:
    """Trials per hour; None when nothing ran or no time passed."""
    if ended <= 0 or wall_s <= 0:
        return None
    return ended * 3600.0 / wall_s


def reached(beside: list[int | None]) -> int | None:
    """The most trials that ran at once, from each record's ``beside`` (None: unknown)."""
    known = [b for b in beside if b is not None]
    return 1 + max(known) if known and len(known) == len(beside) else None


def sim_config(trials: int, trial_s: float) -> dict[str, Any]:
    return {
        "program": str(ROOT / "tests" / "programs" / "sim_gpu.py"), "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": list(range(trials))}, "mb": {"value": SIM_MB},
                       "seconds": {"value": trial_s}},
        "isolation": {"utilization_window_s": 0.5, "stop": {"grace_s": 1},
                      "wait": {"max_s": 5.0}}}


def sim_environ(state: Path) -> dict[str, str]:
    """The environment that puts the orchestrator and its trials on the simulated GPU."""
    sys.path.insert(0, str(ROOT / "tests"))
    from simnvml import compose

    return compose.environ(compose.scenario(state, [compose.gpu(0)]))


def measure(config: dict[str, Any], slots: str, count: int | None,
            env: dict[str, str] | None) -> dict[str, Any]:
    extra = ("--slots", slots) + (("--count", str(count)) if count else ())
    sweep = run_sweep(config, extra=extra, env=env)
    records = trial_records(sweep.sweep_dir)
    return {"trials": len(records), "wall_s": round(sweep.wall_s, 2),
            "trials_per_hour": _round(trials_per_hour(len(records), sweep.wall_s)),
            "reached": reached([r.beside for r in records])}


def compare(one: dict[str, Any], auto: dict[str, Any]) -> float | None:
    """How many times more trials per hour auto ran than one slot."""
    if not one["trials_per_hour"] or not auto["trials_per_hour"]:
        return None
    return round(auto["trials_per_hour"] / one["trials_per_hour"], 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument("--sim", action="store_true", help="the simulated GPU (default "
                        "without --sweep)")
    parser.add_argument("--sweep", metavar="FILE", help="a sweep file, on the real GPU")
    parser.add_argument("--count", type=int, metavar="N", help="trials per run")
    parser.add_argument("--trial-s", type=float, default=None, help="--sim: seconds a trial")
    args = parser.parse_args(argv)
    if args.sim and args.sweep:
        parser.error("--sim or --sweep FILE, not both")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.sweep:
        config = yaml.safe_load(Path(args.sweep).read_text())
        env, where = None, first_gpu()
        count = args.count
    else:
        count = args.count or (8 if args.quick else 16)
        config = sim_config(count, args.trial_s or (3.0 if args.quick else 5.0))
        env = sim_environ(Path(tempfile.mkdtemp(prefix="gpusweep-autoslots-")))
        where = None
    one = measure(config, "1", count, env)
    auto = measure(config, "auto", count, env)
    result = {"device": where or ("simulated GPU" if not args.sweep else "CPU"),
              "gpu": where, "sweep": args.sweep or "simulated: 1000 MB trials, 25 % each",
              "runs": {"--slots 1": one, "--slots auto": auto}, "auto_reached": auto["reached"],
              "speedup_auto_vs_one": compare(one, auto)}
    emit(result, args.json)


if __name__ == "__main__":
    main()
