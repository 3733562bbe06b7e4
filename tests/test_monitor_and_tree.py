"""The monitor, the wait for a trial's exit and the tree stop, on real processes (no GPU: the
NullDevice)."""

import errno
import os
import select
import subprocess
import sys
import textwrap

import psutil
from conftest import wait_for

from gpusweep import slots
from gpusweep.cleanup import end_tree, find_trial_processes
from gpusweep.gpu.device import NullDevice
from gpusweep.process.monitor import Monitor, trial_pids
from gpusweep.process.proctree import is_wandb_service

# A parent that starts a child; the child allocates 50 MB and both sleep.
TREE = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c",
        "import time; b = bytearray(50 * 1024 * 1024); time.sleep(60)"])
    time.sleep(60)
""")


def start_tree(env=None):
    return subprocess.Popen([sys.executable, "-c", TREE], start_new_session=True,
                            env=env or dict(os.environ))


def test_monitor_sums_the_tree_and_remembers_every_process(tmp_path):
    proc = start_tree()
    csv = tmp_path / "memory.csv"
    monitor = Monitor(proc.pid, NullDevice(), hz=20, csv_path=str(csv)).start()
    try:
        assert wait_for(lambda: monitor.sample().processes == 2)
        assert wait_for(lambda: monitor.sample().rss_mb > 50)
    finally:
        end_tree(proc.pid, None, monitor.seen, grace_s=2)
        proc.wait(timeout=30)
        monitor.stop()
    assert len(monitor.seen) == 2
    assert monitor.peaks.rss_mb > 50 and monitor.peaks.gpu_used_mb is None
    rows = csv.read_text().splitlines()
    assert rows[0] == "t,rss_mb,gpu_used_mb,gpu_tree_mb" and len(rows) > 2


def test_end_tree_stops_parent_and_child():
    proc = start_tree()
    assert wait_for(lambda: len(psutil.Process(proc.pid).children()) == 1)
    child = psutil.Process(proc.pid).children()[0]
    result = end_tree(proc.pid, None, (), grace_s=2)
    proc.wait(timeout=30)
    assert result.processes_killed == 2 and result.escapees_killed == 0
    assert result.leftover == ()
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_token_finds_a_process_in_another_session():
    env = dict(os.environ, GPUSWEEP_TRIAL_TOKEN="tok-123")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True, env=env)
    try:
        found = [p.pid for p in find_trial_processes(None, "tok-123")]
        assert found == [proc.pid]
        result = end_tree(None, "tok-123", (), grace_s=2)
        assert result.escapees_killed == 1 and result.processes_killed == 1
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_reused_pid_is_not_taken_for_a_seen_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wrong_create_time = psutil.Process(proc.pid).create_time() - 100.0
        assert find_trial_processes(None, None, [(proc.pid, wrong_create_time)]) == []
    finally:
        proc.kill()
        proc.wait(timeout=30)


# A trial whose child runs as wandb's service (argv[0] ends in wandb-core, like the real one
# started by wandb.init) holding 80 MB, with a child of its own (like wandb-symon).
SERVICE_TREE = textwrap.dedent("""
    import subprocess, sys, time
    service = subprocess.Popen(
        ["/opt/wandb/bin/wandb-core", "-c",
         "import subprocess, sys, time; b = bytearray(80 * 1024 * 1024); "
         f"subprocess.Popen([{sys.executable!r}, '-c', 'import time; time.sleep(60)']); "
         "time.sleep(60)"],
        executable=sys.executable)
    time.sleep(60)
""")


def test_monitor_keeps_wandb_service_out_of_the_trial_figure():
    proc = subprocess.Popen([sys.executable, "-c", SERVICE_TREE], start_new_session=True)
    monitor = Monitor(proc.pid, NullDevice(), hz=20, csv_path=None).start()
    try:
        assert wait_for(lambda: monitor.sample().processes == 3)
        assert wait_for(lambda: monitor.sample().rss_mb > 80)
        sample = monitor.sample()
    finally:
        end_tree(proc.pid, None, monitor.seen, grace_s=2)
        proc.wait(timeout=30)
        monitor.stop()
    assert sample.rss_mb - sample.rss_trial_mb > 80  # the service and its child left out
    assert 0 < sample.rss_trial_mb < 80  # the trial's own process is counted
    peaks = monitor.peaks
    assert peaks.rss_trial_mb is not None and peaks.rss_mb - peaks.rss_trial_mb > 80


def test_a_process_counts_for_the_trial_from_its_second_sample():
    proc = start_tree()
    try:
        assert wait_for(lambda: len(psutil.Process(proc.pid).children()) == 1)
        child = psutil.Process(proc.pid).children()[0]
        assert wait_for(lambda: child.memory_info().rss > 50 * 2**20)
        monitor = Monitor(proc.pid, NullDevice(), hz=20, csv_path=None)  # not started
        first, second = monitor.sample(), monitor.sample()
    finally:
        end_tree(proc.pid, None, (), grace_s=2)
        proc.wait(timeout=30)
    assert first.processes == 2 and first.rss_mb - first.rss_trial_mb > 50  # new: left out
    assert second.rss_trial_mb == second.rss_mb  # seen before: counted


def test_wandb_service_is_named_by_command_name_or_argv():
    assert is_wandb_service("wandb-core", [])
    assert is_wandb_service("wandb-symon", ["/venv/wandb/bin/wandb-symon", "--parent-pid", "9"])
    assert is_wandb_service("python3", ["/x/wandb/bin/wandb-core", "--pid", "1"])
    assert is_wandb_service("python3", ["/usr/bin/python3", "-m", "wandb", "service"])
    assert not is_wandb_service("python3", ["python", "train.py", "--wandb", "x"])
    assert not is_wandb_service("python3", ["python", "-m", "wandb", "sync", "dir"])


def test_trial_pids_leave_out_the_service_subtree():
    parents = {10: 1, 11: 10, 12: 10, 13: 12, 14: 13}  # 12 is the service, 13 and 14 below it
    assert trial_pids(parents, {12}) == [10, 11]
    assert trial_pids(parents, set()) == [10, 11, 12, 13, 14]


def test_without_pidfds_the_loop_still_sleeps(monkeypatch):
    def no_pidfd(pid):
        raise OSError(errno.ENOSYS, "Function not implemented")

    calls = []
    monkeypatch.setattr(os, "pidfd_open", no_pidfd, raising=False)
    monkeypatch.setattr(select, "select", lambda r, w, x, t: calls.append((r, t)) or ([], [], []))
    slots.wait_for_exit([os.getpid()], 0.05)
    assert calls == [([], 0.05)]
