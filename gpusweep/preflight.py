"""Checks of a sweep's inputs before any trial starts, shared by the local and the cloud CLI.

A bad ``--config_file`` or a command whose program cannot be started fails here, with the
file and the key, instead of as thirty failed trials.
"""

from __future__ import annotations

import os
from typing import Any

from gpusweep.config import SweepSpec
from gpusweep.errors import BadInput


def config_file(path: str | None) -> str | None:
    """``--config_file``'s file, as an absolute path (trials may chdir; resume may not)."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise BadInput(path, "--config_file", "no such file")
    return os.path.abspath(path)


def check_executable(spec: SweepSpec, config_file: str | None = None) -> None:
    """Expand the command for one sample trial and check that its argv[0] can be started."""
    from gpusweep.process.launcher import build_argv, executable_problem, with_config_file

    argv = build_argv(spec.command, spec.program, _sample_params(spec), "args.json")
    if config_file:
        argv = with_config_file(argv, config_file)
    problem = executable_problem(argv)
    if problem:
        raise BadInput(spec.path, "command", problem)


def _sample_params(spec: SweepSpec) -> dict[str, Any]:
    from gpusweep.controller import Controller

    return Controller(spec, seed="validate").propose([]) or {}
