"""--slots auto's decisions, from numbers: memory, utilization, host, max_slots, OOM back-off."""

import pytest

from gpusweep.autoslots import (
    DeviceReading,
    HostReading,
    Limits,
    Verdict,
    after_oom,
    cpu_rate,
    decide,
    host_allows,
    memory_allows,
    window_mean,
)
from gpusweep.isolation import IsolationConfig
from gpusweep.records import Timeline, TrialRecord
from gpusweep.slotfill import running_at, slot_count
from gpusweep.status import TrialStatus

ROOMY_HOST = HostReading(available_mb=60000, next_rss_mb=800, cores=16, trials_cores=2.0,
                         per_trial_cores=1.0)
LIMITS = Limits(max_slots=6, max_utilization_pct=85, margin=0.1, min_available_mb=512)


def gpu(running=2, settled=True, free=20000.0, peak=1000.0, util=40.0):
    return DeviceReading(running, True, settled, free, peak, util)


def test_one_more_while_memory_utilization_and_host_allow():
    decision = decide(gpu(), ROOMY_HOST, LIMITS)
    assert decision.verdict is Verdict.ADD


def test_the_first_trial_always_starts():
    assert decide(gpu(running=0, free=None, util=None), ROOMY_HOST, LIMITS).verdict \
        is Verdict.ADD


@pytest.mark.parametrize("reading, why", [
    (gpu(running=6), "max_slots 6"),
    (gpu(settled=False), "not settled"),
    (gpu(util=85.0), "utilization 85 %"),
    (gpu(util=None), "utilization unknown"),
    (gpu(free=1099.0), "memory"),
    (gpu(free=None), "device memory unknown"),
    (gpu(peak=None), "device memory unknown"),
])
def test_each_bound_holds_the_count(reading, why):
    decision = decide(reading, ROOMY_HOST, LIMITS)
    assert decision.verdict is Verdict.HOLD and why in decision.reason


def test_the_margin_is_fit_margin():
    assert memory_allows(1100.0, 1000.0, 0.1) is None
    assert "1000 MB + 10%" in memory_allows(1099.0, 1000.0, 0.1)
    assert memory_allows(1000.0, 1000.0, 0.0) is None


@pytest.mark.parametrize("host, why", [
    (HostReading(1300, 800, 16, 1.0, 1.0), "host memory"),
    (HostReading(None, 800, 16, 1.0, 1.0), "host memory unknown"),
    (HostReading(9000, 800, 2, 1.5, 0.75), "cores"),
    (HostReading(9000, 800, 2, None, None), "CPU use unknown"),
])
def test_the_host_bounds_it(host, why):
    assert why in host_allows(host, 512)
    assert decide(gpu(), host, LIMITS).verdict is Verdict.HOLD


def test_without_a_gpu_only_the_host_bounds_it():
    cpu = DeviceReading(3, False, True)  # no memory or utilization reading is asked for
    assert decide(cpu, ROOMY_HOST, LIMITS).verdict is Verdict.ADD
    busy = HostReading(60000, 800, 4, 3.0, 1.0)
    assert decide(cpu, busy, LIMITS).verdict is Verdict.ADD  # 3 + 1 cores of 4
    assert decide(cpu, HostReading(60000, 800, 4, 3.3, 1.1), LIMITS).verdict is Verdict.HOLD


def test_after_an_oom_never_again_as_many():
    assert after_oom(4) == 3 and after_oom(1) == 1
    decision = decide(gpu(running=3), ROOMY_HOST, LIMITS, ceiling=after_oom(4))
    assert decision.verdict is Verdict.HOLD and "OOM" in decision.reason
    assert decide(gpu(running=2), ROOMY_HOST, LIMITS, ceiling=3).verdict is Verdict.ADD


def test_after_a_host_oom_the_host_holds_on_every_device():
    host = HostReading(60000, 800, 16, 2.0, 1.0, running=3)
    decision = decide(gpu(running=0), host, LIMITS, host_ceiling=3)
    assert decision.verdict is Verdict.HOLD and "host OOM" in decision.reason
    assert decide(gpu(running=0), host, LIMITS, host_ceiling=4).verdict is Verdict.ADD
    assert decide(gpu(running=1), host, LIMITS).verdict is Verdict.ADD  # no host OOM yet


def test_the_utilization_window_must_be_covered_and_known():
    samples = [(t / 10, 50.0) for t in range(0, 31)]  # 0 .. 3 s
    assert window_mean(samples, 3.0, 2.0) == 50.0
    assert window_mean(samples, 3.0, 5.0) is None  # the readings span 3 s, not 5
    assert window_mean(samples + [(3.1, None)], 3.1, 2.0) is None
    assert window_mean([(0.0, 0.0), (1.0, 100.0), (2.0, 100.0)], 2.0, 1.0) == 100.0


