"""The launcher (subreaper), the trial's cgroup, and what the trial sees, on real processes.

cgroup v2 is tested for real where the machine delegates a writable hierarchy (the cgroup
tests skip otherwise); the memory files (``memory.peak``, ``memory.max``, ``memory.events``)
only at their seams, on a directory laid out like cgroupfs, since the dev machines' cgroup v2
has no memory controller.
"""

import errno
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, wait_for

from gpusweep.config import parse_sweep
from gpusweep.display import QuietDisplay
from gpusweep.gpu.device import NullDevice
from gpusweep.isolation import IsolationConfig, StopConfig
from gpusweep.process import cgroup, containment
from gpusweep.process.cgroup import (
    Containment,
    TrialCgroup,
    cgroup2_mount,
    enable_memory,
    own_cgroup,
)
from gpusweep.process.monitor import Monitor
from gpusweep.process.trialprocess import TrialProcess
from gpusweep.records.layout import TrialPaths
from gpusweep.runner import SweepOptions, SweepRunner
from gpusweep.status import TrialStatus

PY = sys.executable
# A trial that double-forks a daemon with an empty environment, prints its pid, sleeps.
DOUBLE_FORK = (
    "import os, sys, time\n"
    "r, w = os.pipe()\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        os.write(w, str(os.getpid()).encode()); os.close(w)\n"
    "        os.execve('/bin/sleep', ['sleep', '60'], {})\n"
    "    os._exit(0)\n"
    "os.close(w); print(os.read(r, 32).decode(), flush=True)\n"
    "time.sleep(60)\n")


def launch(argv, tmp_path, env=None, grace_s=2.0, cgroup_dir=None):
    out = open(tmp_path / "out.log", "ab")  # noqa: SIM115 (the launcher holds it)
    try:
        return TrialProcess.launch(argv, env or dict(os.environ), out, grace_s=grace_s,
                                   cgroup=cgroup_dir)
    finally:
        out.close()


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def finish(process, timeout=30):
    while process.poll(0.5) is None and timeout > 0:
        timeout -= 0.5
    process.stop(2.0)
    process.close()
    return process.returncode


@pytest.mark.parametrize(("code", "expected"), [
    ("pass", 0), ("raise SystemExit(3)", 3),
    ("import os; os.kill(os.getpid(), 11)", -signal.SIGSEGV),
    ("import os; os.kill(os.getpid(), 9)", -signal.SIGKILL),
])
def test_the_exit_status_is_mirrored_exactly(code, expected, tmp_path):
    process = launch([PY, "-c", code], tmp_path)
    assert finish(process) == expected
    assert process.popen.returncode == expected  # the launcher's own, as Popen reads it
    assert process.signalled == {}  # it ended on its own: nothing to stop


def test_the_environment_is_passed_byte_for_byte(tmp_path):
    env = {"LANG": "C", "PATH": os.environ["PATH"], "WITH_EQUALS": "a=b=c", "EMPTY": "",
           "GPUSWEEP_TRIAL_TOKEN": "tok"}
    dump = tmp_path / "environ"
    code = f"open({str(dump)!r}, 'wb').write(open('/proc/self/environ', 'rb').read())"
    assert finish(launch([PY, "-c", code], tmp_path, env=env)) == 0
    got = dict(e.split("=", 1) for e in dump.read_bytes().decode().split("\0") if e)
    assert got == env  # no LC_CTYPE: CPython's C-locale coercion stays in the launcher


def test_an_exec_failure_raises_like_popen(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        launch([str(tmp_path / "missing")], tmp_path)
    assert raised.value.filename == str(tmp_path / "missing")
    script = tmp_path / "not_executable.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        launch([str(script)], tmp_path)


def test_started_from_a_thread_that_ends_the_trial_runs_on_and_sigterm_reaches_it(tmp_path):
    """PR_SET_PDEATHSIG fires when the *thread* that forked the launcher ends: the launcher
    must tell that from the orchestrator's death (its parent process is still there)."""
    flag = tmp_path / "term"
    code = ("import signal, sys, time\n"
            f"def term(*_): open({str(flag)!r}, 'w').write('term'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, term)\n"
            "time.sleep(60)\n")
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("p", launch([PY, "-c", code],
                                                                       tmp_path)))
    thread.start()
    thread.join()
    process = box["p"]
    time.sleep(0.5)  # the parent-death signal, if it were taken for a death, would act now
    assert process.poll() is None and not gone(process.pid)
    assert os.getpgid(process.pid) == process.pid  # the trial leads its own group
    process.stop(5.0)
    assert flag.read_text() == "term" and process.returncode == 0
    assert process.signalled == {process.pid: "group"}
    process.close()


