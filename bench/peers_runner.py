"""One experiment of bench/peers.py under Ray Tune or Optuna, in a fresh interpreter.

bench/peers.py starts this once per measurement, so that each runner's import and start-up
are paid as a user pays them. Each runner is used as its documentation shows:

- Ray Tune: a function trainable reporting with ``tune.report``, run by ``tune.Tuner`` over
  ``tune.grid_search``, one trial at a time (``max_concurrent_trials=1``) with a fresh actor
  per trial (``reuse_actors=False``, the default); Ray started by the Tuner itself
  (https://docs.ray.io/en/latest/tune/api/trainable.html and
  https://docs.ray.io/en/latest/tune/api/doc/ray.tune.TuneConfig.html).
- Optuna: ``study.optimize(objective, n_trials=N)`` over a ``GridSampler``; the objective
  reports with ``trial.report(value, step)`` (https://optuna.readthedocs.io, "First
  optimization", "Pruning"). ``subprocess``: the objective runs the trial program with
  ``subprocess.run`` and reports the values it prints; ``inprocess``: it calls the trial's
  body itself.

    python bench/peers_runner.py {ray,optuna-subprocess,optuna-inprocess} --trials N
        --events FILE --workdir DIR [--daemon none|setsid|emptyenv] [--tag T]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent / "programs"
sys.path.insert(0, str(PROGRAMS))

from peer_trial import trial_body  # noqa: E402


def run_ray(args: argparse.Namespace) -> None:
    # Ray's workers import the trainable's module (peer_trial): they inherit this environment.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROGRAMS), os.environ.get("PYTHONPATH")) if p)
    from ray import tune

    def trainable(config: dict) -> None:  # pickled by value into each trial's actor
        trial_body(config["i"], lambda step, value: tune.report({"loss": value, "step": step}),
                   args.events, args.daemon, args.tag)

    tuner = tune.Tuner(
        trainable,
        param_space={"i": tune.grid_search(list(range(args.trials)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=False),
        run_config=tune.RunConfig(storage_path=str(Path(args.workdir).resolve()),
                                  name="peers", verbose=0),
    )
    results = tuner.fit()
    if results.errors:
        raise SystemExit(f"ray tune: {len(results.errors)} trials failed: {results.errors[0]}")


def run_optuna(args: argparse.Namespace, in_process: bool) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        i = trial.suggest_int("i", 0, args.trials - 1)
        if in_process:
            return trial_body(i, lambda step, value: trial.report(value, step), args.events,
                              args.daemon, args.tag)
        proc = subprocess.run(
            [sys.executable, str(PROGRAMS / "peer_trial.py"), "--i", str(i), "--events",
             args.events, "--daemon", args.daemon, "--tag", args.tag, "--report", "stdout"],
            capture_output=True, text=True, check=True, timeout=60)
        value = float("nan")
        for line in proc.stdout.splitlines():
            if line.startswith("report "):
                _, step, value_text = line.split()
                value = float(value_text)
                trial.report(value, int(step))
        return value

    sampler = optuna.samplers.GridSampler({"i": list(range(args.trials))})
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.optimize(objective, n_trials=args.trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runner", choices=["ray", "optuna-subprocess", "optuna-inprocess"])
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--daemon", default="none", choices=["none", "setsid", "emptyenv"])
    parser.add_argument("--tag", default="peers")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.runner == "ray":
        run_ray(args)
    else:
        run_optuna(args, in_process=args.runner == "optuna-inprocess")


if __name__ == "__main__":
    main()
