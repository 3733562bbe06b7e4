"""Regressions found in review: one polite signal, resume never kills strangers, a skipped
trial does not end the sweep, relative log dirs, and a loop that sleeps without pidfds."""

import errno
import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from conftest import ROOT

from gpusweep import slots
from gpusweep.cleanup import end_tree
from gpusweep.config import parse_sweep
from gpusweep.recorder import SweepRecorder
from gpusweep.records.journal import StartEntry

SLOW_FINALLY = textwrap.dedent("""
    import sys, time
    from gpusweep import trial
    with trial.session():
        try:
            print("ready", flush=True)  # inside the try: a SIGTERM now must reach the finally
            time.sleep(30)
        finally:
            time.sleep(0.5)  # a cleanup that takes a while, like run.finish()
            open(sys.argv[1], "w").write("done")
""")


def test_the_trial_cleanup_is_not_cut_short_by_a_second_sigterm(tmp_path):
    """Only a second SIGTERM may cut the cleanup short here, never the grace period running
    out: the grace is far longer than the cleanup takes even on a loaded machine (a fixed
    5 s once let SIGKILL end a starved trial before its finally), and end_tree returns as
    soon as the tree is gone, so a long grace costs nothing."""
    for attempt in range(5):
        marker = tmp_path / f"done-{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", SLOW_FINALLY, str(marker)],
                                start_new_session=True, stdout=subprocess.PIPE, text=True,
                                cwd=ROOT)
        try:
            assert proc.stdout.readline().strip() == "ready"
            result = end_tree(proc.pid, None, (), grace_s=120)
            returncode = proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.stdout.close()
        assert marker.exists(), f"cleanup interrupted on attempt {attempt}"
        assert result.processes_killed == 1
        assert returncode == 128 + signal.SIGTERM  # it left on the SIGTERM, not a SIGKILL


def test_resume_does_not_kill_a_stranger_that_got_the_old_process_group(tmp_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                start_new_session=True)
    try:
        spec = parse_sweep({"method": "grid", "command": ["true"],
                            "parameters": {"x": {"values": [1]}}}, "s.yaml")
        recorder = SweepRecorder(str(tmp_path), "abc", spec)
        recorder.prepare(resume=False)
        entry = StartEntry(run="r1", params={"x": 1}, token="dead-token", pgid=stranger.pid,
                           t=time.time())
        end = recorder.end_orphan(entry, grace_s=1)
        record, ended = recorder.orphan_ended(entry, end, []), set(end.ended_pids)
        assert record.status.value == "killed" and ended == set()
        assert stranger.poll() is None  # still running
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.slow
def test_a_skipped_trial_in_the_middle_of_a_grid_does_not_end_the_sweep(write_sweep,
                                                                         run_sweep):
    config = {
        "program": "tests/programs/ballast.py", "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"batch_size": {"values": [8, 16, 32, 4096, 64, 24]},
                       "hidden": {"value": 128}, "epochs": {"value": 1},
                       "sleep": {"value": 0.05}},
        "isolation": {"fit": {"features": ["batch_size"], "policy": "skip",
                              "budget_mb": 300}},
    }
    result = run_sweep(write_sweep(config))
    statuses = {r["params"]["batch_size"]: r["status"] for r in result.sweep["trials"]}
    assert statuses == {8: "finished", 16: "finished", 32: "finished",
                        4096: "skipped_no_fit", 64: "finished", 24: "finished"}


@pytest.mark.slow
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


def test_without_pidfds_the_loop_still_sleeps(monkeypatch):
    def no_pidfd(pid):
        raise OSError(errno.ENOSYS, "Function not implemented")

    calls = []
    monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
    monkeypatch.setattr(select, "select", lambda r, w, x, t: calls.append((r, t)) or ([], [], []))
    slots.wait_for_exit([os.getpid()], 0.05)
    assert calls == [([], 0.05)]