def test_an_orphan_is_held_by_the_launcher_and_ended_at_the_stop(tmp_path):
    process = launch([PY, "-c", DOUBLE_FORK], tmp_path, grace_s=0.5)
    log = tmp_path / "out.log"
    assert wait_for(lambda: log.read_text().strip())
    daemon = int(log.read_text().split()[0])
    assert wait_for(lambda: psutil.Process(daemon).ppid() == process.launcher_pid)
    assert "GPUSWEEP_TRIAL_TOKEN" not in psutil.Process(daemon).environ()
    process.stop(0.5)
    assert gone(daemon) and gone(process.pid)
    assert process.signalled == {process.pid: "group", daemon: "outside"}
    assert process.done and process.leftover == []
    process.close()


def test_the_monitor_sees_the_orphans_but_not_the_launcher(tmp_path):
    process = launch([PY, "-c", DOUBLE_FORK], tmp_path)
    log = tmp_path / "out.log"
    try:
        assert wait_for(lambda: log.read_text().strip())
        daemon = int(log.read_text().split()[0])
        monitor = Monitor(process.pid, NullDevice(), 10, None,
                          launcher_pid=process.launcher_pid)
        sample = monitor.sample()
        pids = {pid for pid, _ in monitor.seen}
        assert pids == {process.pid, daemon} and sample.processes == 2
        assert process.launcher_pid not in pids  # its own RSS is no part of the trial's
    finally:
        process.stop(1.0)
        process.close()


ORCHESTRATOR = """
import os, sys, time
sys.path.insert(0, {root!r})
from gpusweep.process.trialprocess import TrialProcess
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
p = TrialProcess.launch([sys.executable, "-c", code], dict(os.environ), sys.stderr.buffer,
                        grace_s=0.5)
print(p.pid, p.launcher_pid, flush=True)
time.sleep(60)
"""


def test_when_the_orchestrator_dies_the_launcher_ends_the_tree(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    orchestrator = subprocess.Popen([PY, "-c", ORCHESTRATOR.format(root=root)],
                                    stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([orchestrator.stdout], [], [], 30)
        assert ready, "the orchestrator did not start its trial"
        trial, launcher = map(int, orchestrator.stdout.readline().split())
    finally:
        orchestrator.kill()
        orchestrator.wait(timeout=10)
    # The trial ignores SIGTERM: the launcher's SIGKILL after grace_s ends it.
    assert wait_for(lambda: gone(trial) and gone(launcher), timeout=20)


# -- cgroup v2, for real where this machine has it ------------------------------------------

needs_cgroup = pytest.mark.skipif(cgroup.detect().kind != "cgroup",
                                  reason=f"no delegated cgroup v2: {cgroup.detect().note}")


def in_cgroup(pid):
    with open(f"/proc/{pid}/cgroup") as handle:
        return [line[3:].strip() for line in handle if line.startswith("0::")][0]


@needs_cgroup
def test_the_trial_runs_in_its_own_cgroup_and_a_killed_launcher_leaves_nothing(tmp_path):
    """The launcher SIGKILLed: the daemon (no token, never seen) is still in the trial's
    cgroup, which is how the orchestrator finds and ends it; the cgroup is removed."""
    isolation = IsolationConfig(stop=StopConfig(grace_s=0.5))
    paths = TrialPaths(str(tmp_path), f"t{os.getpid()}")
    name = f"test-{os.getpid()}-{time.monotonic_ns()}"
    contained = containment.start([PY, "-c", DOUBLE_FORK], dict(os.environ), paths,
                                  name=name, isolation=isolation)
    group = contained.cgroup
    assert contained.kind == "cgroup" and group is not None
    try:
        log = Path(paths.output_log)
        assert wait_for(lambda: log.read_text().strip())
        daemon = int(log.read_text().split()[0])
        assert in_cgroup(contained.process.pid).endswith("/gpusweep-" + name)
        assert in_cgroup(daemon).endswith("/gpusweep-" + name)
        assert not in_cgroup(contained.process.launcher_pid).endswith(name)  # outside it
        os.kill(contained.process.launcher_pid, signal.SIGKILL)
        assert wait_for(lambda: contained.process.launcher_lost)
        result = contained.end("no-such-token", (), 0.5)
    finally:
        if os.path.isdir(group.path):
            group.remove()
    assert gone(daemon) and gone(contained.process.pid)
    assert result.escapees_killed >= 1 and result.leftover == ()
    assert not os.path.exists(group.path)


@needs_cgroup
def test_without_clone3_the_trial_moves_into_its_cgroup_before_its_exec(tmp_path, monkeypatch):
    """The launcher's fallback where clone3 is refused (seccomp, an old kernel)."""
    wrapper = tmp_path / "reaper_without_clone3.py"
    wrapper.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'gpusweep' / 'process')!r})\n"
        "import os, reaper\n"
        "reaper.SYS_CLONE3 = 1 << 20  # no such system call: ENOSYS\n"
        "fork = os.fork\n"
        f"os.fork = lambda: open({str(tmp_path / 'forked')!r}, 'w').close() or fork()\n"
        "reaper.main(sys.argv[1:])\n")
    monkeypatch.setattr("gpusweep.process.trialprocess.REAPER", str(wrapper))
    group = TrialCgroup.create(cgroup.detect(), f"test-fork-{os.getpid()}-{time.monotonic_ns()}")
    try:
        process = launch(["/bin/sleep", "30"], tmp_path, cgroup_dir=group.path)
        assert group.pids() == [process.pid] and process.notes == []
        assert (tmp_path / "forked").exists()  # the fallback ran, not clone3
        process.stop(1.0)
        process.close()
    finally:
        assert group.remove() == []


