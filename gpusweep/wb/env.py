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
- No trial inherits the orchestrator's wandb service (:data:`LIVE_PROCESS_VARS`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, MutableMapping

from gpusweep.bootstrap._gpusweep_contract import SWEEP_ID_ENV
from gpusweep.records.layout import SweepLayout

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "bootstrap")


DEFAULT_PROJECT = "uncategorized"  # wandb's last resort (util.auto_project_name outside git)
# wandb-internal variables that point at a live process. In wandb 0.31 that is the service
# token alone (wandb/env.py SERVICE, written by sdk/lib/service/service_token.py): the pid
# and socket of the wandb-core that the first ``wandb.Api()`` or ``wandb.init()`` started.
# ``wandb agent`` pops it from every run's environment (wandb_agent.py, AgentProcess); a
# trial that inherits it runs inside the orchestrator's service, or fails with
# ``WandbServiceConnectionError`` once that service is gone.
LIVE_PROCESS_VARS = ("WANDB_SERVICE",)


def without_live_wandb(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Remove the variables that attach a process to another's wandb service (in place)."""
    for name in LIVE_PROCESS_VARS:
        env.pop(name, None)
    return env


def resolve_project(cli_project: str | None, yaml_project: str | None,
                    program: str | None = None, environ: Mapping[str, str] | None = None,
                    settings_project: str | None | object = None) -> str:
    """The sweep's W&B project, in ``wandb sweep``'s order (wandb/cli/cli.py, ``sweep``):
    ``--project``, ``WANDB_PROJECT``, the sweep file's ``project``, wandb's settings
    (``wandb/settings`` files: what ``api.settings["project"]`` holds), then the program's
    git repository name (``wandb.util.auto_project_name``: ``uncategorized`` outside git).

    Resolved once by the orchestrator and given to every run, because wandb's own fallback
    differs between the trials and the summary run. ``settings_project``: what the caller
    already read from wandb's settings (cloud mode: the API's), else read here.
    """
    environ = os.environ if environ is None else environ
    chosen = cli_project or environ.get("WANDB_PROJECT") or yaml_project
    if chosen:
        return chosen
    from_settings = _settings("project") if settings_project is None else settings_project
    if isinstance(from_settings, str) and from_settings:
        return from_settings
    return _auto_project_name(program)


def resolve_entity(cli_entity: str | None, yaml_entity: str | None,
                   environ: Mapping[str, str] | None = None,
                   settings_entity: str | None | object = None) -> str | None:
    """The sweep's W&B entity in ``wandb sweep``'s order: ``--entity``, ``WANDB_ENTITY``,
    the file's ``entity``, wandb's settings; None leaves it to the server (the key's
    default entity)."""
    environ = os.environ if environ is None else environ
    chosen = cli_entity or environ.get("WANDB_ENTITY") or yaml_entity
    if chosen:
        return chosen
    from_settings = _settings("entity") if settings_entity is None else settings_entity
    return from_settings if isinstance(from_settings, str) and from_settings else None


def _settings(name: str) -> str | None:
    value = getattr(_system_settings(), name, None)
    return value if isinstance(value, str) else None


def settings_files() -> list[str]:
    """The settings files wandb would read (``Settings.read_system_settings``): the global
    one (``$WANDB_CONFIG_DIR/settings``, else ``~/.config/wandb/settings``) and the
    workspace's (``wandb/settings`` or ``.wandb/settings`` under ``$WANDB_DIR``, else the
    working directory), those that exist."""
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    root = os.environ.get("WANDB_DIR") or os.getcwd()
    candidates = [
        os.path.join(os.path.expanduser(config_dir) if config_dir else
                     os.path.expanduser(os.path.join("~", ".config", "wandb")), "settings"),
        os.path.join(root, "wandb", "settings"),
        os.path.join(root, ".wandb", "settings"),
    ]
    return [path for path in candidates if os.path.isfile(path)]


@functools.cache
def _system_settings() -> object:
    """wandb's settings files, read by wandb's own ``Settings`` as ``wandb_setup`` does,
    without setting wandb up in this process (no login, no network, no service). wandb
    itself is imported only when such a file exists: importing it costs the sweep's
    start-up half a second."""
    if not settings_files():
        return None
    try:
        from wandb.sdk.wandb_settings import Settings

        config_dir = os.environ.get("WANDB_CONFIG_DIR")
        settings = Settings()
        settings.settings_system = os.path.join(
            os.path.expanduser(config_dir) if config_dir else
            os.path.expanduser(os.path.join("~", ".config", "wandb")), "settings")
        settings.update_from_system_settings()
        return settings
    except Exception:  # unreadable settings: wandb sweep would fail the same way
        return None


# Variables that would point git at another repository (wandb/sdk/lib/gitlib.py drops them)
_GIT_REPO_OVERRIDE_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")


def _auto_project_name(program: str | None) -> str:
    """``wandb.util.auto_project_name``: the git repository's name, plus the program's
    directory within it (``repo-sub_dir``); ``uncategorized`` outside git. The same rules
    as wandb 0.31's (tested against it) with one ``git rev-parse`` instead of importing
    wandb."""
    root = _git_root()
    if root is None:
        return DEFAULT_PROJECT
    repo_name = os.path.basename(root)
    if program is None:
        return repo_name
    if not os.path.isabs(program):
        program = os.path.join(os.curdir, program)
    prog_dir = os.path.dirname(os.path.abspath(program))
    if not prog_dir.startswith(root):
        return repo_name
    sub_path = os.path.relpath(prog_dir, root)
    project = repo_name if sub_path == "." else f"{repo_name}-{sub_path}"
    return project.replace(os.sep, "_")


def _git_root() -> str | None:
    """The working directory's git top level, as wandb's ``GitRepo().root_dir`` finds it."""
    import subprocess

    git = os.environ.get("GIT_PYTHON_GIT_EXECUTABLE") or "git"
    env = {k: v for k, v in os.environ.items() if k not in _GIT_REPO_OVERRIDE_ENV}
    try:
        proc = subprocess.run([git, "rev-parse", "--show-toplevel"], env=env, check=True,
                              capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return proc.stdout.decode(errors="replace").strip() or None


def run_group(sweep_id: str, sweep_name: str | None) -> str:
    """The W&B group of a sweep's runs."""
    return f"{sweep_name}-{sweep_id}" if sweep_name else f"sweep-{sweep_id}"


def add_trial_wandb_env(env: dict[str, str], *, sweep_id: str,
                        sweep_name: str | None) -> None:
    """Add the W&B part of a trial's environment to ``env`` (in place)."""
    if env.get("WANDB_SWEEP_ID") != sweep_id:
        env.pop("WANDB_SWEEP_ID", None)
    env[SWEEP_ID_ENV] = sweep_id
    env.setdefault("WANDB_RUN_GROUP", run_group(sweep_id, sweep_name))
    env.setdefault("WANDB_TAGS", sweep_id)
    env.setdefault("WANDB_JOB_TYPE", "trial")
    if env.get("WANDB_DIR"):
        env.setdefault("WANDB_DATA_DIR", data_dir(env["WANDB_DIR"]))
    env["PYTHONPATH"] = with_bootstrap(env.get("PYTHONPATH"))
    without_live_wandb(env)


def data_dir(sweep_dir: str) -> str:
    """Where wandb stages artifact files: inside the sweep dir, so the dir is self-contained
    for ``wandb sync`` (wandb's default is ``~/.local/share/wandb``)."""
    return SweepLayout(sweep_dir).wandb_data_dir


def with_bootstrap(pythonpath: str | None) -> str:
    """``PYTHONPATH`` with the bootstrap directory first (once) and the rest after it."""
    if not pythonpath:
        return BOOTSTRAP_DIR
    rest = [p for p in pythonpath.split(os.pathsep) if p != BOOTSTRAP_DIR]
    return os.pathsep.join([BOOTSTRAP_DIR, *rest])
