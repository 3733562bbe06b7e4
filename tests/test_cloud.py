"""Cloud mode at the seam: wandb's own agent loop, a FAKE API replaying server commands,
and real isolated trials (real subprocesses, signals and files). No network."""

import os
import subprocess
import sys
import time

import pytest
import wandb
import yaml
from conftest import ROOT, journal_tokens, processes_with_token, program
from fake_wandb_api import FakeWandbApi, exit_command, run_command, stop_command
from fakes import FakeDevice
from wandb_records import offline_runs, read_run

from gpusweep.cloud import CloudSweep, IsolatedRun
from gpusweep.config import parse_sweep
from gpusweep.device import NullDevice
from gpusweep.display import QuietDisplay
from gpusweep.records import TrialRecord
from gpusweep.runner import SweepOptions
from gpusweep.status import TrialStatus

SLEEPER = program("sleeper.py")
SWEEP = {"program": SLEEPER, "method": "grid", "metric": {"name": "loss", "goal": "minimize"},
         "parameters": {"x": {"values": [1, 2, 3]}}}


def always(states):
    return True


def gone(run_id):
    return lambda states: run_id not in states


def reported(sweep_dir, run_id):
    """The run is running and has written its first report."""
    events = sweep_dir / run_id / "events.jsonl"
    return lambda states: states.get(run_id) and events.exists() and events.stat().st_size > 0


def cloud_sweep(tmp_path, monkeypatch, script, device=None, isolation=None):
    config = dict(SWEEP, isolation=isolation or {"stop": {"grace_s": 2}})
    api = FakeWandbApi(SWEEP, script)
    monkeypatch.setattr(wandb, "Api", lambda *args, **kwargs: api)  # wandb's loop renews it
    environ = dict(os.environ, WANDB_MODE="offline")
    for name in ("WANDB_API_KEY", "WANDB_SWEEP_ID", "WANDB_RUN_ID"):
        environ.pop(name, None)
    sweep = CloudSweep(api=api, sweep_id="sweep123", entity="team", project="proj",
                       spec=parse_sweep(config, "fake-sweep"),
                       options=SweepOptions(log_dir=str(tmp_path / "log"), project="proj"),
                       device=device or NullDevice(), display=QuietDisplay(),
                       environ=environ, poll_interval=0.1)
    return sweep, api


