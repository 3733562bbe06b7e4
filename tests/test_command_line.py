"""The orchestrator's command line: a bad option is one line, ``--dry-run`` starts nothing."""

import subprocess
import sys

from conftest import ROOT
from conftest import sleeper_sweep as sweep


def test_a_bad_command_line_is_one_line():
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--slots", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tools/sweep.py: error: --slots must be at least 1 (see --help)"]
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--slots", "many"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "tools/sweep.py: error: argument --slots: expected a number or auto, got 'many' "
        "(see --help)"]


def test_slots_auto_is_refused_in_cloud_mode_in_one_line():
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-id", "e/p/abc",
                           "--slots", "auto"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--slots auto is for local sweeps" in proc.stderr


def test_dry_run_says_random_draws_are_a_sample(write_sweep):
    path = write_sweep(sweep({"x": {"min": 0.0, "max": 1.0}}, method="random"))
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(path),
                           "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "a sample" in proc.stdout


def test_dry_run_masks_secret_named_params(write_sweep):
    path = write_sweep(sweep({"x": {"values": [1, 2]}, "api_token": {"value": "sekrit123"},
                              "db.password": {"values": ["hunter2-a", "hunter2-b"]}},
                             command=["${interpreter}", "${program}", "${args}",
                                      "${args_json}"]))
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(path),
                           "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sekrit123" not in proc.stdout and "hunter2" not in proc.stdout
    assert "'api_token': '***'" in proc.stdout and "'--api_token=***'" in proc.stdout
    assert "'--db.password=***'" in proc.stdout and '"db.password": "***"' in proc.stdout
    assert "'x': 2" in proc.stdout and "'--x=2'" in proc.stdout  # the rest is shown
