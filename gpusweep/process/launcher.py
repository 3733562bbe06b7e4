"""Starting one trial: its argv from the sweep's ``command``, its environment, its process.

The argv forms of every ``${args*}`` macro are wandb's own (``create_sweep_command_args``,
copied in :mod:`gpusweep.macros` and tested against it), so a sweep file means exactly what
it means to ``wandb agent``. The one deliberate difference: ``${interpreter}`` is the
orchestrator's own ``sys.executable`` rather than the literal ``python``, so trials run in
the same venv.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from gpusweep.bootstrap import _gpusweep_contract as contract
from gpusweep.gpu.device import Device, DeviceInfo
from gpusweep.macros import command_args, expand_envvars
from gpusweep.process.trialprocess import TrialProcess
from gpusweep.records.layout import TrialPaths
from gpusweep.wb.env import add_trial_wandb_env


def build_argv(
    command: list[str],
    program: str | None,
    params: Mapping[str, Any],
    args_json_file: str,
    interpreter: str = sys.executable,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The trial's argv: W&B's macro expansion, one whole ``${...}`` token at a time."""
    environ = os.environ if environ is None else environ
    sweep_vars: dict[str, list[str]] = dict(command_args(params))
    sweep_vars["interpreter"] = [interpreter]
    sweep_vars["program"] = [program] if program else []
    sweep_vars["args_json_file"] = [args_json_file]
    sweep_vars["env"] = ["/usr/bin/env"]
    argv: list[str] = []
    for token in command:
        token = expand_envvars(str(token), environ)
        if token.startswith("${") and token.endswith("}"):
            argv += sweep_vars.get(token[2:-1]) or []
        else:
            argv.append(token)
    return argv


def with_config_file(argv: list[str], path: str) -> list[str]:
    """``argv`` with the value of ``--config_file`` replaced by ``path`` (both the
    ``--config_file X`` and the ``--config_file=X`` form, every occurrence), or the pair
    appended when the command has none (``tools/sweep.py --config_file``)."""
    out: list[str] = []
    found = False
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--config_file" and i + 1 < len(argv):
            out += [token, path]
            found, i = True, i + 2
            continue
        if token.startswith("--config_file="):
            out.append(f"--config_file={path}")
            found = True
        else:
            out.append(token)
        i += 1
    return out if found else out + ["--config_file", path]


def executable_problem(argv: list[str]) -> str | None:
    """Why argv[0] cannot be started, or None (checked before any trial starts)."""
    if not argv:
        return "the command expands to nothing"
    if os.sep in argv[0]:
        ok = os.path.isfile(argv[0]) and os.access(argv[0], os.X_OK)
    else:
        ok = shutil.which(argv[0]) is not None
    return None if ok else f"{argv[0]!r} is not an executable file or on PATH"


def trial_env(
    base: Mapping[str, str],
    *,
    sweep_id: str,
    run_id: str,
    token: str,
    paths: TrialPaths,
    project: str | None,
    device: Device,
    sweep_name: str | None = None,
) -> dict[str, str]:
    """W&B's agent environment plus ours. Secrets in ``base`` pass through untouched.

    ``WANDB_SWEEP_ID`` only in cloud mode; see :mod:`gpusweep.wb.env` for why.
    """
    env = dict(base)
    env.update({
        "WANDB_RUN_ID": run_id,
        "WANDB_SWEEP_PARAM_PATH": paths.param_file,
        "WANDB_DIR": paths.sweep_dir,
        contract.TRIAL_DIR_ENV: paths.dir,
        contract.EVENTS_ENV: paths.events,
        contract.TOKEN_ENV: token,
        "PYTHONUNBUFFERED": "1",
    })
    env.setdefault("WANDB_MODE", "offline")
    if project:
        env["WANDB_PROJECT"] = project
    add_trial_wandb_env(env, sweep_id=sweep_id, sweep_name=sweep_name)
    if device.is_gpu:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(device.info)
    return env


def cuda_visible_devices(info: DeviceInfo) -> str:
    """The trial's ``CUDA_VISIBLE_DEVICES``: the device's UUID, or, where NVML could not read
    it, its NVML index (the same GPU under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``), never unset,
    which would show the trial every GPU. A MIG instance has no index of its own:
    :mod:`gpusweep.gpu.scan` leaves one without a UUID out."""
    if info.uuid:
        return info.uuid
    if info.index is None or info.mig_index is not None:
        raise ValueError(f"device {info.label} has neither a UUID nor an index")
    return str(info.index)


def write_param_files(paths: TrialPaths, params: Mapping[str, Any], argv_uses_json: bool) -> None:
    """W&B's param file (``{k: {value: v}}`` with its header) and, if used, the args JSON."""
    import yaml

    os.makedirs(paths.dir, exist_ok=True)
    body = yaml.safe_dump({k: {"value": v} for k, v in params.items()}, sort_keys=False)
    with open(paths.param_file, "w", encoding="utf-8") as handle:
        handle.write("wandb_version: 1\n\n" + body)
    if argv_uses_json:
        with open(paths.args_json_file, "w", encoding="utf-8") as handle:
            json.dump(dict(params), handle)


def start(argv: list[str], env: Mapping[str, str], paths: TrialPaths, *, grace_s: float,
          cgroup: str | None = None) -> TrialProcess:
    """Start the trial through its launcher (:mod:`gpusweep.process.reaper`): its own session and
    process group, stdin closed, output to a file, orphans kept in its tree; with ``cgroup``,
    in that cgroup v2. ``grace_s`` is the launcher's own grace period when the orchestrator
    dies. Never through a shell: argv is a list.
    """
    os.makedirs(paths.dir, exist_ok=True)
    with open(paths.output_log, "ab") as log:
        return TrialProcess.launch(argv, env, log, grace_s=grace_s, cgroup=cgroup)