@needs_cgroup
def test_with_a_cgroup_the_launcher_ends_what_got_away_from_it(tmp_path, monkeypatch):
    """A launcher that could not become a subreaper (prctl refused): the daemon goes to init,
    out of the launcher's tree, but not out of the trial's cgroup, and the launcher's own
    stop (the one it also makes when the orchestrator dies) ends it there."""
    wrapper = tmp_path / "reaper_without_subreaper.py"
    wrapper.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'gpusweep' / 'process')!r})\n"
        "import reaper\n"
        "reaper.PR_SET_CHILD_SUBREAPER = -1  # EINVAL\n"
        "reaper.main(sys.argv[1:])\n")
    monkeypatch.setattr("gpusweep.process.trialprocess.REAPER", str(wrapper))
    group = TrialCgroup.create(cgroup.detect(), f"test-stray-{os.getpid()}-{time.monotonic_ns()}")
    try:
        process = launch([PY, "-c", DOUBLE_FORK], tmp_path, grace_s=0.5, cgroup_dir=group.path)
        assert any("subreaper" in note for note in process.notes)
        log = tmp_path / "out.log"
        assert wait_for(lambda: log.read_text().strip())
        daemon = int(log.read_text().split()[0])
        assert wait_for(lambda: psutil.Process(daemon).ppid() != process.launcher_pid)
        assert daemon in group.pids()
        process.stop(0.5)
        process.close()
        assert wait_for(lambda: gone(daemon))
        assert process.signalled == {process.pid: "group", daemon: "outside"}
        assert process.leftover == []
    finally:
        assert group.remove() == []


@needs_cgroup
def test_cgroup_kill_ends_everything_in_it_at_once(tmp_path):
    found = cgroup.detect()
    group = TrialCgroup.create(found, f"test-kill-{os.getpid()}-{time.monotonic_ns()}")
    try:
        process = launch([PY, "-c", DOUBLE_FORK], tmp_path, cgroup_dir=group.path)
        assert wait_for(lambda: len(group.pids()) == 2)  # the trial and its daemon
        members = group.pids()
        group.kill()
        assert wait_for(lambda: all(gone(pid) for pid in members))
        assert process.poll(5.0) == -signal.SIGKILL
        process.stop(1.0)
        process.close()
    finally:
        assert group.remove() == []
    assert not os.path.exists(group.path)


# -- the cgroup files at their seams (no memory controller on the dev machines) ------------

def test_mounts_and_own_cgroup_are_parsed():
    hybrid = ("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
              "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n")
    assert cgroup2_mount(hybrid) == "/sys/fs/cgroup/unified"
    assert cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n") == "/sys/fs/cgroup"
    assert cgroup2_mount("proc /proc proc rw 0 0\n") is None
    assert own_cgroup("4:memory:/x\n0::/user.slice/run.scope\n") == "/user.slice/run.scope"
    assert own_cgroup("4:memory:/x\n") is None