@pytest.mark.slow
def test_run_stop_exit_from_the_server_run_isolated_trials(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "log" / "sweep123"
    script = [
        (always, [run_command("run1", SLEEPER, x=1, seconds=0.2)]),
        (gone("run1"), [run_command("run2", SLEEPER, x=2, seconds=60)]),
        (reported(sweep_dir, "run2"), [stop_command("run2")]),
        (gone("run2"), [exit_command()]),
    ]
    sweep, api = cloud_sweep(tmp_path, monkeypatch, script)
    started = time.monotonic()
    assert sweep.run() == 0
    assert time.monotonic() - started < 60, "run2 was stopped, not waited for"
    assert api.registered[0]["sweep"] == "sweep123" and api.script == []
    assert {"run1": True} in api.heartbeats  # the agent reported run1 while it ran
    record = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert record["sweep"]["state"] == "finished"
    assert [(r["run"], r["status"]) for r in record["trials"]] == [
        ("run1", "finished"), ("run2", "stopped_early")]
    run2 = yaml.safe_load((sweep_dir / "run2" / "memory.yaml").read_text())
    assert run2["cleanup"]["processes_killed"] >= 1 and run2["cleanup"]["clean"]
    assert processes_with_token(journal_tokens(sweep_dir)) == []
    # what only the orchestrator knows went to each run's summary via the public API
    killed = {run: yaml.safe_load((sweep_dir / run / "memory.yaml").read_text())["cleanup"]
              ["processes_killed"] for run in ("run1", "run2")}
    assert api.summaries == {
        f"team/proj/{run}": {"memory/residual_mb": None, "memory/wait_s": 0.0,
                             "cleanup/clean": True, "cleanup/processes_killed": killed[run],
                             "cleanup/escapees_killed": 0} for run in ("run1", "run2")}
    # the trial's own run got the server's run id and sweep id, as with `wandb agent`
    runs = offline_runs(sweep_dir)
    trial_run = read_run(runs["run1"])
    assert trial_run.sweep_id == "sweep123" and trial_run.config == {"x": 1, "seconds": 0.2}
    assert [h["loss"] for h in trial_run.history] == [1, 1]


@pytest.mark.slow
def test_exit_while_a_trial_runs_kills_its_whole_tree(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "log" / "sweep123"
    script = [
        (always, [run_command("run1", SLEEPER, x=1, seconds=60)]),
        (reported(sweep_dir, "run1"), [exit_command()]),
    ]
    sweep, api = cloud_sweep(tmp_path, monkeypatch, script)
    assert sweep.run() == 0
    record = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert [r["status"] for r in record["trials"]] == ["killed"]
    assert processes_with_token(journal_tokens(sweep_dir)) == []
    assert api.summaries["team/proj/run1"]["cleanup/clean"] is True


@pytest.mark.slow
def test_a_dirty_gpu_with_on_dirty_abort_ends_the_agent(tmp_path, monkeypatch):
    script = [(always, [run_command("run1", SLEEPER, x=1, seconds=0.1)]),
              (gone("run1"), [run_command("run2", SLEEPER, x=2, seconds=0.1)])]
    device = FakeDevice([100.0, 900.0])  # baseline 100 MB, then 800 MB never given back
    sweep, _ = cloud_sweep(tmp_path, monkeypatch, script, device=device, isolation={
        "on_dirty": "abort", "wait": {"max_s": 0.2, "poll_s": 0.05}})
    assert sweep.run() == 3
    record = yaml.safe_load((tmp_path / "log" / "sweep123" / "sweep.yaml").read_text())
    assert record["sweep"]["state"] == "aborted" and len(record["trials"]) == 1


@pytest.mark.parametrize("status, exit_code, expected", [
    (TrialStatus.FINISHED, 0, 0), (TrialStatus.STOPPED_EARLY, -15, 0),
    (TrialStatus.FAILED, 3, 3), (TrialStatus.FAILED, -11, 1), (TrialStatus.TIMEOUT, -9, 1),
    (TrialStatus.KILLED, -15, -15)])
def test_what_wandbs_agent_counts_as_a_failure(status, exit_code, expected):
    run = IsolatedRun.__new__(IsolatedRun)
    run.record = TrialRecord(run="r", params={}, status=status, exit_code=exit_code,
                             signal=None, started="", ended="", duration_s=0.0)
    assert run.returncode == expected


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (["--sweep-id", "team/proj/abc123"], "needs a W&B API key"),
    (["--wandb", "--sweep-config", "examples/wandb_script/sweep.yaml"], "needs a W&B API key"),
])
def test_cloud_mode_without_a_key_is_one_line_and_exit_2(tmp_path, args, expected):
    env = dict(os.environ, HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path))
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "tools/sweep.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cloud_mode_without_network_is_one_line_and_exit_2(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path),
               WANDB_API_KEY="x" * 40, WANDB_BASE_URL="https://api.wandb.invalid")
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-id", "team/proj/abc"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach the W&B server: api.wandb.invalid:443" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


CLOUD_MAIN = """
import os, sys, wandb
sys.path.insert(0, {tests!r})
from fake_wandb_api import FakeWandbApi, run_command
from gpusweep.cloud import CloudSweep
from gpusweep.config import parse_sweep
from gpusweep.device import NullDevice
from gpusweep.display import QuietDisplay
from gpusweep.runner import SweepOptions
sweep_config = {sweep!r}
api = FakeWandbApi(sweep_config, [(lambda states: True,
                                   [run_command("run1", {sleeper!r}, x=1, seconds=60)])])
wandb.Api = lambda *args, **kwargs: api
sweep = CloudSweep(api=api, sweep_id="sweep123", entity="team", project="proj",
                   spec=parse_sweep(dict(sweep_config, isolation={{"stop": {{"grace_s": 2}}}})),
                   options=SweepOptions(log_dir={log_dir!r}, project="proj"),
                   device=NullDevice(), display=QuietDisplay(),
                   environ=dict(os.environ, WANDB_MODE="disabled"), poll_interval=0.1)
sys.exit(sweep.run())
"""


@pytest.mark.slow
def test_sigterm_to_the_agent_stops_the_running_trial_and_exits_130(tmp_path):
    log_dir = tmp_path / "log"
    code = CLOUD_MAIN.format(tests=str(ROOT / "tests"), sweep=SWEEP, sleeper=SLEEPER,
                             log_dir=str(log_dir))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    events = log_dir / "sweep123" / "run1" / "events.jsonl"
    deadline = time.monotonic() + 60
    while not (events.exists() and events.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events.exists(), "the trial never reported"
    proc.terminate()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    record = yaml.safe_load((log_dir / "sweep123" / "sweep.yaml").read_text())
    assert record["sweep"]["state"] == "interrupted"
    assert [r["status"] for r in record["trials"]] == ["killed"]
    assert processes_with_token(journal_tokens(log_dir / "sweep123")) == []
