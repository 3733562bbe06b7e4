"""Real frameworks, run unmodified under a sweep through tools/sweep.py, Hyperband on:
PyTorch Lightning (``WandbLogger`` with its defaults) and the HuggingFace Trainer
(``report_to=["wandb"]``, a tiny BERT built from a config: nothing is downloaded).

Skipped when the ``frameworks`` extra is not installed (``make venv`` installs it)."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, wait_for_summary
from wandb_records import offline_runs, read_run

pytestmark = [pytest.mark.slow, pytest.mark.frameworks]


def sweep_elsewhere(example: str, tmp_path):
    """Run examples/frameworks/<example> from a scratch working directory (Lightning writes
    its runs under the working directory's wandb/); returns the sweep dir and its rows."""
    config = yaml.safe_load((ROOT / "examples" / "frameworks" / example).read_text())
    config["program"] = str(ROOT / config["program"])
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(config))
    env = dict(os.environ, WANDB_MODE="offline")
    for name in ("WANDB_PROJECT", "WANDB_SWEEP_ID", "WANDB_DIR"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "sweep.py"), "--sweep-config",
                           str(sweep_file), "--log-dir", str(tmp_path / "log"), "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sweep_dir,) = (tmp_path / "log").iterdir()
    wait_for_summary(sweep_dir)
    rows = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["trials"]
    return sweep_dir, rows, config["metric"]["name"]


def check_one_run_per_trial(sweep_dir, rows, metric, where):
    statuses = sorted(row["status"] for row in rows)
    assert "stopped_early" in statuses and "finished" in statuses, statuses
    for row in rows:
        memory = yaml.safe_load((sweep_dir / row["run"] / "memory.yaml").read_text())
        run_dir = memory["wandb_run"]["dir"]
        assert os.path.dirname(run_dir) == str(where) and memory["wandb_run"]["id"] == row["run"]
        run = read_run(run_dir)
        assert run.run_id == row["run"] and run.history
        # a stopped run ends with the exit code the trial really had, not 0
        assert run.exit_code == (143 if row["status"] == "stopped_early" else 0)
        assert memory["exit_code"] == run.exit_code
        # metric.reports counts reports of the metric, not every wandb.log row
        values = [h[metric] for h in run.history if metric in h]
        assert memory["metric"]["reports"] == len(values) < len(run.history)
    return rows


def test_pytorch_lightning_with_wandblogger_defaults(tmp_path):
    pytest.importorskip("lightning")
    sweep_dir, rows, metric = sweep_elsewhere("lightning_sweep.yaml", tmp_path)
    check_one_run_per_trial(sweep_dir, rows, metric, tmp_path / "wandb")
    # no stand-in run was written for them: the sweep dir holds only the summary run
    (summary,) = offline_runs(sweep_dir)
    assert "-summary-" in summary
    dry = subprocess.run([sys.executable, str(ROOT / "tools" / "sweep.py"), "sync",
                          str(sweep_dir), "--dry-run"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert all(f"{tmp_path / 'wandb'}/offline-run-" in dry.stdout and row["run"] in dry.stdout
               for row in rows)  # sync finds the runs outside the sweep directory


def test_huggingface_trainer_reporting_to_wandb(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    sweep_dir, rows, metric = sweep_elsewhere("hf_sweep.yaml", tmp_path)
    check_one_run_per_trial(sweep_dir, rows, metric, sweep_dir / "wandb")
