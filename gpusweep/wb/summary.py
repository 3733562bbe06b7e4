"""The sweep's summary run: one W&B run (job_type ``sweep-summary``) per agent, after the sweep.

It carries what only the orchestrator knows (residual memory after each trial, the wait,
whether cleanup was clean) to the dashboard: a W&B Table with one row per trial, the totals
as its summary, and ``sweep.yaml`` as an artifact. It shares the trials' group and tag.

It also writes a minimal run (params as config, the trial's status, exit code 1) for every
trial that has none: one that failed before its first report or was killed while wandb
started. A trial whose run was written elsewhere (PyTorch Lightning's ``WandbLogger`` puts
it under the working directory) has its run's directory in its record and gets none. Cloud
mode needs none: W&B's server makes each run when it hands the trial out.

Each agent writes its own summary run, ``<sweep-id>-summary-<agent>``, where ``agent`` is a
short hash of the host and the sweep directory (:func:`agent_key`): several agents on one
cloud sweep never overwrite each other, and an agent restarted on the same log dir (or a
resumed local sweep) writes its own run again (``resume="allow"``). Offline wandb cannot
resume (each ``init`` writes a new ``offline-run-*`` directory, same id): once the new one
is finished, the older directories of that id are removed, so ``wandb/`` keeps one.

The W&B work runs in a subprocess, ``python -m gpusweep.wb.summary <sweep-dir>``, so the
orchestrator never imports wandb for it. :func:`publish_summary` starts it detached (its
own session) and returns at once: the end of the sweep does not wait for wandb. The
subprocess records its outcome in ``summary-run.yaml`` (``state: writing``, then ``written``
or ``failed`` with the reason) and its output in ``summary-run.log``.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from gpusweep.records import SummaryState, SweepState
from gpusweep.records.atomic import write_yaml
from gpusweep.records.layout import SUMMARY_LOG, SUMMARY_OUTCOME, SWEEP_YAML, SweepLayout
from gpusweep.records.reader import SweepData, TrialRow, read_sweep_dir, read_yaml
from gpusweep.signals import deadline
from gpusweep.status import TrialStatus
from gpusweep.wb.env import data_dir, run_group, without_live_wandb

JOB_TYPE = "sweep-summary"
COLUMNS = ["run", "params", "status", "metric", "gpu_peak_mb", "host_peak_mb", "residual_mb",
           "wait_s", "clean", "processes_killed", "escapees_killed", "energy_j",
           "util_mean_pct", "util_peak_pct"]
LOG_NAME = SUMMARY_LOG
OUTCOME_NAME = SUMMARY_OUTCOME
TIMEOUT_S = 300.0
BACKFILL_S = 10.0  # more time per run to backfill (a wandb.init offline takes about 1 s)
# Variables that would attach the summary run to a trial or a sweep; it is neither.
_NOT_INHERITED = ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_RESUME",
                  "WANDB_RUN_GROUP", "WANDB_TAGS", "WANDB_JOB_TYPE", "WANDB_NAME")


# -- the orchestrator's side -------------------------------------------------------------
def agent_key(sweep_dir: str, host: str | None = None) -> str:
    """This agent's part of its summary run's id: the same for the same host and sweep dir
    (a restart, a resume), different for every other agent on the sweep."""
    where = f"{host or socket.gethostname()}:{os.path.realpath(sweep_dir)}"
    return hashlib.sha256(where.encode()).hexdigest()[:8]


def publish_summary(sweep_dir: str, state: SweepState, environ: dict[str, str] | None = None,
                    timeout_s: float = TIMEOUT_S, project: str | None = None,
                    entity: str | None = None, agent: str | None = None,
                    backfill: bool = True, wait: bool = False) -> int | None:
    """Start the subprocess that writes the summary run; its pid (None when skipped).

    Detached: it runs in its own session and outlives the orchestrator, which returns at
    once (``wait=True`` waits for it: tests and tools). ``project`` and ``entity`` are the
    trials', so the summary lands beside them. ``backfill``: also write runs for trials
    that have none (local sweeps only). Skipped with ``WANDB_MODE=disabled``, when no trial
    ended, and after a crash of ours.
    """
    environ = dict(os.environ if environ is None else environ)
    layout = SweepLayout(os.path.abspath(sweep_dir))
    if environ.get("WANDB_MODE") == "disabled" or state is SweepState.CRASHED:
        return None
    if not os.path.exists(layout.sweep_yaml):
        return None
    for name in _NOT_INHERITED:
        environ.pop(name, None)
    without_live_wandb(environ)  # its own service, never the orchestrator's
    environ.setdefault("WANDB_MODE", "offline")
    if project:
        environ["WANDB_PROJECT"] = project
    if entity:
        environ["WANDB_ENTITY"] = entity
    # for python -m: the directory that holds the package
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, environ.get("PYTHONPATH")) if p)
    sweep_dir = layout.dir
    environ.setdefault("WANDB_DATA_DIR", data_dir(sweep_dir))
    if backfill:
        sweep = read_sweep_dir(sweep_dir)
        timeout_s += BACKFILL_S * len(runless_trials(sweep) if sweep is not None else [])
    argv = [sys.executable, "-m", "gpusweep.wb.summary", sweep_dir,
            "--agent", agent or agent_key(sweep_dir), "--timeout", f"{timeout_s:g}"]
    argv += ["--backfill"] if backfill else []
    try:
        with open(layout.summary_log, "ab") as log:
            proc = subprocess.Popen(argv, env=environ, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        write_yaml(layout.summary_outcome, _outcome(SummaryState.WRITING, pid=proc.pid,
                                                    agent=argv[5]))
    except OSError as exc:
        print(f"warning: the W&B summary run was not started ({exc})", file=sys.stderr,
              flush=True)
        return None
    if wait:
        try:
            proc.wait(timeout=timeout_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.pid


def summary_outcome(sweep_dir: str) -> dict[str, Any]:
    """What the last summary subprocess recorded (empty when none ran)."""
    return read_yaml(SweepLayout(sweep_dir).summary_outcome) or {}


# -- the subprocess ----------------------------------------------------------------------
def table_rows(sweep_dir: str) -> list[list[Any]]:
    """One row per trial (in the order they ended), from the trials' memory.yaml files."""
    sweep = read_sweep_dir(sweep_dir)
    return [table_row(row) for row in (sweep.rows if sweep is not None else [])]


