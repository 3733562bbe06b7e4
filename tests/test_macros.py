"""Our copy of wandb's command macros gives exactly what wandb's own code gives.

gpusweep.macros copies ``create_sweep_command_args`` and the env-var expansion of
``create_sweep_command`` (wandb/sdk/launch/sweeps/utils.py) so that validation and launching
need not import wandb. These tests run wandb's functions on the same inputs and compare.
"""

import itertools
import math
import random

import pytest
from wandb.sdk.launch.sweeps import utils as wandb_utils

from gpusweep import macros
from gpusweep.process.launcher import build_argv

VALUES = [
    0, 1, -7, 2**70, 0.1, 1e-5, 1.0e-5, 3e6, 1e20, -0.0, 0.30000000000000004, math.inf, -math.inf,
    True, False, None, "", "a b", "x=y", "--flag", "ünïcödé", 'quote"d', "it's", "$HOME",
    "${envvar:HOME}", "tab\there", "line\nbreak", [1, 2], [], ["a", [True, None]],
    {"a": 1, "b": {"c": [0.5]}}, {}, (1, 2),
]
NAMES = ["lr", "train.batch_size", "model-arch", "x", "UPPER", "with space", "ä"]
FORMS = ["args", "args_no_equals", "args_no_hyphens", "args_no_boolean_flags", "args_json",
         "args_append_hydra", "args_override_hydra"]


def param_sets():
    """Every value alone, pairs of values, and random mixes of names and values."""
    sets = [{"p": v} for v in VALUES]
    sets += [{"a": a, "b": b} for a, b in itertools.product(VALUES[::3], VALUES[1::4])]
    rng = random.Random(15)
    for _ in range(200):
        names = rng.sample(NAMES, rng.randint(1, len(NAMES)))
        sets.append({name: rng.choice(VALUES) for name in names})
    return sets


PARAM_SETS = param_sets()


def wandb_forms(params):
    return wandb_utils.create_sweep_command_args(
        {"args": {k: {"value": v} for k, v in params.items()}})


@pytest.mark.parametrize("params", PARAM_SETS, ids=lambda p: repr(p)[:40])
def test_every_form_equals_wandbs(params):
    ours = macros.sweep_command_args({k: {"value": v} for k, v in params.items()})
    theirs = wandb_forms(params)
    assert ours == theirs
    # and in the same order, with the same types: argv is compared element by element
    assert list(ours) == list(theirs)
    assert [type(x) for x in ours["args"]] == [type(x) for x in theirs["args"]]


def test_the_forms_cover_every_form_wandb_has():
    theirs = wandb_forms({"a": 1})
    assert set(theirs) == {*FORMS, "args_dict"}
    assert set(macros.command_args({"a": 1})) == set(FORMS)


def test_a_param_without_value_fails_as_in_wandb():
    with pytest.raises(ValueError) as theirs:
        wandb_utils.create_sweep_command_args({"args": {"a": {"values": [1]}}})
    with pytest.raises(ValueError) as ours:
        macros.sweep_command_args({"a": {"values": [1]}})
    assert str(ours.value) == str(theirs.value)


def test_envvar_pattern_is_wandbs():
    assert macros.ENVVAR_MACRO.pattern == wandb_utils.SWEEP_COMMAND_ENV_VAR_REGEX.pattern
    assert macros.ENVVAR_MACRO.flags == wandb_utils.SWEEP_COMMAND_ENV_VAR_REGEX.flags


TOKENS = ["${envvar:DATA}", "--data=${envvar:DATA}/x", "${envvar:MISSING}",
          "${envvar:A}${envvar:B}", "${envvar:lower}", "${envvar:}", "${envvar:A",
          "pre${envvar:NUM}post${envvar:DATA}", "${args}", "plain", "$DATA", "${ENVVAR:DATA}",
          "${envvar:A_1}-${envvar:A_1}"]


@pytest.mark.parametrize("token", TOKENS)
def test_envvar_expansion_equals_wandbs(token, monkeypatch):
    environ = {"DATA": "/data", "NUM": "3", "A": "${envvar:B}", "B": "b", "A_1": "one",
               "lower": "no"}
    for name in list(environ):
        monkeypatch.setenv(name, environ[name])
    monkeypatch.delenv("MISSING", raising=False)
    (theirs,) = wandb_utils.create_sweep_command([token])
    assert macros.expand_envvars(token, environ) == theirs


def agent_argv(command, program, params, json_file, environ, monkeypatch):
    """What ``wandb agent`` runs: wandb_agent.py's ``_command_run`` expansion, with wandb's
    functions, ``interpreter`` replaced by ours (the one documented difference)."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    sweep_command = wandb_utils.create_sweep_command(list(command))
    sweep_vars = wandb_forms(params)
    sweep_vars["interpreter"] = ["/venv/python"]
    sweep_vars["program"] = [program]
    sweep_vars["args_json_file"] = [json_file]
    sweep_vars["env"] = ["/usr/bin/env"]
    argv = []
    for c in sweep_command:
        c = str(c)
        if c.startswith("${") and c.endswith("}"):
            argv += sweep_vars.get(c[2:-1]) or []
        else:
            argv += [c]
    return argv


COMMANDS = [
    ["${env}", "${interpreter}", "${program}", "${args}"],
    ["${interpreter}", "${program}", "${args_no_hyphens}"],
    ["python", "-m", "pkg", "${args_no_boolean_flags}", "--data=${envvar:DATA}"],
    ["${program}", "${args_json}", "${args_json_file}"],
    ["${env}", "${interpreter}", "${program}", "${args_no_equals}"],
    ["${program}", "${args_append_hydra}", "${args_override_hydra}", "${nope}", "${envvar:NUM}"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c)[:40])
def test_build_argv_equals_wandb_agents_expansion(command, monkeypatch):
    environ = {"DATA": "/data", "NUM": "3"}
    for params in PARAM_SETS[::7]:
        ours = build_argv(command, "train.py", params, "/t/args.json",
                          interpreter="/venv/python", environ=environ)
        assert ours == agent_argv(command, "train.py", params, "/t/args.json", environ,
                                  monkeypatch)
