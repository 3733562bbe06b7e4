"""A clean W&B environment per trial: no trial inherits the orchestrator's wandb service."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, program, wait_for_summary
from wandb_records import offline_runs, read_run

pytestmark = pytest.mark.slow

PROBE = {"name": "probe", "program": program("wandb_env_probe.py"), "method": "grid",
         "metric": {"name": "loss", "goal": "minimize"},
         "parameters": {"x": {"values": [1, 2]}}, "isolation": {"stop": {"grace_s": 2}}}


def check_trials(sweep_dir):
    record = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert [row["status"] for row in record["trials"]] == ["finished", "finished"]
    runs = offline_runs(sweep_dir)
    for row in record["trials"]:
        output = (sweep_dir / row["run"] / "output.log").read_text()
        assert "inherited WANDB_SERVICE: None" in output, output
        run = read_run(runs[row["run"]])
        assert [h["loss"] for h in run.history] == [row["params"]["x"], row["params"]["x"] + 1]
        assert run.exit_code == 0


def test_a_service_started_in_the_orchestrator_never_reaches_the_trials(tmp_path,
                                                                       write_sweep):
    """The orchestrator's process hosts a real wandb service before the sweep (as cloud mode
    does, or a notebook); both trials still start their own and write their runs."""
    sweep_file = write_sweep(PROBE)
    code = ("import os, sys; from wandb.sdk import wandb_setup; "
            "wandb_setup.singleton().ensure_service(); "
            "print('ORCHESTRATOR', os.environ.get('WANDB_SERVICE')); "
            "from gpusweep.cli import main; "
            f"sys.exit(main(['--sweep-config', {str(sweep_file)!r}, '--log-dir', "
            f"{str(tmp_path / 'log')!r}, '--quiet']))")
    env = dict(os.environ, WANDB_MODE="offline")
    env.pop("WANDB_SERVICE", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ORCHESTRATOR None" not in proc.stdout  # the service really ran here
    (sweep_dir,) = (tmp_path / "log").iterdir()
    check_trials(sweep_dir)
    wait_for_summary(sweep_dir)


def test_a_stale_wandb_service_in_the_environment_is_dropped(tmp_path, write_sweep):
    """Started from a shell, notebook or job whose environment holds a dead service's
    token: every trial would fail ``wandb.init()`` with it."""
    sweep_file = write_sweep(PROBE)
    env = dict(os.environ, WANDB_MODE="offline",
               WANDB_SERVICE="3-999999-unix-/tmp/wandb-999999-gone/socket")
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
                           "--log-dir", str(tmp_path / "log"), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = (tmp_path / "log").iterdir()
    check_trials(sweep_dir)
    assert wait_for_summary(sweep_dir)["state"] == "written"  # the summary run's own too
