"""The ``gpusweep`` command: ``--version``, ``--help``, ``python -m gpusweep``, and
``gpusweep agent`` with ``wandb agent``'s command line, joining a sweep on a FAKE W&B server
(tests/fake_wandb_server.py) that the real wandb talks HTTP to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, program
from fake_wandb_server import FakeWandbServer

from gpusweep import __version__
from gpusweep.wb.agent_cli import sweep_argv

GPUSWEEP = Path(sys.executable).parent / "gpusweep"  # the console script of .venv


def command(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 60):
    return subprocess.run([str(GPUSWEEP), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_agent_is_the_main_command_line_with_the_sweep_id():
    assert sweep_argv(["team/proj/abc123", "--count", "2"]) == [
        "--sweep-id", "team/proj/abc123", "--count", "2"]
    assert sweep_argv(["-p", "proj", "-e", "team", "abc", "--gpus", "all", "--log-dir", "L",
                       "--sweep-config", "s.yaml", "--config_file", "c.yml", "--quiet",
                       "-f"]) == [
        "--sweep-id", "abc", "--project", "proj", "--entity", "team", "--gpus", "all",
        "--log-dir", "L", "--sweep-config", "s.yaml", "--config_file", "c.yml", "--quiet"]


def test_the_console_script_and_python_m_are_the_same_program(tmp_path):
    assert GPUSWEEP.exists(), "make venv installs the gpusweep command"
    version = command("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"gpusweep {__version__}"
    shown = command("--help", cwd=tmp_path).stdout
    for line in ("gpusweep agent ENTITY/PROJECT/SWEEP_ID", "gpusweep doctor [--json]",
                 "gpusweep report SWEEP_DIR", "--sweep-config FILE"):
        assert line in shown
    module = subprocess.run([sys.executable, "-m", "gpusweep", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    options = shown[shown.index("options:"):]
    assert module.stdout[module.stdout.index("options:"):].replace(
        "python -m gpusweep", "gpusweep") == options  # usage wraps by the name's length
    agent = command("agent", "--help", cwd=tmp_path).stdout
    assert "Start a sweep agent, as `wandb agent` does" in agent and "--count N" in agent


@pytest.mark.parametrize("args", [("--help",), ("agent", "--help")])
def test_gpus_help_says_what_readme_says(args, tmp_path):
    shown = " ".join(command(*args, cwd=tmp_path).stdout.split())  # argparse wraps lines
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `--gpus"))
    for words in ("positions in the visible set", "MIG instances as devices",
                  "a unique prefix"):
        assert words in row and words in shown, words
    assert "by NVML index" not in shown  # NVML's index is not what --gpus counts


@pytest.mark.parametrize(("args", "message"), [
    ([], "--sweep-id ID), or a command: agent, report, sync, doctor (see --help)"),
    (["agent"], "the following arguments are required: SWEEP_ID"),
    (["agent", "abc", "--term-timeout", "5"], "isolation.stop.grace_s"),
    (["agent", "abc", "--max-consecutive-failed-runs", "3"], "isolation.flapping"),
    (["agent", "abc", "--count", "0"], "--count must be at least 1"),
    (["--slots", "0"], "gpusweep: error: --slots must be at least 1"),
])
def test_a_bad_command_line_is_one_line_and_exit_2(args, message, tmp_path):
    proc = command(*args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_gpusweep_agent_joins_a_sweep_and_runs_count_runs(tmp_path):
    server = FakeWandbServer().start()
    try:
        sweep = server.add_sweep({
            "program": str(ROOT / program("reporter.py")), "method": "grid",
            "metric": {"name": "loss", "goal": "minimize"},
            "parameters": {"x": {"values": [1, 2, 3]}, "steps": {"value": 2},
                           "every": {"value": 0.05}}})
        env = server.env(tmp_path / "home")
        env.update(WANDB_MODE="offline", GPUSWEEP_HEARTBEAT_S="0.2")
        proc = command("agent", f"team/proj/{sweep.name}", "--count", "2", "--log-dir",
                       str(tmp_path / "log"), "--quiet", cwd=tmp_path, env=env, timeout=180)
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    record = yaml.safe_load((tmp_path / "log" / sweep.name / "sweep.yaml").read_text())
    assert [row["status"] for row in record["trials"]] == ["finished", "finished"]
    assert sorted(r["run"] for r in record["trials"]) == sorted(server.runs(sweep.name))
    assert record["sweep"]["project"] == "proj" and record["sweep"]["entity"] == "team"
