"""The adaptive wait, driven by a FakeDevice (a fake GPU replaying NVML readings)."""

from pathlib import Path

import yaml
from fakes import FakeClock, FakeDevice

from gpusweep.cleanup import fixed_wait_s, wait_until_clean
from gpusweep.config import parse_sweep
from gpusweep.display import QuietDisplay
from gpusweep.gpu.device import Namespace, NullDevice
from gpusweep.gpu.view import Baseline, Usage, judge
from gpusweep.isolation import WaitConfig
from gpusweep.runner import SweepOptions, SweepRunner

NOBODY = Usage(0.0, 0.0, 0.0, False)  # NVML lists no process at all


def test_decision_within_tolerance_and_no_holder():
    base = Baseline(1000.0, 0.0)
    assert judge(1100.0, base, NOBODY, set(), 256.0).clean is True
    # 300 MB above the baseline that no listed process holds: proven dirty
    assert judge(1300.0, base, NOBODY, set(), 256.0).clean is False
    assert judge(1000.0, base, NOBODY, {4242}, 256.0).clean is False  # a trial pid holds memory
    unread = judge(None, base, NOBODY, set(), 256.0, "nvmlDeviceGetMemoryInfo: Unknown")
    assert unread.clean is None and "Unknown" in unread.reason  # never clean unmeasured
    assert judge(1000.0, Baseline(None), NOBODY, set(), 256.0).clean is None


def test_foreign_growth_is_not_ours_and_foreign_release_does_not_hide_a_leak():
    base = Baseline(1000.0, 500.0)  # a colleague held 500 MB before the first trial
    grew = Usage(0.0, 0.0, 3500.0, False)  # ...and 3500 MB now
    assert judge(4000.0, base, grew, set(), 256.0).clean is True
    freed = Usage(0.0, 0.0, 0.0, False)  # the colleague left; we left 400 MB behind
    verdict = judge(900.0, base, freed, set(), 256.0)
    assert verdict.clean is False and verdict.residual_mb == 400.0


def test_a_fall_below_the_baseline_with_foreign_memory_unknown_is_never_clean():
    # NVML lists processes without figures: a colleague's 3000 MB release and our 800 MB leak
    # net to 2200 MB below the baseline, which must not read as clean.
    unknown_foreign = Usage(None, 0.0, None, False)
    verdict = judge(1100.0, Baseline(3300.0, None), unknown_foreign, set(), 256.0)
    assert verdict.clean is None and verdict.residual_mb is None
    assert "2200 MB below the baseline" in verdict.reason
    assert judge(3300.0, Baseline(3300.0, None), unknown_foreign, set(), 256.0).clean is True
    known = judge(1100.0, Baseline(3300.0, 3000.0), Usage(0.0, 0.0, 0.0, False), set(), 256.0)
    assert known.clean is False and known.residual_mb == 800.0  # foreign change known


def test_unreadable_process_lists_are_a_read_error_not_a_container():
    verdict = judge(1800.0, Baseline(1000.0, 0.0), Usage(None, None, None, False), set(), 256.0,
                    lists_error="nvmlDeviceGetComputeRunningProcesses_v3: NVMLError_Unknown")
    assert verdict.clean is None and not verdict.unattributable  # worth retrying to max_s
    assert "process lists could not be read" in verdict.reason
    assert "NVMLError_Unknown" in verdict.reason and "container" not in verdict.reason


def test_unattributable_memory_is_unknown_never_dirty_nor_clean():
    container = Usage(None, None, None, False)  # NVML's PIDs are the host's
    verdict = judge(3000.0, Baseline(1000.0, None), container, set(), 256.0)
    assert verdict.clean is None and verdict.unattributable and "attributed" in verdict.reason
    assert judge(1100.0, Baseline(1000.0, None), container, set(), 256.0).clean is True


def wait(device, config=WaitConfig(), pids=(4242,)):
    clock = FakeClock()
    result = wait_until_clean(device, Baseline(1000.0, 0.0), pids, config, clock=clock,
                              sleep=clock.sleep)
    return result, clock


def test_clean_at_once_does_not_sleep():
    result, clock = wait(FakeDevice([1010.0]))
    assert result.clean and result.wait_s == 0.0 and clock.sleeps == []
    assert result.residual_mb == 10.0


def test_clean_after_n_polls_waits_exactly_that_long():
    device = FakeDevice([9000.0, 5000.0, 2000.0, 1100.0])
    result, clock = wait(device, WaitConfig(poll_s=0.1))
    assert result.clean and device.reads == 4
    assert len(clock.sleeps) == 3 and abs(result.wait_s - 0.3) < 1e-9


