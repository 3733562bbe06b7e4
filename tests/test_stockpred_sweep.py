"""End to end: a sweep over configs/test_memory.yml through tools/sweep.py, real processes."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import wait_for_summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_sweep_over_the_tiny_config_finishes(tmp_path):
    sweep = {
        "name": "stockpred_test",
        "program": "tools/train.py",
        "command": ["${env}", "${interpreter}", "${program}", "--config_file",
                    "configs/test_memory.yml", f"--data.cache_dir={tmp_path / 'cache'}",
                    "${args}"],
        "method": "grid",
        "metric": {"name": "val_mae", "goal": "minimize"},
        "parameters": {"model.arch": {"values": ["gru", "cnn_rnn"]},
                       "train.epochs": {"value": 2}},
        "isolation": {"timeout_s": 120, "stop": {"grace_s": 5}, "wait": {"max_s": 10}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    log_dir = tmp_path / "log"
    proc = subprocess.run(
        [sys.executable, "tools/sweep.py", "--sweep-config", str(path), "--quiet",
         "--log-dir", str(log_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sweep_id,) = os.listdir(log_dir)
    wait_for_summary(log_dir / sweep_id)  # detached: let it end before tmp_path goes
    record = yaml.safe_load((log_dir / sweep_id / "sweep.yaml").read_text())
    assert record["sweep"]["state"] == "finished"
    assert record["totals"]["trials"] == 2 and record["totals"]["finished"] == 2
    for row in record["trials"]:
        assert 0 < row["metric"] < 0.5
        result = yaml.safe_load((log_dir / sweep_id / row["run"] / "result.yaml").read_text())
        assert result["config"]["model"]["arch"] == row["params"]["model.arch"]
        assert result["val_mae"] == row["metric"] and result["epochs"] == 2
        assert (log_dir / sweep_id / row["run"] / "best.pt").exists()
