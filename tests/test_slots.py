"""Concurrent slots: several trials at once on CPU, and a per-device GPU wait (fake GPUs)."""

import signal
import subprocess
import sys
import time

import pytest
from conftest import (
    ROOT,
    fault,
    journal_tokens,
    processes_with_token,
    program,
    resume_sweep,
    wait_until_no_process,
)
from fakes import FakeDevice

from gpusweep.config import parse_sweep
from gpusweep.display import QuietDisplay
from gpusweep.errors import BadInput
from gpusweep.runner import SweepOptions, SweepRunner
from gpusweep.slots import choose_devices, make_slots

pytestmark = pytest.mark.slow


def grid(program_file, parameters, **isolation):
    isolation.setdefault("stop", {"grace_s": 1})
    return {"program": program_file, "method": "grid",
            "metric": {"name": "loss", "goal": "minimize"},
            "parameters": parameters, "isolation": isolation}


def overlapping(a, b):
    return a["timeline"]["start"] < b["timeline"]["exit"] and \
        b["timeline"]["start"] < a["timeline"]["exit"]


def test_two_slots_run_trials_at_the_same_time(write_sweep, run_sweep):
    config = grid(program("sleeper.py"), {"x": {"values": [1, 2, 3, 4]},
                                          "seconds": {"value": 1.0}})
    result = run_sweep(write_sweep(config), "--slots", "2")
    assert result.returncode == 0, result.proc.stderr
    rows = result.sweep["trials"]
    assert sorted(r["params"]["x"] for r in rows) == [1, 2, 3, 4]
    assert {r["slot"] for r in rows} == {0, 1} and {r["device"] for r in rows} == {"cpu"}
    memories = result.memories()
    assert any(overlapping(a, b) for a in memories for b in memories if a is not b)
    assert all(m["status"] == "finished" for m in memories)
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []


def test_escapees_and_oom_retries_hold_with_three_slots(write_sweep, run_sweep):
    config = grid(fault("escapee.py"), {"x": {"values": [1, 2, 3]}})
    result = run_sweep(write_sweep(config), "--slots", "3")
    assert result.returncode == 0, result.proc.stderr
    assert all(m["cleanup"]["escapees_killed"] >= 1 for m in result.memories())
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []


def test_oom_retry_with_two_slots(write_sweep, run_sweep):
    config = grid(fault("oom.py"), {"batch_size": {"values": [256, 16]}},
                  oom={"retry": True, "key": "batch_size", "max_retries": 3})
    result = run_sweep(write_sweep(config), "--slots", "2")
    rows = result.sweep["trials"]
    by_run = {r["run"]: r for r in rows}
    chain = [(r["params"]["batch_size"], r["status"]) for r in rows
             if r["params"]["batch_size"] != 16]
    assert sorted(chain) == [(64, "finished"), (128, "oom"), (256, "oom")]
    retried = [r for r in rows if "retry_of" in r]
    assert {by_run[r["retry_of"]]["params"]["batch_size"] for r in retried} == {256, 128}


def test_hyperband_with_two_slots(write_sweep, run_sweep):
    config = grid(program("quadratic.py"), {"x": {"values": [3, 2, -3, -6, -9, 8]},
                                            "epochs": {"value": 8},
                                            "sleep": {"value": 0.15}})
    config["early_terminate"] = {"type": "hyperband", "min_iter": 1, "eta": 2}
    result = run_sweep(write_sweep(config), "--slots", "2")
    statuses = [r["status"] for r in result.sweep["trials"]]
    assert len(statuses) == 6 and "stopped_early" in statuses


