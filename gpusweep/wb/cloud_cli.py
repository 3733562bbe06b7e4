"""``tools/sweep.py --wandb`` and ``--sweep-id``: create or join a W&B sweep, run its trials.

Everything that can be checked locally is checked first (the sweep file, the program), then
the API key and the server (:mod:`gpusweep.wb.cloud_check`), and only then does wandb talk to
the server: creating the sweep (``wandb.sweep``) or reading the one to join (wandb's own
``_sweep_with_runs``). The trials then run in the same session as a local sweep
(:class:`gpusweep.runner.SweepRunner`), with the server as their source
(:class:`gpusweep.wb.cloud_source.CloudSource`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import yaml

from gpusweep import preflight
from gpusweep.config import SweepSpec, load_sweep, parse_sweep
from gpusweep.errors import BadInput
from gpusweep.wb.env import without_live_wandb

HEARTBEAT_ENV = "GPUSWEEP_HEARTBEAT_S"  # seconds between heartbeats (wandb agent: 5)


def run_cloud(args: argparse.Namespace) -> int:
    """Create (``--wandb``) or join (``--sweep-id``) a W&B sweep and work on it."""
    from gpusweep.wb.cloud_check import check_cloud
    from gpusweep.wb.cloud_source import trial_wandb_mode

    option = "--sweep-id" if args.sweep_id else "--wandb"
    local = load_sweep(args.sweep_config) if args.sweep_config else None
    args.config_file = preflight.config_file(args.config_file)
    if local is not None:
        preflight.check_executable(local, args.config_file)
    trial_mode, mode_warning = trial_wandb_mode(dict(os.environ))
    os.environ["WANDB_MODE"] = "online"  # the orchestrator's own API calls
    # A WANDB_SERVICE inherited from a shell, notebook or job names another process's
    # service, often a dead one: wandb.Api() would connect to it and fail. Ours starts its own.
    without_live_wandb(os.environ)
    check_cloud(option)

    import wandb

    try:
        api = wandb.Api()  # starts wandb-core here; no trial inherits it (wandb_env)
        entity, project, sweep_id = _sweep_path(args, local, api.settings)
        if args.wandb:
            assert local is not None
            sweep_id = wandb.sweep(local.engine, entity=entity, project=project)
            spec = local
        else:
            spec = _joined_spec(api, entity, project, sweep_id, local)
    except wandb.errors.Error as exc:
        raise BadInput(option, "", f"W&B: {exc}") from None
    for name, value in (("WANDB_ENTITY", entity), ("WANDB_PROJECT", project),
                        ("WANDB_SWEEP_ID", sweep_id)):
        if value:
            os.environ[name] = value  # what wandb's own run_agent sets
    return _work(args, spec, api, sweep_id, entity, project, trial_mode, mode_warning)


def _sweep_path(args: argparse.Namespace, local: SweepSpec | None,
                settings: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(entity, project, sweep id), resolved as ``wandb sweep`` (creating) and ``wandb agent``
    (joining, from the ``--sweep-id`` path first) do."""
    from gpusweep.wb.env import resolve_entity, resolve_project

    yaml_entity = local.entity if local else None
    yaml_project = local.project if local else None
    entity = resolve_entity(args.entity, yaml_entity, settings_entity=settings.get("entity"))
    if not args.sweep_id:
        project = resolve_project(args.project, yaml_project, local.program if local else None,
                                  settings_project=settings.get("project"))
        return entity, project, ""
    from wandb.sdk.launch.sweeps.utils import parse_sweep_id

    parts: dict[str, Any] = {"name": args.sweep_id}
    problem = parse_sweep_id(parts)
    if problem:
        raise BadInput("--sweep-id", "", problem)
    project = parts["project"] or args.project or os.environ.get("WANDB_PROJECT") \
        or yaml_project or settings.get("project")
    if not project:
        raise BadInput("--sweep-id", args.sweep_id, "which project? give the sweep's whole "
                       "path ENTITY/PROJECT/ID (or --project)")
    return parts["entity"] or entity, project, parts["name"]


def _joined_spec(api: Any, entity: str | None, project: str | None, sweep_id: str,
                 local: SweepSpec | None) -> SweepSpec:
    """The server's sweep config (a YAML string), validated like a local file;
    ``isolation:`` from ``--sweep-config`` when given (the server keeps only W&B's keys)."""
    from wandb.apis.public.sweeps import _sweep_with_runs

    where = f"W&B sweep {'/'.join(p for p in (entity, project, sweep_id) if p)}"
    try:
        sweep = _sweep_with_runs(api, sweep_id, "{}", entity=entity, project=project)
    except ValueError as exc:
        raise BadInput(where, "", str(exc)) from None
    config = yaml.safe_load(sweep.get("config") or "") or {}
    if local is not None and "isolation" in local.raw:
        config["isolation"] = local.raw["isolation"]
    return parse_sweep(config, where)


def _work(args: argparse.Namespace, spec: SweepSpec, api: Any, sweep_id: str,
          entity: str | None, project: str | None, trial_mode: str,
          mode_warning: str | None) -> int:
    from gpusweep.display import LiveDisplay, QuietDisplay
    from gpusweep.runner import SweepOptions, SweepRunner
    from gpusweep.slots import choose_devices, make_slots
    from gpusweep.wb.cloud_source import CloudSource, journal_exists

    if "auto" in (args.slots, spec.isolation.slots):
        raise BadInput("--slots", "auto", "cloud mode registers a fixed number of W&B agents; "
                       "give --slots N (auto is for local sweeps)")
    devices = choose_devices(args.gpus)
    slots = len(make_slots(args.slots or spec.isolation.slots, devices))
    options = SweepOptions(log_dir=args.log_dir, count=args.count, project=project,
                           entity=entity, slots=args.slots, config_file=args.config_file)
    display = QuietDisplay() if args.quiet else LiveDisplay()
    if mode_warning:
        display.message(mode_warning)
    interval = float(os.environ.get(HEARTBEAT_ENV) or 0) or None
    source = CloudSource(api=api, sweep_id=sweep_id, spec=spec, entity=entity,
                         project=project, slots=slots, trial_mode=trial_mode,
                         resume=journal_exists(args.log_dir, sweep_id), display=display,
                         **({"interval_s": interval} if interval else {}))
    return SweepRunner(spec, options, devices, display, source).run()
