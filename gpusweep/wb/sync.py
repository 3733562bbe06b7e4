"""``gpusweep sync <sweep-dir>``: an offline sweep onto the W&B dashboard.

Three steps, each printed (``--dry-run`` prints them and does nothing):

1. ``wandb sync`` of every trial's offline run, wherever the trial wrote it (its record's
   ``wandb_run.dir``: PyTorch Lightning writes under the working directory), and of the
   summary runs under ``<sweep-dir>/wandb/``;
2. ``wandb.sweep(config, prior_runs=[...])``: a W&B sweep from the sweep's engine config
   (W&B's keys only) with those runs attached as prior runs (wandb sends them as
   ``priorRunsFilters``), so the sweep gets its page: parallel coordinates, parameter
   importance;
3. the new sweep is stopped (state ``FINISHED``, what ``wandb sweep --stop`` sends): its
   search ran here, no agent should pick it up.

The project is ``--project``, else the one the sweep's runs were written with (kept in
sweep.yaml), as is the entity.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
from dataclasses import dataclass, field

from gpusweep.errors import EXIT_BAD_INPUT, BadInput
from gpusweep.records.layout import SweepLayout
from gpusweep.records.reader import load_sweep_dir
from gpusweep.status import TrialStatus
from gpusweep.wb.env import without_live_wandb

SYNC_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class SyncPlan:
    """What ``sync`` will do for one sweep directory."""

    sweep_dir: str
    project: str | None
    entity: str | None
    config: dict
    trial_runs: dict[str, str]  # run id -> offline run directory
    summary_runs: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # trials with no run directory

    def sync_argv(self) -> list[str]:
        argv = [_wandb_cli(), "sync", "--no-skip-synced"]
        argv += ["--project", self.project] if self.project else []
        argv += ["--entity", self.entity] if self.entity else []
        return argv + list(self.trial_runs.values()) + self.summary_runs


def plan(sweep_dir: str, project: str | None = None, entity: str | None = None) -> SyncPlan:
    """Find the runs of a sweep directory (BadInput when it is not one)."""
    data = load_sweep_dir(sweep_dir, command="sync")
    header = data.header
    config = {k: v for k, v in data.config.items() if k != "isolation"}
    runs: dict[str, str] = {}
    missing = []
    for record in data.records:
        found = run_dir(sweep_dir, record.run, record.wandb_run)
        if found:
            runs[record.run] = found
        elif record.status is not TrialStatus.SKIPPED_NO_FIT:
            missing.append(record.run)
    summaries = sorted(glob.glob(data.layout.offline_runs(f"{header.id}-summary-*")))
    return SyncPlan(sweep_dir, project or header.project or config.get("project"),
                    entity or header.entity or config.get("entity"), config, runs,
                    summaries, missing)


def run_dir(sweep_dir: str, run: str, recorded: dict | None) -> str | None:
    """A trial's offline run directory: where its bootstrap said, else under the sweep dir
    (the newest, should wandb have written several)."""
    where = (recorded or {}).get("dir")
    if isinstance(where, str) and os.path.isdir(where):
        return where
    found = sorted(glob.glob(SweepLayout(sweep_dir).offline_runs(run)))
    return found[-1] if found else None


def main(argv: list[str], prog: str = "gpusweep sync") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Upload an offline sweep's runs to W&B and "
                                     "give them a sweep page.")
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="<log-dir>/<sweep-id>")
    parser.add_argument("--project", "-p", help="W&B project (default: the sweep's runs')")
    parser.add_argument("--entity", "-e", help="W&B entity (default: the sweep's runs')")
    parser.add_argument("--dry-run", action="store_true", help="print each step, run nothing")
    args = parser.parse_args(argv)
    try:
        the_plan = plan(args.sweep_dir, args.project, args.entity)
        if not the_plan.trial_runs:
            raise BadInput(args.sweep_dir, "sync", "no offline W&B run to upload (was the "
                           "sweep run with WANDB_MODE=disabled?)")
        return execute(the_plan, dry_run=args.dry_run)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def execute(the_plan: SyncPlan, dry_run: bool = False) -> int:
    """Run (or print) the three steps; 1 when a step failed."""
    where = "/".join(p for p in (the_plan.entity, the_plan.project) if p) or "(default)"
    for run in the_plan.missing:
        print(f"note: trial {run} has no W&B run to upload")
    print(f"1. {' '.join(the_plan.sync_argv())}")
    print(f"2. wandb.sweep(<config of {the_plan.sweep_dir}>, project={the_plan.project!r}, "
          f"entity={the_plan.entity!r}, prior_runs={sorted(the_plan.trial_runs)})")
    print("3. stop that sweep (state FINISHED): its search ran offline")
    if dry_run:
        return 0
    from gpusweep.wb.cloud_check import check_cloud

    os.environ["WANDB_MODE"] = "online"
    # No wandb call was made here yet, so a WANDB_SERVICE now was inherited: another
    # process's service, or a dead one. wandb.Api() and wandb sync (beta_sync.py,
    # ensure_service) would both connect to it; each starts its own instead.
    without_live_wandb(os.environ)
    check_cloud("sync")
    try:
        # wandb sync connects to the service WANDB_SERVICE names (beta_sync.py,
        # ensure_service): an inherited one is another process's, or long gone
        done = subprocess.run(the_plan.sync_argv(), stdin=subprocess.DEVNULL,
                              env=without_live_wandb(dict(os.environ)),
                              timeout=SYNC_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"error: wandb sync did not run: {exc}", file=sys.stderr)
        return 1
    if done.returncode != 0:
        print(f"error: wandb sync exited {done.returncode}", file=sys.stderr)
        return 1
    import wandb
    from wandb.apis.public.sweeps import _set_sweep_state

    try:
        sweep_id = wandb.sweep(the_plan.config, entity=the_plan.entity,
                               project=the_plan.project, prior_runs=sorted(the_plan.trial_runs))
        _set_sweep_state(wandb.Api(), sweep_id, "FINISHED", entity=the_plan.entity,
                         project=the_plan.project)
    except Exception as exc:
        print(f"error: W&B: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"sweep {sweep_id} in {where}: {len(the_plan.trial_runs)} runs attached, stopped")
    return 0


def _wandb_cli() -> str:
    """wandb's CLI of this interpreter's environment."""
    beside = os.path.join(os.path.dirname(sys.executable), "wandb")
    return beside if os.access(beside, os.X_OK) else "wandb"