def table_row(row: TrialRow) -> list[Any]:
    """A trial's row of the summary table; its sweep.yaml row alone where its memory.yaml
    is missing (the orchestrator's columns then stay empty)."""
    record = row.record
    gpu = record.gpu if record else None
    cleanup = record.cleanup if record else None
    return [
        row.run,
        json.dumps(row.params, sort_keys=True, default=str),
        None if row.status is None else row.status.value,
        record.metric.best if record else None,
        gpu.peak_tree_mb if gpu else None,
        record.host.peak_rss_mb if record else None,
        gpu.residual_mb if gpu else None,
        cleanup.wait_s if cleanup else None,
        cleanup.clean if cleanup else None,
        cleanup.processes_killed if cleanup else None,
        cleanup.escapees_killed if cleanup else None,
        gpu.energy_j if gpu else None,
        gpu.util_mean_pct if gpu else None,
        gpu.util_peak_pct if gpu else None,
    ]


def summary_run_id(sweep_id: str, agent: str) -> str:
    """The summary run's id: one per agent of the sweep, the same in each of its sessions."""
    return f"{sweep_id}-summary-{agent}"


def older_offline_runs(sweep_dir: str, run_id: str, keep: str) -> list[str]:
    """Offline run directories of ``run_id`` other than ``keep`` (earlier sessions')."""
    keep = os.path.realpath(keep)
    return sorted(path for path in glob.glob(SweepLayout(sweep_dir).offline_runs(run_id))
                  if os.path.realpath(path) != keep)


def runless_trials(sweep: SweepData) -> list[TrialRow]:
    """The trials (that started) with no W&B run: none of their id under ``wandb/`` and none
    recorded elsewhere (``wandb_run.dir`` in memory.yaml, e.g. Lightning's ``./wandb``)."""
    have = {os.path.basename(path).rsplit("-", 1)[-1]
            for path in glob.glob(sweep.layout.any_runs)}
    return [t for t in sweep.rows if t.run not in have
            and t.status is not TrialStatus.SKIPPED_NO_FIT
            and not _recorded_run_dir(t)]


def _recorded_run_dir(row: TrialRow) -> str | None:
    """The run directory the trial's bootstrap reported, if it still exists."""
    found = ((row.record.wandb_run if row.record else None) or {}).get("dir")
    return found if isinstance(found, str) and os.path.isdir(found) else None