def test_a_trial_pid_still_holding_memory_keeps_it_dirty():
    device = FakeDevice([1000.0], holders=[{4242: 300.0}, {4242: 300.0}, {}])
    result, _ = wait(device)
    assert result.clean and device.holder_reads == 3


def test_never_clean_stops_at_max_s():
    result, clock = wait(FakeDevice([5000.0]), WaitConfig(max_s=2.0, poll_s=0.5))
    assert result.clean is False and result.wait_s == 2.0 and result.residual_mb == 4000.0
    assert "held by no process" in result.reason and "max_s" in result.reason
    assert sum(clock.sleeps) == 2.0


def test_min_s_is_honoured_even_when_clean():
    result, _ = wait(FakeDevice([1000.0]), WaitConfig(min_s=1.0, poll_s=0.25))
    assert result.clean and result.wait_s == 1.0


def test_null_device_returns_at_once():
    result, clock = wait(NullDevice())
    assert result.clean and result.wait_s == 0.0 and result.residual_mb is None
    assert clock.sleeps == []


def test_fixed_mode_sleeps_like_the_incident_fix():
    result, clock = wait(FakeDevice([1000.0]), WaitConfig(mode="fixed", fixed_s=5.0))
    assert clock.sleeps == [5.0] and result.clean and result.wait_s == 5.0


def test_fixed_wait_is_flat_unless_a_large_wait_is_set():
    # The incident's fix as it shipped (README, "Background"): 5 s whatever the trial used.
    assert fixed_wait_s(WaitConfig(), 8000.0) == 5.0
    # Its proposed refinement: longer only past the threshold (strictly above it).
    config = WaitConfig(fixed_s=5.0, fixed_large_s=10.0, fixed_large_above_mb=1000.0)
    assert fixed_wait_s(config, 1000.1) == 10.0
    assert fixed_wait_s(config, 1000.0) == 5.0
    assert fixed_wait_s(config, None) == 5.0  # peak unknown


def test_fixed_mode_sleeps_the_large_wait_after_a_large_trial():
    clock = FakeClock()
    config = WaitConfig(mode="fixed", fixed_s=5.0, fixed_large_s=10.0)
    wait_until_clean(FakeDevice([1000.0]), 1000.0, (), config, clock=clock, sleep=clock.sleep,
                     peak_mb=2048.0)
    assert clock.sleeps == [10.0]


def test_none_mode_reads_once_and_reports_dirty():
    result, clock = wait(FakeDevice([3000.0]), WaitConfig(mode="none"))
    assert clock.sleeps == [] and result.clean is False and result.residual_mb == 2000.0


def test_memory_of_neighbours_on_the_same_device_is_not_this_trials_residual():
    # Device: baseline 1000 MB + a neighbour trial's 3000 MB; this trial left nothing.
    device = FakeDevice([4000.0], holders=[{4343: 3000.0}])
    device.namespace = Namespace.MATCHED
    clock = FakeClock()
    result = wait_until_clean(device, Baseline(1000.0, 0.0), {4242}, WaitConfig(), clock=clock,
                              sleep=clock.sleep, neighbour_pids=lambda: {4343})
    assert result.clean and result.residual_mb == 0.0 and clock.sleeps == []


def test_a_failing_reading_is_retried_until_max_s_and_ends_unknown():
    class Silent(FakeDevice):
        last_error = "nvmlDeviceGetMemoryInfo: NVMLError_Unknown: Unknown Error"

        def used_mb(self):
            return None

    result, _ = wait(Silent([0.0]), WaitConfig(max_s=1.0, poll_s=0.25))
    assert result.clean is None and result.wait_s == 1.0 and "Unknown" in result.reason


def test_a_dirty_gpu_with_on_dirty_abort_stops_a_local_sweep(tmp_path, capsys):
    """FAKE GPU: 100 MB before the first trial, then 800 MB that never come back."""
    spec = parse_sweep({"program": "tests/programs/sleeper.py", "method": "grid",
                        "parameters": {"x": {"values": [1, 2, 3]}, "seconds": {"value": 0.1}},
                        "isolation": {"on_dirty": "abort",
                                      "wait": {"max_s": 0.3, "poll_s": 0.05}}}, "s.yaml")
    runner = SweepRunner(spec, SweepOptions(log_dir=str(tmp_path / "log")),
                         [FakeDevice([100.0, 900.0])], QuietDisplay())
    assert runner.run() == 3
    record = yaml.safe_load(Path(runner.session.sweep_dir, "sweep.yaml").read_text())
    assert record["sweep"]["state"] == "aborted" and len(record["trials"]) == 1
    assert "GPU did not come back clean" in capsys.readouterr().err
