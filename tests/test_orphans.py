"""What ``--resume`` records of a trial that a dead orchestrator left running: ``killed``,
with the verdict of the GPU wait that followed its end, and unknown (null, with the reason)
where no wait measured it: never clean by default."""

import contextlib
import os
import subprocess
import sys
import time

from fakes import FakeDevice

from gpusweep.cleanup import EndResult, WaitResult
from gpusweep.config import parse_sweep
from gpusweep.gpu.device import NullDevice
from gpusweep.recorder import NOT_WAITED, SweepRecorder, combined_wait, orphan_cleanup
from gpusweep.records.journal import StartEntry
from gpusweep.records.reader import read_journal, read_trial
from gpusweep.resume import resume as resume_sweep
from gpusweep.session import SweepOptions, SweepSession

ENDED = EndResult(processes_killed=1, escapees_killed=0, leftover=(), ended_pids=(42,))


def wait(clean, reason=None, wait_s=1.0):
    return WaitResult(wait_s, clean, 1000.0, 0.0, (), reason)


def test_an_orphan_no_wait_measured_is_unknown_with_the_reason():
    cleanup = orphan_cleanup(ENDED, [])
    assert cleanup.clean is None and cleanup.reason == NOT_WAITED
    assert cleanup.processes_killed == 1 and cleanup.wait_s == 0.0


def test_an_orphan_gets_the_verdict_of_the_wait():
    assert orphan_cleanup(ENDED, [wait(True)]).clean is True
    dirty = orphan_cleanup(ENDED, [wait(False, "processes of the trial still hold GPU memory")])
    assert dirty.clean is False and "still hold" in dirty.reason and dirty.wait_s == 1.0
    unknown = orphan_cleanup(ENDED, [wait(None, "no baseline")])
    assert unknown.clean is None and unknown.reason == "no baseline"


def test_a_process_that_survived_sigkill_is_dirty_whatever_the_wait_says():
    survived = EndResult(1, 0, leftover=(7,), ended_pids=(42,))
    cleanup = orphan_cleanup(survived, [wait(True)])
    assert cleanup.clean is False and "survived SIGKILL: 7" in cleanup.reason


def test_waits_of_several_gpus_agree_or_the_orphan_is_unknown():
    assert combined_wait([wait(True), wait(True)]) == (True, None)
    assert combined_wait([wait(False, "a"), wait(False, "a")]) == (False, "a")
    clean, reason = combined_wait([wait(True), wait(False, "held")])
    assert clean is None and "which GPU" in reason and "held" in reason
    assert orphan_cleanup(ENDED, [wait(True, wait_s=1.0), wait(True, wait_s=2.0)]).wait_s == 3.0


def orphaned_sweep(tmp_path, token):
    """A sweep directory whose journal has a trial that started and never ended."""
    spec = parse_sweep({"method": "grid", "command": ["true"],
                        "parameters": {"x": {"values": [1]}},
                        "isolation": {"stop": {"grace_s": 1},
                                      "wait": {"max_s": 0.5, "poll_s": 0.05}}}, "s.yaml")
    recorder = SweepRecorder(str(tmp_path), "abc", spec)
    recorder.prepare(resume=False)
    recorder.writer.started(StartEntry(run="r1", params={"x": 1}, token=token, t=time.time()))
    return spec, recorder.dir


def resume(tmp_path, spec, device):
    """The resume step alone: end the orphans, wait, record them."""
    session = SweepSession(spec, SweepOptions(log_dir=str(tmp_path), resume="abc"), [device])
    resume_sweep(session)
    return session


@contextlib.contextmanager
def sleeping_orphan(token):
    """A process left by a dead orchestrator's trial: the trial's token, its own session."""
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              env={**os.environ, "GPUSWEEP_TRIAL_TOKEN": token},
                              start_new_session=True)
    try:
        yield orphan
    finally:
        orphan.kill()
        orphan.wait(timeout=10)


def test_resume_records_the_gpu_waits_verdict_for_the_orphan(tmp_path):
    token = f"orphan-{os.getpid()}-gpu"
    with sleeping_orphan(token) as orphan:
        spec, sweep_dir = orphaned_sweep(tmp_path, token)
        device = FakeDevice([1000.0], holders=[{}])  # FAKE GPU
        resume(tmp_path, spec, device)
        assert orphan.wait(timeout=30) is not None  # ended by its token
        record = read_trial(sweep_dir, "r1")
        assert record.status.value == "killed" and record.cleanup.processes_killed == 1
        # No baseline exists at --resume: the wait itself says it cannot prove the GPU
        # back, and that is what the record says (not clean: true, not "not measured").
        assert device.reads > 0
        assert record.cleanup.clean is None and "no baseline" in record.cleanup.reason
        assert read_journal(sweep_dir).unended == []


def test_resume_on_a_machine_without_gpu_records_what_its_wait_said(tmp_path):
    token = f"orphan-{os.getpid()}-cpu"
    with sleeping_orphan(token):
        spec, sweep_dir = orphaned_sweep(tmp_path, token)
        resume(tmp_path, spec, NullDevice())
        record = read_trial(sweep_dir, "r1")
        assert record.cleanup.clean is True and record.cleanup.reason is None


def test_an_orphan_with_nothing_left_to_end_is_unknown_not_clean(tmp_path):
    spec, sweep_dir = orphaned_sweep(tmp_path, "nobody-carries-this-token")
    device = FakeDevice([1000.0], holders=[{}])  # FAKE GPU: never read, nothing to wait for
    resume(tmp_path, spec, device)
    record = read_trial(sweep_dir, "r1")
    assert record.status.value == "killed" and device.reads == 0
    assert record.cleanup.clean is None and record.cleanup.reason == NOT_WAITED


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
        stranger.wait(timeout=10)