def backfill_runs(wandb: Any, sweep: SweepData, **init: Any) -> None:
    """A minimal run for each trial without one: its id, params, status, a failing exit."""
    for row in runless_trials(sweep):
        status = None if row.status is None else row.status.value
        run = wandb.init(dir=sweep.dir, id=row.run, job_type="trial", config=row.params,
                         **init)
        run.summary["gpusweep/status"] = status
        run.finish(exit_code=0 if row.status is TrialStatus.FINISHED else 1)


def main(argv: list[str] | None = None) -> int:
    """``python -m gpusweep.wb.summary SWEEP_DIR --agent KEY [--timeout S] [--backfill]``:
    write the summary run, recording the outcome in summary-run.yaml."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gpusweep.wb.summary")
    parser.add_argument("sweep_dir")
    parser.add_argument("--agent", required=True)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--backfill", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sweep_dir = os.path.abspath(args.sweep_dir)
    outcome = SweepLayout(sweep_dir).summary_outcome
    with _one_writer(sweep_dir):  # a later session's summary waits for this one
        started = time.time()
        write_yaml(outcome, _outcome(SummaryState.WRITING, pid=os.getpid(), agent=args.agent,
                                     started=round(started, 3)))
        try:
            with deadline(args.timeout, f"not written within {args.timeout:g} s"):
                run_id = write_summary(sweep_dir, args.agent, args.backfill)
        except BaseException as exc:
            write_yaml(outcome, _outcome(SummaryState.FAILED, pid=os.getpid(), agent=args.agent,
                                         started=round(started, 3),
                                         ended=round(time.time(), 3),
                                         error=f"{type(exc).__name__}: {exc}"[:500]))
            raise
        write_yaml(outcome, _outcome(SummaryState.WRITTEN, pid=os.getpid(), agent=args.agent,
                                     run=run_id, started=round(started, 3),
                                     ended=round(time.time(), 3)))
    return 0


def _outcome(state: SummaryState, **fields: Any) -> dict[str, Any]:
    """summary-run.yaml's content: the state first, as its string."""
    return {"state": state.value, **fields}


@contextlib.contextmanager
def _one_writer(sweep_dir: str) -> Iterator[None]:
    with open(SweepLayout(sweep_dir).summary_lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_summary(sweep_dir: str, agent: str, backfill: bool) -> str:
    """Write this agent's summary run (and the stand-in runs); returns its id."""
    sweep = read_sweep_dir(sweep_dir)
    if sweep is None:
        raise FileNotFoundError(f"no readable sweep.yaml in {sweep_dir}")
    header = sweep.header
    sweep_id = header.id or os.path.basename(sweep_dir)
    config = header.config
    group = run_group(sweep_id, header.name)
    project = os.environ.get("WANDB_PROJECT") or config.get("project") or "uncategorized"
    entity = os.environ.get("WANDB_ENTITY") or config.get("entity")
    run_id = summary_run_id(sweep_id, agent)

    import wandb

    if backfill:
        backfill_runs(wandb, sweep, project=project, entity=entity, group=group,
                      tags=[sweep_id])
    run = wandb.init(
        dir=sweep_dir, project=project, entity=entity,
        group=group, tags=[sweep_id], job_type=JOB_TYPE, name=f"{group}-summary-{agent}",
        id=run_id, resume="allow",
        config={"sweep_id": sweep_id, "agent": agent, "method": header.method,
                "metric": header.metric, "state": header.state.value,
                "sweep_config": config})
    try:
        run.log({"trials": wandb.Table(columns=COLUMNS, data=[table_row(row)
                                                             for row in sweep.rows])})
        for key, value in _flat(sweep.totals).items():
            run.summary[f"totals/{key}"] = value
        artifact = wandb.Artifact(f"sweep-{sweep_id}-{agent}", type="sweep-record",
                                  description=f"sweep.yaml of sweep {sweep_id}, agent {agent}")
        artifact.add_file(sweep.layout.sweep_yaml, name=SWEEP_YAML)
        run.log_artifact(artifact)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run_dir = os.path.dirname(run.dir)  # <sweep>/wandb/offline-run-<time>-<id>
    offline = run.settings._offline
    run.finish()
    if offline:
        for path in older_offline_runs(sweep_dir, run_id, run_dir):
            shutil.rmtree(path, ignore_errors=True)
    return run_id


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
