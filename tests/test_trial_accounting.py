"""A trial's accounting, stop rules and record, with plain data (no process, no GPU)."""

from gpusweep.cleanup import EndResult, WaitResult
from gpusweep.events import TrialEvents
from gpusweep.isolation import IsolationConfig, LimitsConfig
from gpusweep.process.monitor import Peaks, Sample
from gpusweep.status import StopReason, TrialStatus
from gpusweep.trialaccount import TrialAccount
from gpusweep.trialrecord import (
    best_metric,
    cleanup_record,
    fixed_wait_peak_mb,
    host_peak_mb,
    outcome,
)
from gpusweep.trialwatch import TrialWatch

PEAKS = Peaks(rss_mb=100.0, gpu_used_mb=None, gpu_tree_mb=None, min_available_mb=8000.0)
CLEAN = WaitResult(wait_s=0.5, clean=True, used_mb=0.0, residual_mb=0.0, holders=())


def decide(returncode, stop=None, text=None, *, oom_kills=None, peaks=PEAKS, errors=(),
           tail=None):
    events = TrialEvents("loss")
    events.errors.extend(errors)
    return outcome(returncode, stop, text, events=events, output_tail=tail,
                   oom_kills=oom_kills, peaks=peaks, rss_limit_mb=2048.0, machine_mb=16000.0)


def test_our_stop_reason_decides_and_keeps_its_text():
    assert decide(-15, StopReason.STALL, "no report") == (TrialStatus.STALLED, "no report",
                                                          None)


def test_a_cuda_oom_is_told_from_a_failure_by_its_error_event():
    error = {"kind": "error", "type": "OutOfMemoryError", "message": "CUDA out of memory."}
    status, _, line = decide(1, errors=[error])
    assert status is TrialStatus.OOM and line
    assert decide(1)[:2] == (TrialStatus.FAILED, None)


def test_the_kernels_oom_killer_in_the_trials_cgroup_is_host_oom_with_the_limit():
    status, reason, _ = decide(-9, oom_kills=1)
    assert status is TrialStatus.HOST_OOM and "2048" in reason


def test_a_stop_wins_over_the_cgroups_oom_kills():
    assert decide(-9, StopReason.TIMEOUT, "over", oom_kills=1)[:2] == (TrialStatus.TIMEOUT,
                                                                      "over")


def test_the_first_stop_reason_sticks_and_an_early_exit_forgets_it():
    account = TrialAccount()
    assert account.stop(StopReason.HYPERBAND, None)
    assert not account.stop(StopReason.TIMEOUT, "late")
    assert (account.stop_reason, account.stopping) == (StopReason.HYPERBAND, True)
    account.forget_stop()
    assert account.stop_reason is None and not account.stopping
    account.exited()
    assert account.stopping and "exit" in account.unix


def test_a_process_that_survived_sigkill_is_in_the_reason_and_makes_cleanup_dirty():
    account = TrialAccount()
    account.tree_ended(EndResult(processes_killed=2, escapees_killed=1, leftover=(42,)))
    assert account.reason_text == " (pids 42 survived SIGKILL)"
    record = cleanup_record(account.ends, CLEAN)
    assert (record.clean, record.processes_killed, record.escapees_killed) == (False, 2, 1)
    assert "42" in record.reason


def test_the_host_peak_is_the_higher_of_the_samples_and_the_trials_own_reports():
    assert host_peak_mb(100.0, [{"rss_mb": 150.0}, {"rss_mb": None}]) == 150.0
    assert host_peak_mb(None, []) is None  # never measured: unknown, not 0


def test_the_fixed_wait_peak_is_torchs_reserved_peak_else_nvmls():
    events = TrialEvents(None)
    gpu_peaks = Peaks(rss_mb=100.0, gpu_used_mb=900.0, gpu_tree_mb=700.0)
    assert fixed_wait_peak_mb(True, events, gpu_peaks) == 700.0
    events.torch_peak_reserved_mb = 512.0
    assert fixed_wait_peak_mb(True, events, gpu_peaks) == 512.0
    assert fixed_wait_peak_mb(False, events, gpu_peaks) == 100.0


def test_best_metric_follows_the_goal_and_needs_a_metric():
    assert best_metric([3.0, 1.0, 2.0], minimize=True) == 1.0
    assert best_metric([3.0, 1.0, 2.0], minimize=False) == 3.0
    assert best_metric([3.0], minimize=None) is None and best_metric([], True) is None


def test_the_watch_stops_on_host_memory_before_the_stall_rule_and_on_its_timeout():
    isolation = IsolationConfig(timeout_s=60, stall_s=30,
                                limits=LimitsConfig(rss_mb=1000.0))
    watch = TrialWatch(isolation, t_start=0.0)
    assert watch.check(None, 1.0, False, lambda: None) is None  # no sample yet
    heavy = Sample(t=1.0, rss_mb=1500.0, gpu_used_mb=None, gpu_tree_mb=None, cpu_s=0.0,
                   processes=1, available_mb=8000.0)
    assert watch.check(heavy, 1.0, False, lambda: None)[0] is StopReason.HOST_MEMORY
    assert not watch.timed_out(60.0) and watch.timed_out(61.0)


def test_the_watch_finds_an_idle_trial_stalled_and_a_report_resets_the_window():
    watch = TrialWatch(IsolationConfig(stall_s=30), t_start=0.0)
    idle = [Sample(t=t, rss_mb=10.0, gpu_used_mb=None, gpu_tree_mb=None, cpu_s=1.0,
                   processes=1) for t in range(0, 32)]
    verdicts = [watch.check(sample, float(sample.t), False, lambda: None) for sample in idle]
    assert verdicts[-1][0] is StopReason.STALL and not any(verdicts[:29])
    watch.reported(31.5)
    assert watch.check(idle[-1], 31.6, False, lambda: None) is None
