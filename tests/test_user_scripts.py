"""The two scripts users run by hand (README, "The two cleanup scripts"), run here on CPU;
and sweepcheck's decisions."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from gpusweep.records import (
    CleanupRecord,
    GpuRecord,
    HostRecord,
    MetricSummary,
    SweepHeader,
    SweepState,
    TrialRecord,
)
from gpusweep.records.journal import replay
from gpusweep.records.reader import SweepData, TrialRow
from gpusweep.report.check import peak_table, problems
from gpusweep.status import TrialStatus


@pytest.mark.slow
def test_gpu_cleanup_script_passes(tmp_path):
    proc = subprocess.run([sys.executable, "test_gpu_cleanup.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.rstrip().endswith("PASS")
    assert "exit_without_free" in out and "leak_global_and_worker" in out
    for column in ("before", "peak", "after", "residual", "wait s"):
        assert column in out
    if "device: cpu" in out:
        assert "GPU checks skipped" in out


@pytest.mark.slow
def test_memory_cleanup_script_passes_on_a_small_sweep(tmp_path):
    sweep_file = tmp_path / "memtest.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "memtest-small", "program": "examples/demo_mlp.py", "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"batch_size": {"values": [64, 32]}, "hidden": {"value": 16},
                       "epochs": {"value": 2}},
        "isolation": {"timeout_s": 120, "stop": {"grace_s": 5}}}))
    proc = subprocess.run(["./test_memory_cleanup.sh", str(sweep_file)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("PASS")
    assert proc.stdout.count("finished") >= 2 and "host MB" in proc.stdout


def test_memory_cleanup_script_without_its_sweep_file_is_exit_2(tmp_path):
    proc = subprocess.run(["./test_memory_cleanup.sh", str(tmp_path / "nope.yaml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no such sweep file" in proc.stderr


def record(run, status="finished", clean=True, **extra):
    """A trial as sweepcheck reads it: its sweep.yaml row with its memory.yaml."""
    trial = TrialRecord(
        run=run, params={"b": 1}, status=TrialStatus(status), exit_code=0, signal=None,
        started="", ended="", duration_s=1.0, metric=MetricSummary(best=0.5),
        gpu=GpuRecord(peak_tree_mb=None, residual_mb=300.0 if not clean else 0.0),
        host=HostRecord(peak_rss_mb=100.0), cleanup=CleanupRecord(wait_s=1.0, clean=clean),
        **extra)
    return TrialRow(run, trial.params, trial.status, trial)


def sweep(state):
    header = SweepHeader(id="s", name=None, config={}, method="grid", metric=None,
                         started="", state=SweepState(state))
    return SweepData("unused", header, [])


SWEEP = sweep("finished")


def test_a_clean_sweep_has_no_problems():
    records = [record("a"), record("b", status="stopped_early")]
    assert problems(SWEEP, records, replay([]), set()) == []
    assert "a" in peak_table(records, "loss")


@pytest.mark.parametrize("records, journal, live, expected", [
    ([record("a", clean=False)], [], set(), "a: cleanup not clean (residual 300.0 MB"),
    ([record("a", status="failed", error="Traceback\nValueError: boom")], [], set(),
     "a: status failed (ValueError: boom)"),
    ([TrialRow("a")], [], set(), "a: no memory.yaml"),
    ([record("a", status="oom")], [], set(), "a: status oom"),
    ([record("a")], [{"event": "start", "run": "a", "token": "t1"}], {"t1"},
     "a: a process of this trial is still running"),
])
def test_each_problem_is_named(records, journal, live, expected):
    found = problems(SWEEP, records, replay(journal), live)
    assert any(line.startswith(expected) for line in found), found


def test_an_oom_that_was_retried_is_fine_and_an_interrupted_sweep_is_not():
    journal = [{"event": "start", "run": "b", "retry_of": "a"}]
    assert problems(SWEEP, [record("a", status="oom"), record("b")], replay(journal),
                    set()) == []
    assert problems(sweep("interrupted"), [record("a")], replay([]), set()) == [
        "sweep state is 'interrupted', not 'finished'"]
