"""The session's lifecycle in local mode: --config_file, SIGTERM as preemption, resume."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT, journal_tokens, processes_with_token, program

pytestmark = pytest.mark.slow


def test_the_incidents_command_line_is_accepted():
    """``python tools/sweep.py --config_file configs/... --sweep-config sweeps/sweep_full.yaml``
    (the incident's own command: README, "Background"): every trial gets that config file."""
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--config_file",
                           "configs/test_memory.yml", "--sweep-config",
                           "sweeps/sweep_full.yaml", "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    argvs = [line for line in proc.stdout.splitlines() if line.strip().startswith("argv:")]
    wanted = str(ROOT / "configs" / "test_memory.yml")
    assert argvs and all(f"'--config_file', '{wanted}'" in line for line in argvs)
    assert all("stock_gru.yml" not in line for line in argvs)  # replaced, not added


def test_config_file_goes_into_every_trial_and_is_kept_for_resume(write_sweep, run_sweep,
                                                                   tmp_path):
    config_file = tmp_path / "mine.yml"
    config_file.write_text("x: 1\n")
    sweep_file = write_sweep({"program": program("config_echo.py"), "method": "grid",
                              "parameters": {"x": {"values": [1, 2]}}})
    result = run_sweep(sweep_file, "--config_file", str(config_file), "--count", "1")
    assert result.returncode == 0, result.proc.stderr
    sweep_dir = result.sweep_dir
    assert result.sweep["sweep"]["config_file"] == str(config_file)
    resumed = subprocess.run([sys.executable, "tools/sweep.py", "--resume", sweep_dir.name,
                              "--log-dir", str(result.log_dir), "--quiet"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, WANDB_MODE="disabled"))
    assert resumed.returncode == 0, resumed.stderr
    rows = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["trials"]
    assert len(rows) == 2
    for row in rows:
        output = (sweep_dir / row["run"] / "output.log").read_text()
        assert f"config_file={config_file}" in output
    missing = run_sweep(sweep_file, "--config_file", str(tmp_path / "nope.yml"))
    assert missing.returncode == 2 and "nope.yml: --config_file: no such file" in \
        missing.proc.stderr


def test_sigterm_preempts_the_trials_and_resume_runs_them_again(write_sweep, tmp_path):
    flag = tmp_path / "go-on"
    sweep_file = write_sweep({"program": program("wait_for_flag.py"), "method": "grid",
                              "parameters": {"x": {"values": [1, 2]},
                                             "flag": {"value": str(flag)}},
                              "isolation": {"stop": {"grace_s": 3}}})
    log_dir = tmp_path / "log"
    command = [sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
               "--log-dir", str(log_dir), "--quiet", "--slots", "2"]
    env = dict(os.environ, WANDB_MODE="disabled")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = list(log_dir.glob("*/*/events.jsonl"))
        if len(events) == 2 and all(e.stat().st_size for e in events):
            break
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 60  # within grace_s, not the trials' 60 s
    (sweep_dir,) = log_dir.iterdir()
    record = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert [r["status"] for r in record["trials"]] == ["preempted", "preempted"]
    assert processes_with_token(journal_tokens(sweep_dir)) == []
    for row in record["trials"]:
        assert (sweep_dir / row["run"] / "preempt").exists()
    # --resume runs each preempted trial again, once
    flag.write_text("")
    resumed = subprocess.run([sys.executable, "tools/sweep.py", "--resume", sweep_dir.name,
                              "--log-dir", str(log_dir), "--quiet"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["trials"]
    assert [r["status"] for r in rows] == ["preempted", "preempted", "finished", "finished"]
    assert sorted(r["params"]["x"] for r in rows[2:]) == [1, 2]
    again = subprocess.run([sys.executable, "tools/sweep.py", "--resume", sweep_dir.name,
                            "--log-dir", str(log_dir), "--quiet"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr  # nothing left: not run a second time
    assert len(yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["trials"]) == 4


def test_a_relative_log_dir_survives_a_trial_that_changes_directory(tmp_path):
    config = {"program": str(ROOT / "tests" / "programs" / "chdir_report.py"),
              "method": "grid", "metric": {"name": "loss"},
              "parameters": {"x": {"values": [1]}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "sweep.py"), "--sweep-config",
                           "s.yaml", "--log-dir", "rel-log", "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, WANDB_MODE="disabled"))
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = (tmp_path / "rel-log").iterdir()
    (row,) = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["trials"]
    assert row["status"] == "finished" and row["metric"] == 0.5
