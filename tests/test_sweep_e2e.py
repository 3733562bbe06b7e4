"""End to end through tools/sweep.py: real subprocesses, real signals, real files."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import (
    ROOT,
    journal_tokens,
    launchers_with_token,
    processes_with_token,
    program,
    resume_sweep,
)

pytestmark = pytest.mark.slow


def grid(program_name, values, **extra):
    config = {
        "program": program(program_name),
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": values}},
        "isolation": {"stop": {"grace_s": 1}},
    }
    config.update(extra)
    return config


def test_grid_sweep_finishes_with_the_right_best_run(write_sweep, run_sweep):
    result = run_sweep(write_sweep(grid("quadratic.py", [1, 3, 5])))
    assert result.returncode == 0, result.proc.stderr
    sweep = result.sweep
    assert sweep["sweep"]["state"] == "finished"
    assert sweep["totals"]["trials"] == 3 and sweep["totals"]["finished"] == 3
    assert sweep["totals"]["best"]["params"] == {"x": 3}
    assert sweep["totals"]["best"]["metric"] == pytest.approx(1.0 / 3)
    assert result.proc.stdout.startswith(f"sweep {result.sweep_dir.name} finished: 3 trials")
    for memory in result.memories():
        assert memory["status"] == "finished" and memory["exit_code"] == 0
        assert memory["metric"]["reports"] == 3
        assert memory["host"]["peak_rss_mb"] > 0
        assert memory["gpu"]["peak_used_mb"] is None  # no GPU here: null, never invented
        assert memory["cleanup"] == {"processes_killed": 0, "escapees_killed": 0,
                                     "wait_s": 0.0, "clean": True, "reason": None}
        trial_dir = result.sweep_dir / memory["run"]
        assert (trial_dir / "memory.csv").read_text().startswith("t,rss_mb,gpu_used_mb")
        assert "epoch 2" in (trial_dir / "output.log").read_text()


def test_hyperband_offline_stops_trials_early(write_sweep, run_sweep):
    config = grid("quadratic.py", [3, 0, -3, -6], early_terminate={
        "type": "hyperband", "min_iter": 1, "eta": 2})
    config["parameters"]["epochs"] = {"value": 6}
    config["parameters"]["sleep"] = {"value": 0.1}
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0, result.proc.stderr
    statuses = {row["params"]["x"]: row["status"] for row in result.sweep["trials"]}
    assert statuses[3] == "finished"  # the first and best run sets the bar
    assert "stopped_early" in statuses.values()
    for memory in result.memories():
        if memory["status"] == "stopped_early":
            # the engine decided from the reported history, before the trial's end
            assert 1 <= memory["metric"]["reports"] < 6


def test_ctrl_c_mid_trial_leaves_no_process_and_a_complete_sweep_yaml(write_sweep, tmp_path):
    config = grid("sleeper.py", [1, 2])
    sweep_file = write_sweep(config)
    log_dir = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file), "--log-dir",
         str(log_dir), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    events = _wait_for_file(log_dir, "events.jsonl")
    assert events is not None, "the first trial never reported"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    (sweep_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    sweep = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert sweep["sweep"]["state"] == "interrupted" and sweep["sweep"]["ended"]
    assert [row["status"] for row in sweep["trials"]] == ["killed"]
    assert processes_with_token(journal_tokens(sweep_dir)) == []
    assert "interrupted" in out


def test_resume_after_sigkill_runs_every_grid_point_exactly_once(write_sweep, tmp_path):
    config = grid("sleeper.py", [1, 2, 3, 4])
    config["parameters"]["seconds"] = {"value": 1.5}
    config["run_cap"] = 4  # the killed trial's record must not use up the last point's place
    sweep_file = write_sweep(config)
    log_dir = tmp_path / "log"
    command = [sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
               "--log-dir", str(log_dir), "--quiet"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    (sweep_dir,) = _wait_for_finished_trials(log_dir, 1)
    tokens = journal_tokens(sweep_dir)
    # SIGKILL of the orchestrator and of the trial's launcher (a node agent killing all it
    # knows; frozen first so that neither sees the other go): no cleanup at all, the trial
    # lives on, and only --resume can end it (by its token).
    proc.send_signal(signal.SIGSTOP)
    for pid in launchers_with_token(tokens):
        os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.wait(timeout=30)
    assert processes_with_token(tokens), "the cut-off trial should still be running"
    sweep = resume_sweep(command, sweep_dir)
    finished = sorted(r["params"]["x"] for r in sweep["trials"] if r["status"] == "finished")
    assert finished == [1, 2, 3, 4]
    assert [r["status"] for r in sweep["trials"]].count("killed") == 1
    assert processes_with_token(tokens) == []


def test_dry_run_prints_argv_and_writes_nothing(write_sweep, tmp_path):
    log_dir = tmp_path / "log"
    proc = subprocess.run(
        [sys.executable, "tools/sweep.py", "--sweep-config",
         str(write_sweep(grid("quadratic.py", [1, 2]))), "--log-dir", str(log_dir),
         "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "trial 1: {'x': 1}" in proc.stdout and "'--x=2'" in proc.stdout
    assert not log_dir.exists()


def test_the_orchestrator_never_imports_torch(write_sweep, tmp_path):
    sweep_file = write_sweep(grid("quadratic.py", [1]))
    code = ("import sys; from gpusweep.cli import main; "
            f"rc = main(['--sweep-config', {str(sweep_file)!r}, '--log-dir', "
            f"{str(tmp_path / 'log')!r}, '--quiet']); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout


def _wait_for_file(log_dir, name, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(log_dir.glob(f"*/*/{name}")) if log_dir.exists() else []
        if found and found[0].stat().st_size > 0:
            return found[0]
        time.sleep(0.05)
    return None


def _wait_for_finished_trials(log_dir, n, timeout=60.0):
    """Wait until n trials have records and the next one is running (it has reported)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_dir.exists():
            dirs = [p for p in log_dir.iterdir() if p.is_dir()]
            trials = [p for p in dirs[0].iterdir() if p.is_dir()] if dirs else []
            done = [t for t in trials if (t / "memory.yaml").exists()]
            running = [t for t in trials if not (t / "memory.yaml").exists()
                       and (t / "events.jsonl").exists()]
            if len(done) >= n and running:
                return dirs
        time.sleep(0.02)
    raise AssertionError("trials did not finish in time")


def test_live_table_fits_an_80_column_log(write_sweep, tmp_path):
    """Without --quiet and without a terminal (CI logs): every column of the table shows."""
    config = grid("quadratic.py", [1, 2])
    config["parameters"]["a_long_dotted.parameter_name"] = {"values": [10]}
    proc = subprocess.run(
        [sys.executable, "tools/sweep.py", "--sweep-config", str(write_sweep(config)),
         "--log-dir", str(tmp_path / "log")], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, COLUMNS="80"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if " run " in line)
    names, units = lines[at - 1].split(), lines[at].split()  # units on a second header line
    assert names[-1] == "wait" and units[-1] == "s"
    assert "params" in units and "loss" in units
    sweep_dir = next((tmp_path / "log").iterdir())
    runs = [row["run"] for row in yaml.safe_load((sweep_dir / "sweep.yaml").read_text())[
        "trials"]]
    assert all(run in proc.stdout for run in runs)
    assert max(len(line) for line in proc.stdout.splitlines()[:-1]) <= 80
