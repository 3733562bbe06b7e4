"""Sweep-file validation: one message naming the file, the key and what is wrong."""

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from conftest import sleeper_sweep as sweep

from gpusweep.config import MAX_GRID, grid_size, load_sweep, parse_sweep
from gpusweep.controller import Controller, RunView
from gpusweep.errors import BadInput
from gpusweep.isolation import IsolationConfig

PROGRAM = "tests/programs/quadratic.py"


def base(**changes):
    config = {
        "program": PROGRAM,
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [1, 2, 3]}},
    }
    config.update(changes)
    return config


def error_of(config) -> BadInput:
    with pytest.raises(BadInput) as info:
        parse_sweep(config, "sweep.yaml")
    return info.value


def test_a_valid_sweep_gets_defaults_and_keeps_w_and_b_keys():
    spec = parse_sweep(base(run_cap=4, isolation={"timeout_s": 30}), "sweep.yaml")
    assert spec.method == "grid" and spec.run_cap == 4
    assert spec.isolation.timeout_s == 30.0
    assert spec.isolation.stop.grace_s == 10.0 and spec.isolation.wait.tolerance_mb == 256
    assert "isolation" not in spec.engine and spec.engine["run_cap"] == 4
    assert spec.command == ["${env}", "${interpreter}", "${program}", "${args}"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: grid\nparameters:\n  x: {values: [1, 2\n")
    with pytest.raises(BadInput) as info:
        load_sweep(str(path))
    assert str(path) in str(info.value) and "line" in info.value.key
    assert "YAML syntax error" in info.value.message


@pytest.mark.parametrize("isolation, key", [
    ({"timeot_s": 5}, "isolation.timeot_s"),
    ({"wait": {"tolerance": 5}}, "isolation.wait.tolerance"),
    ({"stop": {"grace_s": "soon"}}, "isolation.stop.grace_s"),
    ({"on_dirty": "explode"}, "isolation.on_dirty"),
    ({"wait": {"min_s": 5, "max_s": 1}}, "isolation.wait.min_s"),
    ({"monitor": {"hz": 0}}, "isolation.monitor.hz"),
    ({"wait": {"fixed_large_s": -1}}, "isolation.wait.fixed_large_s"),
    ({"wait": {"fixed_large_above_mb": "1GB"}}, "isolation.wait.fixed_large_above_mb"),
])
def test_bad_isolation_keys_are_named(isolation, key):
    assert error_of(base(isolation=isolation)).key == key


def test_unknown_isolation_key_lists_the_known_ones():
    message = error_of(base(isolation={"timeot_s": 5})).message
    assert "unknown key" in message and "timeout_s" in message


def test_min_greater_than_max_is_named():
    error = error_of(base(method="random", parameters={"lr": {"min": 0.1, "max": 0.01}}))
    assert error.key == "parameters.lr" and "min 0.1 must be less than max 0.01" in error.message


def test_empty_values_is_named():
    error = error_of(base(parameters={"x": {"values": []}}))
    assert error.key == "parameters.x.values"


def test_unknown_method():
    error = error_of(base(method="hyperopt"))
    assert error.key == "method" and "grid, random, bayes" in error.message


def test_bayes_needs_a_metric():
    config = base(method="bayes", parameters={"lr": {"min": 0.001, "max": 0.1}})
    del config["metric"]
    assert error_of(config).key == "metric"


def test_hyperband_needs_a_metric():
    config = base(early_terminate={"type": "hyperband", "min_iter": 1})
    del config["metric"]
    error = error_of(config)
    assert error.key == "metric" and "hyperband" in error.message


def test_grid_rejects_continuous_distributions():
    error = error_of(base(parameters={"lr": {"min": 0.001, "max": 0.1}}))
    assert error.key == "parameters.lr" and "grid" in error.message


def test_missing_program_is_named():
    error = error_of(base(program="no/such/train.py"))
    assert error.key == "program" and "not found" in error.message


def test_program_not_needed_when_command_does_not_use_it():
    config = base(command=["${env}", "true", "${args}"])
    del config["program"]
    assert parse_sweep(config, "s.yaml").program is None


def test_w_and_b_schema_violations_are_reported():
    error = error_of(base(frobnicate=1))
    assert "frobnicate" in error.message


def test_nothing_is_written_and_no_traceback_on_error_of(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(base(isolation={"timeot_s": 5})))
    log_dir = tmp_path / "log"
    proc = subprocess.run(
        [sys.executable, "tools/sweep.py", "--sweep-config", str(bad), "--log-dir", str(log_dir)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "isolation.timeot_s" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not log_dir.exists()


def test_unwritable_log_dir_is_exit_2(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(base()))
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    proc = subprocess.run(
        [sys.executable, "tools/sweep.py", "--sweep-config", str(good), "--log-dir",
         str(blocker / "log"), "--quiet"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--log-dir" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_command_that_cannot_start_is_exit_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(base(command=["no-such-binary-xyz", "${args}"])))
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(path),
                           "--log-dir", str(tmp_path / "log")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "no-such-binary-xyz" in proc.stderr


def test_isolation_defaults_are_the_documented_ones():
    iso = IsolationConfig()
    assert (iso.timeout_s, iso.stop.grace_s, iso.on_dirty, iso.monitor.hz) == (
        None, 10.0, "continue", 10.0)
    assert (iso.wait.tolerance_mb, iso.wait.min_s, iso.wait.max_s, iso.wait.poll_s) == (
        256.0, 0.0, 60.0, 0.1)
    assert (iso.stall_s, iso.containment) == (1800.0, "auto")


def test_stall_s_null_turns_the_stall_rule_off_and_containment_is_checked():
    assert parse_sweep(base(isolation={"stall_s": None}), "s.yaml").isolation.stall_s is None
    assert parse_sweep(base(isolation={"stall_s": 60}), "s.yaml").isolation.stall_s == 60.0
    assert error_of(base(isolation={"containment": "cgroup"})).key == "isolation.containment"


@pytest.mark.parametrize("value", ["off", False])  # False: YAML 1.1 reads a bare off so
def test_stall_s_off_turns_the_stall_rule_off_as_documented(value, tmp_path):
    assert parse_sweep(base(isolation={"stall_s": value}), "s.yaml").isolation.stall_s is None
    path, program = tmp_path / "s.yaml", tmp_path / "p.py"  # as a user writes it, in YAML
    program.write_text("")
    path.write_text(f"program: {program}\nmethod: grid\nparameters: {{x: {{values: [1]}}}}\n"
                    "isolation:\n  stall_s: off\n")
    assert load_sweep(str(path)).isolation.stall_s is None
    assert error_of(base(isolation={"stall_s": "of"})).key == "isolation.stall_s"
    assert error_of(base(isolation={"stall_s": 0})).key == "isolation.stall_s"


@pytest.mark.parametrize("isolation, key", [
    ({"oom": {"retry": True, "key": "batchsize"}}, "isolation.oom.key"),
    ({"fit": {"features": ["x", "hiden"]}}, "isolation.fit.features[1]"),
    ({"fit": {"features": ["x"], "policy": "shrink", "key": "bs"}}, "isolation.fit.key"),
])
def test_isolation_params_must_be_sweep_parameters(isolation, key):
    error = error_of(base(isolation=isolation))
    assert error.key == key and "not a parameter of this sweep" in error.message


def test_dotted_and_nested_params_are_known_to_the_isolation_block():
    nested = {"train": {"parameters": {"batch_size": {"values": [8, 16]}}}}
    spec = parse_sweep(base(parameters=nested,
                            isolation={"oom": {"retry": True, "key": "train.batch_size"}}),
                       "sweep.yaml")
    assert spec.isolation.oom.key == "train.batch_size"


def test_yaml_11_spellings_in_the_isolation_block(tmp_path):
    text = """
program: tests/programs/sleeper.py
method: grid
parameters: {x: {values: [1, 2]}}
isolation:
  fit: {policy: off}
  wait: {poll_s: 1e-3}
"""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    spec = load_sweep(str(path))
    assert spec.isolation.fit.policy == "off"  # YAML read `off` as false
    assert spec.isolation.wait.poll_s == 0.001  # and 1e-3 as a string


@pytest.mark.parametrize("isolation, key", [
    ({"timeout_s": float("nan")}, "isolation.timeout_s"),
    ({"monitor": {"hz": float("inf")}}, "isolation.monitor.hz"),
])
def test_numbers_that_are_not_finite_are_refused(isolation, key):
    error = error_of(sweep(isolation=isolation))
    assert error.key == key and "finite" in str(error)


def test_a_parameter_name_that_is_not_a_string():
    error = error_of(sweep({1: {"values": [1]}}))
    assert "parameter names must be strings" in str(error)


def test_a_schema_error_names_its_parameter_and_the_yaml_number_trap():
    error = error_of(sweep({"x": {"values": [1]},
                             "lr": {"distribution": "normal", "mu": 0, "sigma": -1}},
                            method="random"))
    assert error.key == "parameters.lr"
    error = error_of(sweep({"lr": {"distribution": "log_uniform_values", "min": "1e-5",
                                    "max": 0.1}}, method="random"))
    assert error.key == "parameters.lr" and "write it with a dot" in str(error)


def test_a_grid_too_large_to_enumerate_is_refused_at_once():
    error = error_of(sweep({"x": {"min": 1, "max": 10**9}}))
    assert error.key == "parameters" and f"{MAX_GRID:,}" in str(error)


def test_grid_size_counts_what_the_engine_enumerates():
    parameters = {"a": {"values": [1, 2, 3]}, "b": {"min": 1, "max": 4},
                  "c": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.3},
                  "d": {"parameters": {"e": {"values": ["u", "v"]}}}}
    spec = parse_sweep(sweep(parameters), "s.yaml")
    controller, views = Controller(spec, seed="count"), []
    while (params := controller.propose(views)) is not None:
        views.append(RunView(f"r{len(views)}", params, "finished"))
    assert grid_size(parameters) == len(views) == 3 * 4 * 4 * 2


def test_pack_and_shrink_that_could_never_act_are_refused():
    params = {"batch_size": {"values": [8, 16]}, "hidden": {"values": [4]}}
    error = error_of(sweep(params, isolation={"pack": True}))
    assert error.key == "isolation.pack"
    error = error_of(sweep(params, isolation={
        "fit": {"features": ["hidden"], "policy": "shrink", "key": "batch_size"}}))
    assert error.key == "isolation.fit.key"


def test_a_project_name_wandb_would_refuse():
    assert error_of(sweep(project="team/proj")).key == "project"
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", "x.yaml",
                           "--project", "a/b"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--project 'a/b'" in proc.stderr and "Traceback" not in proc.stderr
