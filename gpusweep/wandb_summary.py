"""The sweep's summary run: one W&B run (job_type ``sweep-summary``) written after the sweep.

It carries what only the orchestrator knows (residual memory after each trial, the wait,
whether cleanup was clean) to the dashboard: a W&B Table with one row per trial, the totals
as its summary, and ``sweep.yaml`` as an artifact. It shares the trials' group and tag.

It also writes a minimal run (params as config, the trial's status, exit code 1) for every
trial that has none: one that failed before its first report or was killed while wandb
started. So each trial is one W&B run, as with W&B's agent, whose server makes the run when
it hands the trial out (cloud mode: nothing to add).

The summary run's id is stable, ``<sweep-id>_summary``, with ``resume="allow"``: a resumed
sweep writes the same run again rather than a new one. Online wandb resumes that run. Offline
wandb cannot (each ``init`` writes a new ``offline-run-*`` directory, same id): once the new
one is finished, the older directories of that id are removed, so ``wandb/`` keeps one,
complete (its table lists every trial so far).

The W&B work runs in a subprocess, ``python -m gpusweep.wandb_summary <sweep-dir>``, so the
orchestrator never imports wandb or hosts its service; :func:`publish_summary` starts it,
waits, and only warns if it fails: the records on disk are complete either way.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from gpusweep.status import TrialStatus
from gpusweep.sweepdir import read_yaml
from gpusweep.wandb_env import data_dir, resolve_project, run_group

JOB_TYPE = "sweep-summary"
COLUMNS = ["run", "params", "status", "metric", "gpu_peak_mb", "host_peak_mb", "residual_mb",
           "wait_s", "clean", "processes_killed", "escapees_killed", "energy_j",
           "util_mean_pct", "util_peak_pct"]
LOG_NAME = "summary-run.log"
TIMEOUT_S = 300.0
BACKFILL_S = 10.0  # more time per run to backfill (a wandb.init offline takes about 1 s)
# Variables that would attach the summary run to a trial or a sweep; it is neither.
_NOT_INHERITED = ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_RESUME",
                  "WANDB_RUN_GROUP", "WANDB_TAGS", "WANDB_JOB_TYPE", "WANDB_NAME")


# -- the orchestrator's side -------------------------------------------------------------
def publish_summary(sweep_dir: str, state: str, environ: dict[str, str] | None = None,
                    timeout_s: float = TIMEOUT_S, project: str | None = None,
                    backfill: bool = True) -> bool:
    """Write the summary run from a subprocess; False (and one warning line) if it failed.

    ``project`` is the one the orchestrator gave the trials, so the summary lands beside them.
    ``backfill``: also write runs for trials that have none (local sweeps only).

    Skipped with ``WANDB_MODE=disabled``, when no trial ended, and after a crash of ours.
    """
    environ = dict(os.environ if environ is None else environ)
    if environ.get("WANDB_MODE") == "disabled" or state == "crashed":
        return False
    if not os.path.exists(os.path.join(sweep_dir, "sweep.yaml")):
        return False
    for name in _NOT_INHERITED:
        environ.pop(name, None)
    environ.setdefault("WANDB_MODE", "offline")
    if project:
        environ["WANDB_PROJECT"] = project
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # for python -m
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, environ.get("PYTHONPATH")) if p)
    sweep_dir = os.path.abspath(sweep_dir)
    environ.setdefault("WANDB_DATA_DIR", data_dir(sweep_dir))
    log_path = os.path.join(sweep_dir, LOG_NAME)
    if backfill:
        trials = (read_yaml(os.path.join(sweep_dir, "sweep.yaml")) or {}).get("trials") or []
        timeout_s += BACKFILL_S * len(runless_trials(sweep_dir, trials))
    try:
        with open(log_path, "ab") as log:
            argv = [sys.executable, "-m", "gpusweep.wandb_summary", sweep_dir]
            proc = subprocess.Popen(argv + (["--backfill"] if backfill else []),
                                    env=environ, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = "timeout"
    except OSError as exc:
        code = f"{exc}"
    if code == 0:
        return True
    print(f"warning: the W&B summary run was not written ({code}); see {log_path}",
          file=sys.stderr, flush=True)
    return False


# -- the subprocess ----------------------------------------------------------------------
def table_rows(sweep_dir: str) -> list[list[Any]]:
    """One row per trial (in the order they ended), from the trials' memory.yaml files."""
    sweep = read_yaml(os.path.join(sweep_dir, "sweep.yaml")) or {}
    rows = []
    for entry in sweep.get("trials") or []:
        record = read_yaml(os.path.join(sweep_dir, str(entry["run"]), "memory.yaml")) or {}
        gpu, host = record.get("gpu") or {}, record.get("host") or {}
        cleanup = record.get("cleanup") or {}
        rows.append([
            entry["run"],
            json.dumps(entry.get("params") or {}, sort_keys=True, default=str),
            entry.get("status"),
            (record.get("metric") or {}).get("best"),
            gpu.get("peak_tree_mb"),
            host.get("peak_rss_mb"),
            gpu.get("residual_mb"),
            cleanup.get("wait_s"),
            cleanup.get("clean"),
            cleanup.get("processes_killed"),
            cleanup.get("escapees_killed"),
            gpu.get("energy_j"),
            gpu.get("util_mean_pct"),
            gpu.get("util_peak_pct"),
        ])
    return rows