def test_a_directory_without_cgroup_kill_is_not_used(tmp_path):
    assert "cgroup.kill" in cgroup.probe(str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # the probe removed its test directory


def test_a_test_cgroup_that_cannot_be_removed_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    """FAKE cgroupfs: mkdir makes the files the kernel would; rmdir fails like a busy cgroup."""
    real_mkdir = os.mkdir

    def mkdir(path, *args):
        real_mkdir(path, *args)
        for name in ("cgroup.kill", "cgroup.procs"):
            Path(path, name).write_text("")

    def rmdir(path):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)

    (tmp_path / "cgroup.procs").write_text("")
    monkeypatch.setattr(cgroup.os, "mkdir", mkdir)
    monkeypatch.setattr(cgroup.os, "rmdir", rmdir)
    assert cgroup.probe(str(tmp_path)) == (f"cannot remove a cgroup in {tmp_path}: "
                                           "Device or resource busy")


def fake_cgroupfs(path, files):
    path.mkdir(exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_memory_files_are_read_and_written_at_their_seam(tmp_path):
    """FAKE cgroupfs: a plain directory with the kernel's file formats."""
    path = fake_cgroupfs(tmp_path / "trial", {
        "memory.peak": "157286400\n", "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n",
        "memory.swap.max": "max\n", "memory.oom.group": "0\n"})
    group = TrialCgroup(str(path), memory=True)
    assert group.peak_mb() == 150.0
    assert group.oom_kills() == 2
    group.set_memory_max(400)
    assert (path / "memory.max").read_text() == str(400 * 2**20)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "memory.oom.group").read_text() == "1"
    without = TrialCgroup(str(path), memory=False)
    assert without.peak_mb() is None and without.oom_kills() is None  # unknown, not 0


def test_the_memory_controller_is_enabled_only_where_cgroup_v2_allows(tmp_path):
    """FAKE cgroupfs, with a writer that fails like the kernel does."""
    enabled = fake_cgroupfs(tmp_path / "a", {"cgroup.subtree_control": "memory pids\n"})
    assert enable_memory(str(enabled)) is None
    absent = fake_cgroupfs(tmp_path / "b", {"cgroup.subtree_control": "",
                                            "cgroup.controllers": "cpu io\n"})
    assert "no memory controller" in enable_memory(str(absent))
    busy = fake_cgroupfs(tmp_path / "c", {"cgroup.subtree_control": "",
                                          "cgroup.controllers": "cpu memory\n"})

    def ebusy(path, text):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)

    assert "holds processes of its own" in enable_memory(str(busy), write=ebusy)
    written = []
    assert enable_memory(str(busy), write=lambda p, t: written.append((p, t))) is None
    assert written == [(str(busy / "cgroup.subtree_control"), "+memory")]


def test_containment_subreaper_never_touches_cgroups():
    chosen = containment.choose(IsolationConfig(containment="subreaper"))
    assert chosen == Containment("subreaper", note="isolation.containment is subreaper")


@needs_cgroup
def test_a_kernel_oom_kill_in_the_trial_cgroup_is_host_oom(tmp_path, monkeypatch):
    """A real trial in a real cgroup; memory.events and memory.peak at their seam (FAKE
    readings: these machines have no memory controller): a SIGKILL with ``oom_kill 1`` in
    the trial's cgroup is the kernel's OOM killer at memory.max."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(TrialCgroup, "oom_kills", lambda self: 1)
    monkeypatch.setattr(TrialCgroup, "peak_mb", lambda self: 123.0)
    config = {"program": "tests/faults/sigkill_self.py", "method": "grid",
              "parameters": {"x": {"values": [1]}},
              "isolation": {"stop": {"grace_s": 1}, "limits": {"rss_mb": 400}}}
    runner = SweepRunner(parse_sweep(config, "oom.yaml"), SweepOptions(log_dir=str(tmp_path)),
                         [NullDevice()], QuietDisplay())
    assert runner.run() == 0
    (record,) = runner.session.records
    assert record.status is TrialStatus.HOST_OOM and record.signal == "SIGKILL"
    assert record.reason == ("the kernel's OOM killer ended 1 process(es) of the trial at its "
                             "cgroup's memory.max (isolation.limits.rss_mb 400 MB)")
    assert record.host.cgroup_peak_mb == 123.0 and record.containment == "cgroup"
