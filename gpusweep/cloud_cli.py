"""``tools/sweep.py --wandb`` and ``--sweep-id``: create or join a W&B sweep, run its trials.

Everything that can be checked locally is checked first (the sweep file, the program), then
the API key and the server (:mod:`gpusweep.cloud_check`), and only then does wandb talk to
the server: creating the sweep (``wandb.sweep``) or reading the one to join (wandb's own
``_sweep_with_runs``). Trials run online (``WANDB_MODE=online``) so the server sees their
history, whatever ``WANDB_MODE`` says for local sweeps.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import yaml

from gpusweep.config import SweepSpec, load_sweep, parse_sweep
from gpusweep.errors import BadInput


def run_cloud(args: argparse.Namespace) -> int:
    """Create (``--wandb``) or join (``--sweep-id``) a W&B sweep and work on it."""
    from gpusweep.cli import _check_executable
    from gpusweep.cloud_check import check_cloud

    option = "--sweep-id" if args.sweep_id else "--wandb"
    local = load_sweep(args.sweep_config) if args.sweep_config else None
    if local is not None:
        _check_executable(local)
    entity, project, sweep_id = _sweep_path(args, local)
    os.environ["WANDB_MODE"] = "online"
    check_cloud(option)

    import wandb

    try:
        if args.wandb:
            assert local is not None
            sweep_id = wandb.sweep(local.engine, entity=entity, project=project)
            spec = local
        else:
            spec = _joined_spec(entity, project, sweep_id, local)
    except wandb.errors.Error as exc:
        raise BadInput(option, "", f"W&B: {exc}") from None
    for name, value in (("WANDB_ENTITY", entity), ("WANDB_PROJECT", project),
                        ("WANDB_SWEEP_ID", sweep_id)):
        if value:
            os.environ[name] = value  # what wandb's own run_agent sets
    return _work(args, spec, wandb.Api(), sweep_id, entity, project)


def _sweep_path(args: argparse.Namespace,
                local: SweepSpec | None) -> tuple[str | None, str | None, str]:
    """(entity, project, sweep id) from ``--sweep-id`` (wandb's own parser) and options."""
    entity = getattr(args, "entity", None) or (local.entity if local else None)
    project = args.project or (local.project if local else None)
    if not args.sweep_id:
        return entity, project, ""
    from wandb.sdk.launch.sweeps.utils import parse_sweep_id

    parts: dict[str, Any] = {"name": args.sweep_id}
    problem = parse_sweep_id(parts)
    if problem:
        raise BadInput("--sweep-id", "", problem)
    return parts["entity"] or entity, parts["project"] or project, parts["name"]


def _joined_spec(entity: str | None, project: str | None, sweep_id: str,
                 local: SweepSpec | None) -> SweepSpec:
    """The server's sweep config, validated like a local file; ``isolation:`` from
    ``--sweep-config`` when given (the server keeps only W&B's keys)."""
    import wandb
    from wandb.apis.public.sweeps import _sweep_with_runs

    where = f"W&B sweep {'/'.join(p for p in (entity, project, sweep_id) if p)}"
    try:
        sweep = _sweep_with_runs(wandb.Api(), sweep_id, "{}", entity=entity, project=project)
    except ValueError as exc:
        raise BadInput(where, "", str(exc)) from None
    config = yaml.safe_load(sweep.get("config") or "") or {}
    if local is not None and "isolation" in local.raw:
        config["isolation"] = local.raw["isolation"]
    return parse_sweep(config, where)


def _work(args: argparse.Namespace, spec: SweepSpec, api: Any, sweep_id: str,
          entity: str | None, project: str | None) -> int:
    from gpusweep.cloud import CloudSweep
    from gpusweep.display import LiveDisplay, QuietDisplay
    from gpusweep.runner import SweepOptions
    from gpusweep.slots import choose_devices

    one_at_a_time = ("a cloud agent runs one trial at a time: start one agent per GPU "
                     "(--gpus 0, --gpus 1, ...) on the same --sweep-id")
    if (args.slots or 1) > 1:
        raise BadInput("--slots", str(args.slots), one_at_a_time)
    devices = choose_devices(args.gpus)
    if len(devices) > 1:
        raise BadInput("--gpus", args.gpus or "", one_at_a_time)
    project = project or api.settings.get("project")
    options = SweepOptions(log_dir=args.log_dir, count=args.count, project=project)
    display = QuietDisplay() if args.quiet else LiveDisplay()
    sweep = CloudSweep(sweep_id=sweep_id, entity=entity, project=project, spec=spec,
                       options=options, device=devices[0], display=display,
                       environ=dict(os.environ), api=api)
    return sweep.run()
