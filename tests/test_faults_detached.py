"""The fault suite's detachments: processes that leave a trial in ways its token cannot show.

Each fault runs through tools/sweep.py for real. The daemons they leave exec with an empty or
scrubbed environment (no ``GPUSWEEP_TRIAL_TOKEN``) within milliseconds, so neither the token
scan nor the 10 Hz monitor can see them: only the launcher, a subreaper, holds them (and,
where the machine delegates cgroup v2, the trial's cgroup). Every test asserts that no
process is left, daemons included (found by their argv, whatever their environment).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import (
    ROOT,
    fault,
    journal_tokens,
    processes_with_token,
    wait_until_no_process,
)

pytestmark = pytest.mark.slow

HOWS = ["setsid", "closefds", "helper", "pgrp"]


def sweep(program, args=(), values=(1,), **isolation):
    isolation.setdefault("stop", {"grace_s": 1})
    return {
        "program": program,
        "command": ["${env}", "${interpreter}", "${program}", *args, "${args}"],
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": list(values)}},
        "isolation": isolation,
    }


def daemons_under(root: Path) -> list[int]:
    """Live lingering daemons whose pid file is under ``root`` (argv: daemon, pidfile, MB)."""
    found = []
    for proc in psutil.process_iter():
        try:
            argv = proc.cmdline()
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if any(a.endswith("lingering_daemon.py") for a in argv) and \
                any(a.startswith(str(root)) for a in argv):
            found.append(proc.pid)
    return found


def nothing_left(result, root):
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []
    assert daemons_under(root) == []


@pytest.mark.parametrize("containment", ["auto", "subreaper"])
@pytest.mark.parametrize("how", HOWS)
def test_a_detached_daemon_is_ended_and_counted(how, containment, write_sweep, run_sweep,
                                                tmp_path):
    config = sweep(fault("detach.py"), [f"--how={how}"], containment=containment)
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0, result.proc.stderr
    (record,) = result.memories()
    assert record["status"] == "finished", record["error"]
    assert record["cleanup"]["escapees_killed"] == 1
    assert record["cleanup"]["processes_killed"] == 1 and record["cleanup"]["clean"]
    # The daemon sat under the trial's launcher until the stop: its memory was the trial's.
    assert record["host"]["peak_rss_mb"] >= 150
    assert record["containment"] in ("cgroup", "subreaper")
    if containment == "subreaper":
        assert record["containment"] == "subreaper"
    daemon = int((result.sweep_dir / record["run"] / "daemon.pid").read_text())
    assert not psutil.pid_exists(daemon) or \
        psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
    nothing_left(result, tmp_path)


def test_each_slot_gets_its_own_orphans(write_sweep, run_sweep, tmp_path):
    config = sweep(fault("detach.py"), ["--how=setsid", "--mb=20", "--hold=1"], [1, 2, 3])
    result = run_sweep(write_sweep(config), "--slots", "3")
    records = result.memories()
    assert [r["status"] for r in records] == ["finished"] * 3
    assert len({r["slot"] for r in records}) == 3  # they ran side by side
    assert [r["cleanup"]["escapees_killed"] for r in records] == [1, 1, 1]
    nothing_left(result, tmp_path)


def test_main_dead_and_workers_blocked_is_stalled(write_sweep, run_sweep, tmp_path):
    config = sweep(fault("dead_main.py"), stall_s=2)
    result = run_sweep(write_sweep(config))
    (record,) = result.memories()
    assert record["status"] == "stalled" and "isolation.stall_s" in record["reason"]
    assert record["cleanup"]["processes_killed"] >= 3  # the main and its two workers
    log = (result.sweep_dir / record["run"] / "output.log").read_text()
    assert "RuntimeError: the main process failed" in log
    assert "most recent call first" in log  # the stacks were dumped before the stop
    nothing_left(result, tmp_path)


def test_a_killed_launcher_still_has_its_tree_ended(write_sweep, run_sweep, tmp_path):
    config = sweep(fault("kill_launcher.py"))
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0, result.proc.stderr
    (record,) = result.memories()
    assert record["status"] == "failed" and record["exit_code"] is None  # unknown, not 0
    assert "launcher" in record["reason"] and "unknown" in record["reason"]
    assert record["cleanup"]["processes_killed"] == 1  # the trial, found by its group
    nothing_left(result, tmp_path)


def test_sigkill_of_the_orchestrator_ends_every_trial_tree(write_sweep, tmp_path):
    """Three slots, each trial ignoring SIGTERM and holding a detached daemon: after the
    orchestrator's SIGKILL, each launcher ends its tree within the grace period."""
    grace_s = 1
    config = sweep(fault("detach.py"), ["--how=setsid", "--mb=20", "--hold=120"], [1, 2, 3],
                   stop={"grace_s": grace_s})
    sweep_file = write_sweep(config)
    log_dir = tmp_path / "log"
    command = [sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
               "--log-dir", str(log_dir), "--quiet", "--slots", "3"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(log_dir.glob("*/*/daemon.pid"))) < 3:
            time.sleep(0.05)
        assert len(list(log_dir.glob("*/*/daemon.pid"))) == 3
        assert len(daemons_under(tmp_path)) == 3
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (sweep_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    tokens = journal_tokens(sweep_dir)
    # The bound is generous (grace_s, the launchers' 5 s after SIGKILL, a loaded machine);
    # what is asserted is that nothing is left, not how fast.
    assert wait_until_no_process(tokens, grace_s + 20) == []
    assert daemons_under(tmp_path) == []  # --resume then records them killed (test_slots)


def test_the_trial_sees_its_own_argv_env_cwd_and_streams(write_sweep, run_sweep, tmp_path):
    """What the trial sees through its launcher: the same argv, environment, working
    directory and standard streams; it leads its own process group and session."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, os, sys\n"
        "fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
        "print(json.dumps({'argv': sys.argv, 'cwd': os.getcwd(), 'fds': fds,\n"
        "    'stdin': os.readlink('/proc/self/fd/0'), 'pgid': os.getpgid(0),\n"
        "    'sid': os.getsid(0), 'pid': os.getpid(),\n"
        "    'env': open('/proc/self/environ', 'rb').read().decode()}))\n")
    config = sweep(str(probe))
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0, result.proc.stderr
    (trial_dir,) = [p for p in (tmp_path / "log").glob("*/*") if (p / "output.log").exists()]
    seen = json.loads((trial_dir / "output.log").read_text().splitlines()[-1])
    assert seen["argv"] == [str(probe), "--x=1"]
    assert seen["cwd"] == str(ROOT)
    assert seen["fds"][:3] == [0, 1, 2] and len(seen["fds"]) <= 4  # + the one listdir opened
    assert seen["stdin"] == "/dev/null"
    assert seen["pgid"] == seen["pid"] == seen["sid"]  # it leads its own group and session
    trial_env = dict(item.split("=", 1) for item in seen["env"].split("\0") if item)
    assert trial_env["GPUSWEEP_TRIAL_DIR"] == str(trial_dir)
    assert trial_env["GPUSWEEP_TRIAL_TOKEN"] in journal_tokens(result.sweep_dir)
    assert trial_env["PATH"] == os.environ["PATH"]
