"""Pure decisions: trial status, and the argv of every W&B command macro."""

import json
import signal

import pytest

from gpusweep.process.launcher import build_argv, expand_envvars
from gpusweep.status import StopReason, TrialStatus, classify, signal_name


@pytest.mark.parametrize("returncode, reason, status", [
    (0, None, TrialStatus.FINISHED),
    (1, None, TrialStatus.FAILED),
    (-signal.SIGSEGV, None, TrialStatus.FAILED),
    (-signal.SIGTERM, StopReason.HYPERBAND, TrialStatus.STOPPED_EARLY),
    (0, StopReason.HYPERBAND, TrialStatus.STOPPED_EARLY),
    (-signal.SIGKILL, StopReason.TIMEOUT, TrialStatus.TIMEOUT),
    (143, StopReason.INTERRUPT, TrialStatus.KILLED),
])
def test_classify(returncode, reason, status):
    assert classify(returncode, reason) is status


def test_signal_names():
    assert signal_name(-11) == "SIGSEGV" and signal_name(-9) == "SIGKILL"
    assert signal_name(0) is None and signal_name(1) is None


PARAMS = {"lr": 0.01, "layers": 2, "amp": False, "bn": True, "name": "a b"}


def argv(command):
    return build_argv(command, "train.py", PARAMS, "/trial/args.json", interpreter="/venv/python",
                      environ={"DATA": "/data", "NUM": "3"})


def test_default_command():
    assert argv(["${env}", "${interpreter}", "${program}", "${args}"]) == [
        "/usr/bin/env", "/venv/python", "train.py",
        "--lr=0.01", "--layers=2", "--amp=False", "--bn=True", "--name=a b"]


def test_args_no_hyphens():
    assert argv(["${args_no_hyphens}"]) == ["lr=0.01", "layers=2", "amp=False", "bn=True",
                                            "name=a b"]


def test_args_no_boolean_flags_drops_false_and_keeps_true_as_a_flag():
    assert argv(["${args_no_boolean_flags}"]) == ["--lr=0.01", "--layers=2", "--bn",
                                                  "--name=a b"]


def test_args_json_is_one_argv_element():
    (single,) = argv(["${args_json}"])
    assert json.loads(single) == PARAMS


def test_args_json_file_is_the_path():
    assert argv(["x", "${args_json_file}"]) == ["x", "/trial/args.json"]


def test_envvar_macro_inside_a_token():
    assert argv(["--data=${envvar:DATA}/prices", "${envvar:NUM}"]) == ["--data=/data/prices",
                                                                      "3"]


def test_unknown_macro_expands_to_nothing_and_literals_stay():
    assert argv(["python", "${nope}", "--flag"]) == ["python", "--flag"]


def test_expand_envvars_leaves_unknown_names():
    assert expand_envvars("${envvar:MISSING}", {}) == "MISSING"
