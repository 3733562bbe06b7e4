"""An unmodified W&B script (examples/wandb_script) run through tools/sweep.py."""

import json

import pytest
import yaml
from conftest import ROOT
from wandb_records import offline_runs, read_run

pytestmark = pytest.mark.slow


def test_unmodified_wandb_script_feeds_hyperband_and_records_memory(run_sweep):
    result = run_sweep(ROOT / "examples" / "wandb_script" / "sweep.yaml", timeout=300,
                       wandb_mode="offline")
    assert result.returncode == 0, result.proc.stderr
    rows = result.sweep["trials"]
    assert len(rows) == 3
    statuses = {row["params"]["lr"]: row["status"] for row in rows}
    assert statuses[0.03] == "finished"  # the first and best run sets the bar
    assert "stopped_early" in statuses.values()  # Hyperband saw the wandb.log history
    runs = offline_runs(result.sweep_dir)
    for memory in result.memories():
        trial_dir = result.sweep_dir / memory["run"]
        lines = (trial_dir / "events.jsonl").read_text().splitlines()
        reports = [e for e in map(json.loads, lines) if e["kind"] == "report"]
        assert memory["metric"]["reports"] == len(reports) >= 2
        assert [e["metrics"]["val_loss"] for e in reports][:2] == [
            h["val_loss"] for h in read_run(runs[memory["run"]]).history][:2]
        assert all(e["memory"]["rss_mb"] > 50 for e in reports)  # torch is loaded
        assert memory["host"]["peak_rss_mb"] > 50
        if memory["status"] == "finished":
            assert memory["metric"]["reports"] == 6
        # the params came through W&B's param file: the command passes no argv
        assert memory["command"][-1].endswith("train.py")
        assert read_run(runs[memory["run"]]).config["lr"] == memory["params"]["lr"]
    config = yaml.safe_load((ROOT / "examples" / "wandb_script" / "sweep.yaml").read_text())
    assert "isolation" not in config  # an existing W&B sweep file, unchanged