def test_cpu_rate_is_cores_over_the_window():
    samples = [(0.0, 0.0), (1.0, 0.5), (2.0, 1.5), (3.0, 2.5)]
    assert cpu_rate(samples, 3.0, 2.0) == pytest.approx(1.0)
    assert cpu_rate(samples[-1:], 3.0, 2.0) is None


def record(run, start, end):
    return TrialRecord(run=run, params={}, status=TrialStatus.FINISHED, exit_code=0,
                       signal=None, started="", ended="", duration_s=end - start,
                       timeline=Timeline(start=start, exit=end))


def test_concurrency_over_time_from_the_records():
    records = [record("a", 0, 10), record("b", 2, 4), record("c", 3, 12),
               TrialRecord(run="s", params={}, status=TrialStatus.SKIPPED_NO_FIT,
                           exit_code=None, signal=None, started="", ended="", duration_s=0)]
    assert running_at(records) == [(0, 1), (2, 2), (3, 3), (4, 2), (10, 1), (12, 0)]
    assert running_at([record("a", 0, 1), record("b", 1, 2)]) == [(0, 1), (1, 0), (1, 1),
                                                                  (2, 0)]


def test_slots_option_wins_over_the_isolation_key():
    assert slot_count(None, IsolationConfig(slots="auto")) == "auto"
    assert slot_count(2, IsolationConfig(slots="auto")) == 2
    assert slot_count(None, IsolationConfig()) is None


def fake_trial(run, device):
    """A running trial as the filler sees it: no process, no monitor."""
    from types import SimpleNamespace

    return SimpleNamespace(run_id=run, device=device, stopping=False, exited=lambda: False,
                           monitor=None, account=SimpleNamespace(t_start=0.0),
                           predicted_peak_mb=None)


def test_an_oom_lowers_the_devices_ceiling_and_records_say_who_ran_beside():
    from fakes import FakeDevice

    from gpusweep.slotfill import SlotFiller

    device = FakeDevice([1000.0])
    filler = SlotFiller("auto", IsolationConfig(max_slots=5), [device])
    assert len(filler.slots) == 5 and filler.auto
    for slot, run in zip(filler.slots, "abcd", strict=False):
        slot.trial = fake_trial(run, device)
    filler.fill(lambda slot: False)  # counts who runs beside whom; nothing to start
    assert filler.beside == {"a": 3, "b": 3, "c": 3, "d": 3}
    filler.slots[0].trial = None  # "a" ended in a CUDA OOM with three others running
    oom = TrialRecord(run="a", params={}, status=TrialStatus.OOM, exit_code=1, signal=None,
                      started="", ended="", duration_s=1.0)
    assert filler.ended(oom, device).beside == 3
    assert filler.ceiling[id(device)] == 3  # never again four at once on this device
    assert filler.host_ceiling is None  # a CUDA OOM says nothing of the host's memory
    finished = TrialRecord(run="zz", params={}, status=TrialStatus.FINISHED, exit_code=0,
                           signal=None, started="", ended="", duration_s=1.0)
    assert filler.ended(finished, device).beside is None  # never seen running: unknown


def test_a_host_oom_lowers_the_hosts_ceiling_over_every_device():
    from fakes import FakeDevice

    from gpusweep.slotfill import SlotFiller

    first, second = FakeDevice([1000.0]), FakeDevice([1000.0], uuid="GPU-fake-0001", index=1)
    filler = SlotFiller("auto", IsolationConfig(max_slots=4), [first, second])
    slots = [s for s in filler.slots if s.device is first][:2] + [
        s for s in filler.slots if s.device is second][:2]
    for slot, run in zip(slots, "abcd", strict=True):
        slot.trial = fake_trial(run, slot.device)
    slots[0].trial = None  # "a" ended in a host OOM with three others running
    oom = TrialRecord(run="a", params={}, status=TrialStatus.HOST_OOM, exit_code=-9,
                      signal=9, started="", ended="", duration_s=1.0)
    filler.ended(oom, first)
    assert filler.host_ceiling == 3 and filler.ceiling == {}  # the host's, not the device's
    started = []
    filler.fill(lambda slot: started.append(slot.index) or True)
    assert started == []  # three run: neither device adds one, the second one neither
    assert all("after a host OOM 3" in filler.last_reason[id(d)] for d in (first, second))


def test_fixed_slots_fill_every_free_slot():
    from fakes import FakeDevice

    from gpusweep.slotfill import SlotFiller

    device = FakeDevice([1000.0])
    filler = SlotFiller(3, IsolationConfig(), [device])
    started = []

    def launch(slot):
        slot.trial = fake_trial(f"r{slot.index}", device)
        started.append(slot.index)
        return True

    filler.fill(launch)
    assert started == [0, 1, 2] and filler.beside == {"r0": 2, "r1": 2, "r2": 2}
