"""What a trial's environment carries for W&B, beyond what ``wandb agent`` sets.

- ``PYTHONPATH`` starts with ``gpusweep/bootstrap`` (its ``sitecustomize`` captures
  ``wandb.log`` of unmodified scripts); whatever ``PYTHONPATH`` held comes after it.
- The runs of one sweep share a group named after the sweep (``<name>-<sweep-id>``, or
  ``sweep-<sweep-id>`` for an unnamed sweep) and carry the sweep id as a tag, through W&B's
  own variables (``WANDB_RUN_GROUP``, ``WANDB_TAGS``, ``WANDB_JOB_TYPE=trial``) so that
  scripts calling ``wandb.init()`` get them too. Values the user set are kept.
- ``WANDB_DATA_DIR`` (where wandb stages artifact files until they are uploaded) is inside
  the sweep dir too, so ``<log-dir>/<sweep-id>/`` holds everything ``wandb sync`` needs.
- ``WANDB_SWEEP_ID`` reaches the trial only when it names this very sweep, i.e. in cloud
  mode, where the W&B server knows it. A local sweep's id is unknown to the server: wandb
  writes the id into every offline run, and ``wandb sync`` of a run whose sweep the server
  does not know fails ("sweep ... not found", 404; wandb/wandb#8115) and uploads nothing. So
  locally the id travels as ``GPUSWEEP_SWEEP_ID`` and as the group and tag instead. wandb
  still reads the params from ``WANDB_SWEEP_PARAM_PATH`` without a sweep id.
- One project for every run of a sweep, trials and summary alike (:func:`resolve_project`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")


DEFAULT_PROJECT = "uncategorized"  # what ``wandb sweep`` uses when no project is given


def resolve_project(cli_project: str | None, yaml_project: str | None,
                    environ: Mapping[str, str] | None = None) -> str:
    """The sweep's W&B project, in ``wandb sweep``'s order: ``--project``, the sweep file's
    ``project``, ``WANDB_PROJECT``, then ``uncategorized``.

    Resolved once by the orchestrator and given to every run, because wandb's own fallback
    (derived from the cwd and program) differs between the trials and the summary run.
    """
    environ = os.environ if environ is None else environ
    return (cli_project or yaml_project or environ.get("WANDB_PROJECT")
            or DEFAULT_PROJECT)


def run_group(sweep_id: str, sweep_name: str | None) -> str:
    """The W&B group of a sweep's runs."""
    return f"{sweep_name}-{sweep_id}" if sweep_name else f"sweep-{sweep_id}"


def add_trial_wandb_env(env: dict[str, str], *, sweep_id: str,
                        sweep_name: str | None) -> None:
    """Add the W&B part of a trial's environment to ``env`` (in place)."""
    if env.get("WANDB_SWEEP_ID") != sweep_id:
        env.pop("WANDB_SWEEP_ID", None)
    env["GPUSWEEP_SWEEP_ID"] = sweep_id
    env.setdefault("WANDB_RUN_GROUP", run_group(sweep_id, sweep_name))
    env.setdefault("WANDB_TAGS", sweep_id)
    env.setdefault("WANDB_JOB_TYPE", "trial")
    if env.get("WANDB_DIR"):
        env.setdefault("WANDB_DATA_DIR", data_dir(env["WANDB_DIR"]))
    env["PYTHONPATH"] = with_bootstrap(env.get("PYTHONPATH"))


def data_dir(sweep_dir: str) -> str:
    """Where wandb stages artifact files: inside the sweep dir, so the dir is self-contained
    for ``wandb sync`` (wandb's default is ``~/.local/share/wandb``)."""
    return os.path.join(sweep_dir, "wandb", "data")


def with_bootstrap(pythonpath: str | None) -> str:
    """``PYTHONPATH`` with the bootstrap directory first (once) and the rest after it."""
    if not pythonpath:
        return BOOTSTRAP_DIR
    rest = [p for p in pythonpath.split(os.pathsep) if p != BOOTSTRAP_DIR]
    return os.pathsep.join([BOOTSTRAP_DIR, *rest])
