"""The argv forms of W&B's ``${args*}`` and ``${envvar:NAME}`` command macros.

A line-for-line copy of ``create_sweep_command_args`` and of the env-var part of
``create_sweep_command`` in wandb's ``wandb/sdk/launch/sweeps/utils.py`` (wandb 0.31),
which is what ``wandb agent`` (``wandb/wandb_agent.py``, ``_command_run``) expands a sweep's
``command`` with. Why a copy: that module imports ``wandb`` and its ``launch`` package
(the launch agent, the public API, pandas), about half a second before the first trial could
start, for some string formatting. ``tests/test_macros.py`` compares every form with wandb's
own function over many params, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# wandb: SWEEP_COMMAND_ENV_VAR_REGEX
ENVVAR_MACRO = re.compile(r"\$\{envvar\:([A-Z0-9_]*)\}")


def sweep_command_args(args: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """wandb's ``create_sweep_command_args({"args": args})``: every form, ``args_dict`` too.

    ``args`` is W&B's ``{name: {"value": v}}``; a param without ``value`` is a ValueError,
    as in wandb.
    """
    flags: list[str] = []  # --foo=bar
    flags_no_hyphens: list[str] = []  # foo=bar
    flags_no_booleans: list[str] = []  # --foo for True, nothing for False
    flags_dict: dict[str, Any] = {}  # for ${args_json}
    args_no_equals: list[str] = []  # --foo bar
    flags_append_hydra: list[str] = []  # +foo=bar
    flags_override_hydra: list[str] = []  # ++foo=bar
    for param, config in args.items():
        try:
            value: Any = config["value"]
        except KeyError:
            raise ValueError(f'No "value" found for command["args"]["{param}"]') from None
        flag = f"{param}={value}"
        flags.append("--" + flag)
        flags_no_hyphens.append(flag)
        args_no_equals += [f"--{param}", str(value)]
        flags_append_hydra.append("+" + flag)
        flags_override_hydra.append("++" + flag)
        if isinstance(value, bool):
            if value:
                flags_no_booleans.append("--" + param)
        else:
            flags_no_booleans.append("--" + flag)
        flags_dict[param] = value
    return {
        "args": flags,
        "args_no_equals": args_no_equals,
        "args_no_hyphens": flags_no_hyphens,
        "args_no_boolean_flags": flags_no_booleans,
        "args_json": [json.dumps(flags_dict)],
        "args_dict": flags_dict,
        "args_append_hydra": flags_append_hydra,
        "args_override_hydra": flags_override_hydra,
    }


def command_args(params: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every ``${args*}`` form for these params: the argv lists (``args_dict`` left out)."""
    forms = sweep_command_args({k: {"value": v} for k, v in params.items()})
    return {k: v for k, v in forms.items() if isinstance(v, list)}


def expand_envvars(token: str, environ: Mapping[str, str]) -> str:
    """``${envvar:NAME}`` anywhere in a token, as wandb does (unknown names stay as NAME)."""
    for match in reversed(list(ENVVAR_MACRO.finditer(token))):
        value = environ.get(match.group(1), match.group(1))
        token = f"{token[: match.start()]}{value}{token[match.end():]}"
    return token
