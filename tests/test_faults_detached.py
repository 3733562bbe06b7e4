"""The fault suite's detachments: processes that leave a trial in ways its token cannot show.

Each fault runs through tools/sweep.py for real. The daemons they leave exec with an empty or
scrubbed environment (no ``GPUSWEEP_TRIAL_TOKEN``) within milliseconds, so neither the token
scan nor the 10 Hz monitor can see them: only the launcher, a subreaper, holds them (and,
where the machine delegates cgroup v2, the trial's cgroup). Every test asserts that no
process is left, daemons included (found by their argv, whatever their environment), and the
daemons say what they had (``daemon.pid.json``), so a test also fails if a fault stops
hiding from the token scan. The same faults run without the subreaper show what the token
scan alone leaves behind (the "before" column of README's fault table).
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
    fault_sweep,
    journal_tokens,
    processes_with_token,
    wait_until_no_process,
)

from gpusweep.cleanup import end_tree
from gpusweep.process.trialprocess import TrialProcess

sys.path.insert(0, str(ROOT / "tests" / "faults"))
from detach import unshare_argv  # noqa: E402

pytestmark = pytest.mark.slow

HOWS = ["setsid", "closefds", "helper", "pgrp"]


def sweep(program, args=(), values=(1,), **isolation):
    return fault_sweep(program, args, {"x": {"values": list(values)}}, **isolation)


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


@pytest.fixture(autouse=True)
def no_daemon_outlives_its_test(tmp_path):
    """A test that fails must not leave its daemons (SIGTERM-proof, 150 MB) on the machine."""
    yield
    for pid in daemons_under(tmp_path):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def nothing_left(result, root):
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []
    assert daemons_under(root) == []


def hidden_from_the_token_scan(trial_dir: Path, how: str) -> dict:
    """What the daemon had: no token, and neither the trial's process group nor (but for
    ``pgrp``) its session. Returns the daemon's ids."""
    daemon = json.loads((trial_dir / "daemon.pid.json").read_text())
    trial = json.loads((trial_dir / "trial.json").read_text())
    assert not daemon["token"], daemon
    assert daemon["pgid"] != trial["pgid"]
    if how != "pgrp":
        assert daemon["sid"] != trial["sid"]
    return daemon


def adopter(trial_dir: Path, how: str) -> tuple[int, int]:
    """(who adopted the daemon once its parents exited, the trial's own parent: its
    launcher); in a PID namespace the daemon's parent is ``unshare``, which was adopted."""
    trial = json.loads((trial_dir / "trial.json").read_text())
    return trial["daemon_ancestors"][1 if how == "pidns" else 0], trial["parent"]


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
    trial_dir = result.sweep_dir / record["run"]
    daemon = hidden_from_the_token_scan(trial_dir, how)["pid"]
    adopted_by, launcher = adopter(trial_dir, how)
    assert adopted_by == launcher  # the subreaper, not init
    assert not psutil.pid_exists(daemon) or \
        psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
    nothing_left(result, tmp_path)