def summary_run_id(sweep_id: str) -> str:
    """The summary run's id: the same in every session of one sweep."""
    return f"{sweep_id}_summary"


def older_offline_runs(sweep_dir: str, run_id: str, keep: str) -> list[str]:
    """Offline run directories of ``run_id`` other than ``keep`` (earlier sessions')."""
    keep = os.path.realpath(keep)
    return sorted(path for path in glob.glob(os.path.join(sweep_dir, "wandb",
                                                          f"offline-run-*-{run_id}"))
                  if os.path.realpath(path) != keep)


def runless_trials(sweep_dir: str, trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials (that started) with no run directory of their id under ``wandb/``."""
    have = {os.path.basename(path).rsplit("-", 1)[-1]
            for path in glob.glob(os.path.join(sweep_dir, "wandb", "*run-*-*"))}
    return [t for t in trials if str(t.get("run")) not in have
            and t.get("status") != TrialStatus.SKIPPED_NO_FIT.value]


def backfill_runs(wandb: Any, sweep_dir: str, trials: list[dict[str, Any]],
                  **init: Any) -> None:
    """A minimal run for each trial without one: its id, params, status, a failing exit."""
    for entry in runless_trials(sweep_dir, trials):
        run = wandb.init(dir=sweep_dir, id=str(entry["run"]), job_type="trial",
                         config=entry.get("params") or {}, **init)
        run.summary["gpusweep/status"] = entry.get("status")
        run.finish(exit_code=0 if entry.get("status") == TrialStatus.FINISHED.value else 1)


def main(argv: list[str] | None = None) -> int:
    """``python -m gpusweep.wandb_summary SWEEP_DIR [--backfill]``: write the summary run."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) > 2 or argv[1:] not in ([], ["--backfill"]):
        print("usage: python -m gpusweep.wandb_summary SWEEP_DIR [--backfill]",
              file=sys.stderr)
        return 2
    sweep_dir = os.path.abspath(argv[0])
    sweep = read_yaml(os.path.join(sweep_dir, "sweep.yaml")) or {}
    header = sweep.get("sweep") or {}
    sweep_id = str(header.get("id") or os.path.basename(sweep_dir))
    config = header.get("config") or {}
    group = run_group(sweep_id, header.get("name"))
    project = resolve_project(os.environ.get("WANDB_PROJECT"), config.get("project"))

    entity = os.environ.get("WANDB_ENTITY") or config.get("entity")

    import wandb

    if argv[1:]:
        backfill_runs(wandb, sweep_dir, sweep.get("trials") or [], project=project,
                      entity=entity, group=group, tags=[sweep_id])
    run = wandb.init(
        dir=sweep_dir, project=project, entity=entity,
        group=group, tags=[sweep_id], job_type=JOB_TYPE, name=f"{group}-summary",
        id=summary_run_id(sweep_id), resume="allow",
        config={"sweep_id": sweep_id, "method": header.get("method"),
                "metric": header.get("metric"), "state": header.get("state"),
                "sweep_config": config})
    try:
        run.log({"trials": wandb.Table(columns=COLUMNS, data=table_rows(sweep_dir))})
        for key, value in _flat(sweep.get("totals") or {}).items():
            run.summary[f"totals/{key}"] = value
        artifact = wandb.Artifact(f"sweep-{sweep_id}", type="sweep-record",
                                  description=f"sweep.yaml of sweep {sweep_id}")
        artifact.add_file(os.path.join(sweep_dir, "sweep.yaml"), name="sweep.yaml")
        run.log_artifact(artifact)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run_dir = os.path.dirname(run.dir)  # <sweep>/wandb/offline-run-<time>-<id>
    offline = run.settings._offline
    run.finish()
    if offline:
        for path in older_offline_runs(sweep_dir, summary_run_id(sweep_id), run_dir):
            shutil.rmtree(path, ignore_errors=True)
    return 0


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[f"{prefix}{key}"] = value
    return out


if __name__ == "__main__":
    sys.exit(main())
