"""The session's own decisions as pure functions: when the sweep aborts after a trial, how a
sweep that ran to its end is recorded, what a trial's environment gets from the command line,
and the record of a trial that cannot fit. No processes, no GPU."""

from dataclasses import replace

from fakes import FakeDevice

from gpusweep.admission import Action, Admission
from gpusweep.errors import EXIT_FLAPPING, EXIT_GPU_DIRTY, EXIT_INTERRUPTED, EXIT_OK
from gpusweep.isolation import FlappingConfig, IsolationConfig
from gpusweep.records import CleanupRecord, GpuRecord, SweepState, TrialRecord
from gpusweep.session import SweepOptions
from gpusweep.slots import Slot
from gpusweep.source import Pending
from gpusweep.status import StopReason, TrialStatus
from gpusweep.sweepend import outcome
from gpusweep.trialend import sweep_abort
from gpusweep.trialstart import skipped_record, trial_env

FAILED = TrialStatus.FAILED


def ended(run: str, status: TrialStatus = TrialStatus.FINISHED, clean: bool | None = True,
          error: str | None = None) -> TrialRecord:
    return TrialRecord(run=run, params={}, status=status, exit_code=0, signal=None,
                       started="t0", ended="t1", duration_s=1.0, error=error,
                       gpu=GpuRecord(residual_mb=300.0),
                       cleanup=CleanupRecord(wait_s=2.0, clean=clean, reason="why"))


# -- the sweep's own guards, after each ended trial ----------------------------------------


def test_a_dirty_gpu_aborts_only_with_on_dirty_abort():
    dirty = ended("r1", clean=False)
    history = [(TrialStatus.FINISHED, 1.0)]
    assert sweep_abort(dirty, history, IsolationConfig()) is None  # on_dirty: continue
    aborted = sweep_abort(dirty, history, IsolationConfig(on_dirty="abort"))
    assert aborted is not None and aborted.exit_code == EXIT_GPU_DIRTY
    assert "r1" in str(aborted) and "300.0 MB after 2.0 s" in str(aborted)


def test_a_gpu_not_proven_either_way_never_aborts():
    unknown = ended("r1", clean=None)
    assert sweep_abort(unknown, [(TrialStatus.FINISHED, 1.0)],
                       IsolationConfig(on_dirty="abort")) is None


def test_fast_failures_abort_as_flapping_naming_the_last_trial_and_its_output():
    isolation = IsolationConfig(flapping=FlappingConfig(max_failures=3, window_s=60.0))
    last = ended("r3", FAILED, error="ImportError: no module named x")
    assert sweep_abort(last, [(FAILED, 1.0), (FAILED, 2.0)], isolation) is None
    aborted = sweep_abort(last, [(FAILED, 1.0), (FAILED, 2.0), (FAILED, 3.0)], isolation)
    assert aborted is not None and aborted.exit_code == EXIT_FLAPPING
    assert "3 trials failed" in str(aborted) and "r3" in str(aborted)
    assert str(aborted).endswith("ImportError: no module named x")
    silent = sweep_abort(replace(last, error=None), [(FAILED, 1.0)] * 3, isolation)
    assert silent is not None and str(silent).endswith("(no output)")


def test_flapping_disabled_never_aborts():
    isolation = IsolationConfig(flapping=FlappingConfig(enabled=False, max_failures=1))
    assert sweep_abort(ended("r1", FAILED), [(FAILED, 1.0)] * 5, isolation) is None


# -- the sweep's end -----------------------------------------------------------------------


def test_a_sweep_that_ran_out_of_trials_finished_with_exit_0():
    assert outcome(None, None) == (SweepState.FINISHED, EXIT_OK)


def test_a_signal_makes_the_sweep_interrupted_with_exit_130():
    for reason in (StopReason.INTERRUPT, StopReason.PREEMPT):
        assert outcome(reason, None) == (SweepState.INTERRUPTED, EXIT_INTERRUPTED)


def test_the_sources_own_exit_code_wins():
    assert outcome(None, 6) == (SweepState.FINISHED, 6)
    assert outcome(StopReason.INTERRUPT, 6) == (SweepState.INTERRUPTED, 6)


# -- starting a trial ----------------------------------------------------------------------


def test_trial_env_carries_the_leak_warmup_and_only_the_options_given():
    from gpusweep.bootstrap import _gpusweep_contract as contract
    from gpusweep.config import parse_sweep

    spec = parse_sweep({"program": __file__, "method": "grid",
                        "parameters": {"x": {"value": 1}},
                        "isolation": {"leak": {"warmup_steps": 7}}}, "s.yaml")
    assert trial_env(spec, SweepOptions()) == {contract.LEAK_WARMUP_ENV: "7"}
    env = trial_env(spec, SweepOptions(profile_leaks=True, entity="team"))
    assert env == {contract.LEAK_WARMUP_ENV: "7", contract.PROFILE_LEAKS_ENV: "1",
                   "WANDB_ENTITY": "team"}


def test_a_skipped_trial_is_recorded_on_its_slots_device_with_the_models_reason():
    slot = Slot(2, FakeDevice([0.0], name="FakeGPU-skip", index=3))
    admitted = Admission(Action.SKIP, {"batch": 8}, 12345.678, 1000.0, "needs 12346 MB")
    record = skipped_record(slot, Pending({"batch": 64}, retry_of="r0", run_id="srv1"),
                            admitted, "2026-01-01T00:00:00")
    assert (record.run, record.params, record.status) == ("srv1", {"batch": 8},
                                                          TrialStatus.SKIPPED_NO_FIT)
    assert record.started == record.ended == "2026-01-01T00:00:00"
    assert (record.duration_s, record.exit_code, record.retry_of, record.slot) == (
        0.0, None, "r0", 2)
    assert record.predicted_peak_mb == 12345.7
    assert record.fit_note == record.reason == "needs 12346 MB"
    assert (record.gpu.device, record.gpu.index) == ("FakeGPU-skip", 3)
    unnamed = skipped_record(slot, Pending({}), replace(admitted, predicted_mb=None), "t")
    assert unnamed.run and unnamed.predicted_peak_mb is None