def unshare_refused() -> str | None:
    """Why a daemon cannot get a PID namespace of its own here, or None."""
    try:
        probe = subprocess.run([*unshare_argv(), "true"], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare: {exc}"
    return None if probe.returncode == 0 else f"unshare: {probe.stderr.strip()}"


@pytest.mark.skipif(unshare_refused() is not None, reason=str(unshare_refused()))
@pytest.mark.parametrize("containment", ["auto", "subreaper"])
def test_a_daemon_in_a_pid_namespace_of_its_own_is_ended(containment, write_sweep, run_sweep,
                                                         tmp_path):
    """``unshare --pid --fork``: the daemon is pid 1 of its namespace, yet it stays below the
    launcher (so do ``unshare`` itself and whatever the daemon would start in there)."""
    config = sweep(fault("detach.py"), ["--how=pidns"], containment=containment)
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0, result.proc.stderr
    (record,) = result.memories()
    assert record["status"] == "finished", record["error"]
    trial_dir = result.sweep_dir / record["run"]
    daemon = hidden_from_the_token_scan(trial_dir, "pidns")["pid"]
    assert daemon != 1  # its pid here, not the one its namespace gives it
    adopted_by, launcher = adopter(trial_dir, "pidns")
    assert adopted_by == launcher
    assert not psutil.pid_exists(daemon) or \
        psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
    # unshare(1), which waits for its child, and the daemon: both outside the trial's group
    assert record["cleanup"]["escapees_killed"] == 2 == record["cleanup"]["processes_killed"]
    assert record["host"]["peak_rss_mb"] >= 150 and record["cleanup"]["clean"]
    nothing_left(result, tmp_path)


NO_SUBREAPER = """import sys
sys.path.insert(0, {gpusweep!r})
import reaper
reaper.PR_SET_CHILD_SUBREAPER = -1  # prctl refuses it (EINVAL): the launcher is no subreaper
reaper.main(sys.argv[1:])
"""


@pytest.mark.parametrize("how", HOWS)
def test_without_the_subreaper_the_token_scan_misses_the_daemon(how, tmp_path, monkeypatch):
    """README's "before" column, reproduced: the same fault through a launcher that could not
    become a subreaper (and no cgroup). The daemon goes to init (or whatever subreaper is
    above us), and the second net alone (the trial's group, its token) does not find it.
    The monitor is left out here: it could see a daemon only in the instant between its
    fork and its parent's exit."""
    wrapper = tmp_path / "reaper_without_subreaper.py"
    wrapper.write_text(NO_SUBREAPER.format(gpusweep=str(ROOT / "gpusweep" / "process")))
    monkeypatch.setattr("gpusweep.process.trialprocess.REAPER", str(wrapper))
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    token = f"tok-before-{how}-{os.getpid()}"
    env = dict(os.environ, GPUSWEEP_TRIAL_DIR=str(trial_dir), GPUSWEEP_TRIAL_TOKEN=token,
               GPUSWEEP_EVENTS=str(trial_dir / "events.jsonl"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    with open(trial_dir / "output.log", "ab") as out:
        process = TrialProcess.launch([sys.executable, str(ROOT / fault("detach.py")),
                                       f"--how={how}", "--mb=20"], env, out, grace_s=0.5)
    try:
        assert any("could not become a subreaper" in note for note in process.notes)
        deadline = time.monotonic() + 60
        while process.poll(0.2) is None and time.monotonic() < deadline:
            pass
        assert process.returncode == 0, (trial_dir / "output.log").read_text()
        daemon = hidden_from_the_token_scan(trial_dir, how)["pid"]
        adopted_by, launcher = adopter(trial_dir, how)
        assert launcher == process.launcher_pid and adopted_by != launcher  # init took it
        result = end_tree(process.pid, token, (), 0.5, launcher=process)
        process.close()
        assert psutil.Process(daemon).status() != psutil.STATUS_ZOMBIE  # it survived
        assert (result.processes_killed, result.escapees_killed) == (0, 0)
    finally:
        process.stop(0.5)
        process.close()


SERVICE = """import json, os, subprocess, sys, time
spool, daemon = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    for name in os.listdir(spool):
        if name.endswith(".json"):
            request = json.load(open(os.path.join(spool, name)))
            os.unlink(os.path.join(spool, name))
            subprocess.Popen([sys.executable, daemon, request["pidfile"], "20"],
                             env=request["environ"], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    time.sleep(0.02)
"""


def test_the_token_scan_ends_what_a_service_started_outside_the_tree(write_sweep, run_sweep,
                                                                      tmp_path):
    """The second net: a daemon started on the trial's behalf by a service outside its tree
    (not its descendant, not in its cgroup) but with its environment is found by its token."""
    spool = tmp_path / "spool"
    spool.mkdir()
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(spool),
                                str(ROOT / fault("lingering_daemon.py"))])
    try:
        config = sweep(fault("ask_service.py"), [f"--spool={spool}"])
        result = run_sweep(write_sweep(config))
    finally:
        service.kill()
        service.wait(timeout=30)
    assert result.returncode == 0, result.proc.stderr
    (record,) = result.memories()
    assert record["status"] == "finished", record["error"]
    trial_dir = result.sweep_dir / record["run"]
    daemon = json.loads((trial_dir / "daemon.pid.json").read_text())
    assert daemon["token"] and daemon["ppid"] == service.pid  # the service's, not the trial's
    assert record["cleanup"]["escapees_killed"] == 1 == record["cleanup"]["processes_killed"]
    assert not psutil.pid_exists(daemon["pid"]) or \
        psutil.Process(daemon["pid"]).status() == psutil.STATUS_ZOMBIE
    nothing_left(result, tmp_path)


def test_each_slot_gets_its_own_orphans(write_sweep, run_sweep, tmp_path):
    config = sweep(fault("detach.py"), ["--how=setsid", "--mb=20", "--hold=1"], [1, 2, 3])
    result = run_sweep(write_sweep(config), "--slots", "3")
    records = result.memories()
    assert [r["status"] for r in records] == ["finished"] * 3
    assert len({r["slot"] for r in records}) == 3  # they ran side by side
    assert [r["cleanup"]["escapees_killed"] for r in records] == [1, 1, 1]
    for record in records:  # each daemon was adopted by its own trial's launcher
        adopted_by, launcher = adopter(result.sweep_dir / record["run"], "setsid")
        assert adopted_by == launcher
    assert len({adopter(result.sweep_dir / r["run"], "setsid")[1] for r in records}) == 3
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


@pytest.mark.parametrize("containment", ["auto", "subreaper"])
def test_a_killed_launcher_s_daemon_is_still_ended(containment, write_sweep, run_sweep,
                                                   tmp_path):
    """The launcher SIGKILLed after the monitor saw its daemon: the orchestrator ends the
    trial (its group) and the daemon (no token, adopted by init) from what it saw, or from
    the trial's cgroup."""
    config = sweep(fault("kill_launcher.py"), ["--daemon"], containment=containment)
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0, result.proc.stderr
    (record,) = result.memories()
    assert record["status"] == "failed" and record["exit_code"] is None
    daemon = json.loads((result.sweep_dir / record["run"] / "daemon.pid.json").read_text())
    assert not daemon["token"]
    daemon = daemon["pid"]
    assert not psutil.pid_exists(daemon) or \
        psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
    assert (record["cleanup"]["processes_killed"], record["cleanup"]["escapees_killed"]) == (2, 1)
    nothing_left(result, tmp_path)


@pytest.mark.parametrize("containment", ["auto", "subreaper"])
def test_sigkill_of_the_orchestrator_ends_every_trial_tree(containment, write_sweep, tmp_path):
    """Three slots, each trial ignoring SIGTERM and holding a detached daemon: after the
    orchestrator's SIGKILL, each launcher ends its tree within the grace period (by itself:
    with ``subreaper``, no cgroup.kill helps)."""
    grace_s = 1
    config = sweep(fault("detach.py"), ["--how=setsid", "--mb=20", "--hold=120"], [1, 2, 3],
                   stop={"grace_s": grace_s}, containment=containment)
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
