"""Regressions found in the audit of issues 3 and 6: YAML 1.1 spellings, bad input that
escaped as a traceback or a vague message, a trial's malformed events, container memory,
a dirty GPU with ``on_dirty: abort`` in a local sweep."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from fakes import FakeDevice

from gpusweep.config import MAX_GRID, grid_size, load_sweep, parse_sweep
from gpusweep.controller import Controller, RunView
from gpusweep.display import QuietDisplay
from gpusweep.errors import BadInput
from gpusweep.events import TrialEvents
from gpusweep.hostmemory import cgroup_room_mb
from gpusweep.runner import SweepOptions, SweepRunner
from gpusweep.slots import choose_devices

SLEEPER = "tests/programs/sleeper.py"


def sweep(parameters=None, **extra):
    config = {"program": SLEEPER, "method": "grid",
              "parameters": parameters or {"x": {"values": [1, 2]}}}
    config.update(extra)
    return config


def bad_input(config) -> BadInput:
    with pytest.raises(BadInput) as caught:
        parse_sweep(config, "s.yaml")
    return caught.value


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
    error = bad_input(sweep(isolation=isolation))
    assert error.key == key and "finite" in str(error)


def test_a_parameter_name_that_is_not_a_string():
    error = bad_input(sweep({1: {"values": [1]}}))
    assert "parameter names must be strings" in str(error)


def test_a_schema_error_names_its_parameter_and_the_yaml_number_trap():
    error = bad_input(sweep({"x": {"values": [1]},
                             "lr": {"distribution": "normal", "mu": 0, "sigma": -1}},
                            method="random"))
    assert error.key == "parameters.lr"
    error = bad_input(sweep({"lr": {"distribution": "log_uniform_values", "min": "1e-5",
                                    "max": 0.1}}, method="random"))
    assert error.key == "parameters.lr" and "write it with a dot" in str(error)


def test_a_grid_too_large_to_enumerate_is_refused_at_once():
    error = bad_input(sweep({"x": {"min": 1, "max": 10**9}}))
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
    error = bad_input(sweep(params, isolation={"pack": True}))
    assert error.key == "isolation.pack"
    error = bad_input(sweep(params, isolation={
        "fit": {"features": ["hidden"], "policy": "shrink", "key": "batch_size"}}))
    assert error.key == "isolation.fit.key"


def test_a_project_name_wandb_would_refuse():
    assert bad_input(sweep(project="team/proj")).key == "project"
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", "x.yaml",
                           "--project", "a/b"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--project 'a/b'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_bad_command_line_is_one_line():
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--slots", "0"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tools/sweep.py: error: --slots must be at least 1 (see --help)"]


def test_a_gpu_listed_twice_is_refused():
    devices = [FakeDevice([0.0], index=0), FakeDevice([0.0], index=1)]
    with pytest.raises(BadInput, match="listed twice"):
        choose_devices("0,0", devices)


def test_malformed_events_from_a_trial_never_raise():
    events = TrialEvents("loss")
    assert not events.add({"kind": "report", "metrics": "oops", "memory": [1]})
    assert not events.add({"kind": "report", "metrics": {"loss": "x"},
                           "memory": {"rss_mb": "big", "torch_peak_allocated_mb": True}})
    assert events.add({"kind": "report", "metrics": {"loss": 0.5}, "memory": {"rss_mb": 3}})
    assert events.report_memory == [{}, {}, {"rss_mb": 3}]
    assert events.torch_peak_allocated_mb is None and events.metric_values == [0.5]


def test_container_memory_room():
    gib = 2**30
    assert cgroup_room_mb(None, gib, 0) is None  # no limit
    assert cgroup_room_mb(2**63 - 4096, gib, 0) is None  # cgroup v1's "no limit"
    assert cgroup_room_mb(2 * gib, gib + gib // 2, gib // 4) == 768.0  # cache is reclaimed
    assert cgroup_room_mb(gib, 2 * gib, 0) == 0.0


def test_a_dirty_gpu_with_on_dirty_abort_stops_a_local_sweep(tmp_path, capsys):
    """FAKE GPU: 100 MB before the first trial, then 800 MB that never come back."""
    spec = parse_sweep(sweep({"x": {"values": [1, 2, 3]}, "seconds": {"value": 0.1}},
                             isolation={"on_dirty": "abort",
                                        "wait": {"max_s": 0.3, "poll_s": 0.05}}), "s.yaml")
    runner = SweepRunner(spec, SweepOptions(log_dir=str(tmp_path / "log")),
                         [FakeDevice([100.0, 900.0])], QuietDisplay())
    assert runner.run() == 3
    record = yaml.safe_load(Path(runner.sweep_dir, "sweep.yaml").read_text())
    assert record["sweep"]["state"] == "aborted" and len(record["trials"]) == 1
    assert "GPU did not come back clean" in capsys.readouterr().err


def test_dry_run_says_random_draws_are_a_sample(write_sweep):
    path = write_sweep(sweep({"x": {"min": 0.0, "max": 1.0}}, method="random"))
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(path),
                           "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "a sample" in proc.stdout
