"""The adaptive wait, driven by a FakeDevice (a fake GPU replaying NVML readings)."""

from fakes import FakeClock, FakeDevice

from gpusweep.cleanup import fixed_wait_s, gpu_is_clean, wait_until_clean
from gpusweep.device import NullDevice
from gpusweep.isolation import WaitConfig


def test_decision_within_tolerance_and_no_holder():
    assert gpu_is_clean(1100.0, 1000.0, 256.0, [])
    assert not gpu_is_clean(1300.0, 1000.0, 256.0, [])
    assert not gpu_is_clean(1000.0, 1000.0, 256.0, [4242])  # a trial pid still holds memory
    assert gpu_is_clean(None, None, 256.0, [])


def wait(device, config=WaitConfig(), pids=(4242,)):
    clock = FakeClock()
    result = wait_until_clean(device, 1000.0, pids, config, clock=clock, sleep=clock.sleep)
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
    assert not result.clean and result.wait_s == 2.0 and result.residual_mb == 4000.0
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
    # Seed 003's fix as it shipped: 5 s whatever the trial used.
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
    assert clock.sleeps == [] and not result.clean and result.residual_mb == 2000.0


def test_memory_of_neighbours_on_the_same_device_is_not_this_trials_residual():
    # Device: baseline 1000 MB + a neighbour trial's 3000 MB; this trial left nothing.
    device = FakeDevice([4000.0])
    clock = FakeClock()
    result = wait_until_clean(device, 1000.0, {4242}, WaitConfig(), clock=clock,
                              sleep=clock.sleep, others_mb=lambda: 3000.0)
    assert result.clean and result.residual_mb == 0.0 and clock.sleeps == []
