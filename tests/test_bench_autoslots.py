"""bench/auto_slots.py and its gpu-check step, on the CPU as far as they go."""

import json
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, program

sys.path.insert(0, str(ROOT))
from bench import auto_slots  # noqa: E402


def test_trials_per_hour_reached_and_the_ratio():
    assert auto_slots.trials_per_hour(8, 60.0) == 480.0
    assert auto_slots.trials_per_hour(0, 60.0) is None
    assert auto_slots.trials_per_hour(3, 0.0) is None
    assert auto_slots.reached([0, 3, 2]) == 4
    assert auto_slots.reached([0, None]) is None  # unknown, not 1
    assert auto_slots.reached([]) is None
    one, auto = {"trials_per_hour": 500.0}, {"trials_per_hour": 2100.0}
    assert auto_slots.compare(one, auto) == 4.2
    assert auto_slots.compare({"trials_per_hour": None}, auto) is None


def test_the_gpu_check_step_runs_the_quick_sweep_with_auto_against_one_slot(gpu_check):
    (step,) = [s for s in gpu_check.steps("py") if s.name == "bench auto_slots"]
    assert step.json_result and step.argv[:2] == ["py", "bench/auto_slots.py"]
    args = auto_slots.parse_args(step.argv[2:])
    assert (args.sweep, args.count, args.json) == ("sweeps/sweep_quick.yaml", 8, True)
    assert (ROOT / args.sweep).exists()
    listed = subprocess.run([sys.executable, "tools/gpu_check.py", "--dry-run"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60).stdout
    assert "bench/auto_slots.py --sweep sweeps/sweep_quick.yaml --count 8 --json" in listed


def test_sim_and_sweep_are_exclusive():
    with pytest.raises(SystemExit):
        auto_slots.parse_args(["--sim", "--sweep", "x.yaml"])


@pytest.mark.slow
def test_the_sweep_path_runs_end_to_end_on_the_cpu(tmp_path):
    """What gpu-check runs, with a small sweep of sleepers instead of the stock model: the
    CPU bounds auto here, so only the figures' shape is checked, never their values."""
    sweep = tmp_path / "sleepers.yaml"
    sweep.write_text(yaml.safe_dump({
        "program": program("sleeper.py"), "method": "grid",
        "parameters": {"x": {"values": [1, 2, 3]}, "seconds": {"value": 0.3}},
        "isolation": {"utilization_window_s": 0.2}}))
    proc = subprocess.run([sys.executable, "bench/auto_slots.py", "--sweep", str(sweep),
                           "--count", "3", "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    one, auto = result["runs"]["--slots 1"], result["runs"]["--slots auto"]
    assert one["trials"] == auto["trials"] == 3 and one["reached"] == 1
    assert 1 <= auto["reached"] <= 3 and result["speedup_auto_vs_one"] is not None
