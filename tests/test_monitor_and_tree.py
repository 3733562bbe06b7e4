"""The monitor and the tree stop on real processes (no GPU: the NullDevice)."""

import os
import subprocess
import sys
import textwrap
import time

import psutil

from gpusweep.cleanup import end_tree, find_trial_processes
from gpusweep.device import NullDevice
from gpusweep.monitor import Monitor

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


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_monitor_sums_the_tree_and_remembers_every_process(tmp_path):
    proc = start_tree()
    csv = tmp_path / "memory.csv"
    monitor = Monitor(proc.pid, NullDevice(), hz=20, csv_path=str(csv)).start()
    try:
        assert wait_for(lambda: monitor.sample().processes == 2)
        assert wait_for(lambda: monitor.sample().rss_mb > 50)
    finally:
        end_tree(proc.pid, None, monitor.seen, grace_s=2)
        proc.wait()
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
    proc.wait()
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
        proc.wait()


def test_a_reused_pid_is_not_taken_for_a_seen_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wrong_create_time = psutil.Process(proc.pid).create_time() - 100.0
        assert find_trial_processes(None, None, [(proc.pid, wrong_create_time)]) == []
    finally:
        proc.kill()
        proc.wait()