def test_resume_with_two_trials_in_flight(write_sweep, tmp_path):
    config = grid(program("sleeper.py"), {"x": {"values": [1, 2, 3, 4]},
                                          "seconds": {"value": 2.0}})
    sweep_file = write_sweep(config)
    log_dir = tmp_path / "log"
    command = [sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
               "--log-dir", str(log_dir), "--quiet", "--slots", "2"]
    proc = subprocess.Popen(command, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(log_dir.glob("*/*/events.jsonl"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (sweep_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    tokens = journal_tokens(sweep_dir)
    # Each trial's launcher saw the orchestrator die and ended its tree (grace_s 10 at most).
    assert wait_until_no_process(tokens, 30) == []
    sweep = resume_sweep(command, sweep_dir)
    finished = sorted(r["params"]["x"] for r in sweep["trials"] if r["status"] == "finished")
    assert finished == [1, 2, 3, 4]
    assert [r["status"] for r in sweep["trials"]].count("killed") == 2
    assert processes_with_token(tokens) == []


def test_a_dirty_gpu_does_not_hold_up_the_other_gpu(tmp_path, monkeypatch):
    """FAKE GPUs: device 0 never comes back clean, device 1 is always clean."""
    monkeypatch.chdir(ROOT)
    dirty = FakeDevice([1000.0, 9000.0], name="FakeGPU-dirty", uuid="GPU-fake-0", index=0)
    clean = FakeDevice([1000.0], name="FakeGPU-clean", uuid="GPU-fake-1", index=1)
    config = grid(program("sleeper.py"), {"x": {"values": list(range(6))},
                                          "seconds": {"value": 0.2}},
                  wait={"max_s": 3.0, "poll_s": 0.1})
    spec = parse_sweep(config, "slots.yaml")
    runner = SweepRunner(spec, SweepOptions(log_dir=str(tmp_path)), [dirty, clean],
                         QuietDisplay())
    assert runner.run() == 0
    records = runner.session.records
    on_dirty = [r for r in records if r.gpu.index == 0]
    on_clean = [r for r in records if r.gpu.index == 1]
    assert on_dirty and on_clean
    assert all(not r.cleanup.clean and r.cleanup.wait_s >= 3.0 for r in on_dirty)
    assert all(r.cleanup.clean and r.cleanup.wait_s < 1.0 for r in on_clean)
    first_wait = on_dirty[0].timeline
    assert any(first_wait.wait_start < r.timeline.start < first_wait.wait_end for r in on_clean)


def test_gpus_option_picks_devices_by_index():
    fakes = [FakeDevice([0.0], uuid=f"GPU-{i}") for i in range(3)]
    assert [d.info.uuid for d in choose_devices("0,2", fakes)] == ["GPU-0", "GPU-2"]
    assert len(choose_devices("all", fakes)) == 3
    assert [s.device.info.uuid for s in make_slots(None, choose_devices("1,2", fakes))] == [
        "GPU-1", "GPU-2"]
    assert [s.device.info.uuid for s in make_slots(4, fakes[:2])] == [
        "GPU-0", "GPU-1", "GPU-0", "GPU-1"]
    with pytest.raises(BadInput):
        choose_devices("5", fakes)
    with pytest.raises(BadInput):
        choose_devices("all", [])
    assert choose_devices(None, [])[0].is_gpu is False


def test_pack_starts_a_trial_only_when_it_fits_beside_its_neighbour(write_sweep, run_sweep):
    # ballast.py holds batch_size MB here; 250 MB for two slots: two 160 MB trials never
    # run side by side, the three small ones (before the model is trusted) may.
    config = grid("tests/programs/ballast.py", {
        "batch_size": {"values": [32, 48, 64, 160, 161]}, "hidden": {"value": 128},
        "epochs": {"value": 2}, "sleep": {"value": 0.3}},
        fit={"features": ["batch_size"], "budget_mb": 250, "min_trials": 3}, pack=True)
    result = run_sweep(write_sweep(config), "--slots", "2")
    assert result.returncode == 0, result.proc.stderr
    big = [m for m in result.memories() if m["params"]["batch_size"] >= 160]
    assert len(big) == 2 and all(m["status"] == "finished" for m in big)
    assert all(m["predicted_peak_mb"] > 125 for m in big)
    assert not overlapping(*big)
