"""Starting one trial in a free slot: the memory model's say, the trial's plan, its process.

A trial the memory model says cannot fit is recorded as ``skipped_no_fit`` and never started;
one it says must wait goes back to its source until a neighbour on the device ends. Every
started trial is in the journal before its process exists, so a crash between the two
leaves a record that ``--resume`` can end.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from gpusweep.admission import Action, Admission, admit
from gpusweep.bootstrap import _gpusweep_contract as contract
from gpusweep.cleanup import end_tree
from gpusweep.config import SweepSpec
from gpusweep.errors import start_error
from gpusweep.records import CleanupRecord, GpuRecord, TrialRecord
from gpusweep.session import SweepOptions, SweepSession, new_id
from gpusweep.slots import Slot
from gpusweep.source import Pending
from gpusweep.status import TrialStatus
from gpusweep.trialrun import Placement, RunningTrial, SweepContext, TrialPlan, now_iso


def trial_env(spec: SweepSpec, options: SweepOptions) -> dict[str, str]:
    """What every trial's environment gets from the sweep and the command line."""
    env = {contract.LEAK_WARMUP_ENV: str(spec.isolation.leak.warmup_steps)}
    if options.profile_leaks:
        env[contract.PROFILE_LEAKS_ENV] = "1"
    if options.entity:
        env["WANDB_ENTITY"] = options.entity
    return env


def skipped_record(slot: Slot, pending: Pending, admitted: Admission, now: str) -> TrialRecord:
    """The record of a trial predicted not to fit: it ended when it would have started."""
    return TrialRecord(
        run=pending.run_id or new_id(), params=admitted.params,
        status=TrialStatus.SKIPPED_NO_FIT,
        exit_code=None, signal=None, started=now, ended=now, duration_s=0.0,
        retry_of=pending.retry_of, slot=slot.index,
        predicted_peak_mb=None if admitted.predicted_mb is None
        else round(admitted.predicted_mb, 1), fit_note=admitted.reason,
        reason=admitted.reason,
        gpu=GpuRecord(device=slot.device.info.name, index=slot.device.info.index),
        cleanup=CleanupRecord(clean=True))  # no process was started: nothing to clean


class TrialStarter:
    """Fills one free slot at a time from the session's trial source."""

    def __init__(self, session: SweepSession, display: Any) -> None:
        self.session = session
        self.display = display

    def launch(self, slot: Slot) -> bool:
        """Start the next trial in ``slot``; False when there is none to start now."""
        session, source = self.session, self.session.source
        pending = source.next_trial(session, slot)
        if pending is None:
            return False
        admitted = self._admit(slot, pending)
        if admitted.action is Action.WAIT:  # pack: let a neighbour on this device end first
            source.put_back(slot, pending)
            return False
        if admitted.action is Action.SKIP:
            self._record_skipped(slot, pending, admitted)
            return True
        session.baselines.before_launch(slot.device, busy=any(
            t.device is slot.device for t in session.running))
        plan = TrialPlan(pending.run_id or new_id(), admitted.params, pending.retry_of,
                         admitted.predicted_mb, admitted.reason,
                         proposed=None if admitted.params == pending.params else pending.params)
        sweep = SweepContext(session.spec, session.sweep_id, session.sweep_dir, session.project,
                             trial_env(session.spec, session.options),
                             session.options.config_file)
        trial = RunningTrial(plan, sweep, Placement(
            slot.device, slot.index, functools.partial(session.neighbour_pids, slot)))
        session.launched += 1
        session.recorder.trial_started(trial, pending.origin, pending.rerun_of)
        try:
            trial.start(source.trial_environ(dict(os.environ)))
        except BaseException as exc:
            if trial.popen is not None:  # started, then failed: leave nothing behind
                end_tree(trial.popen.pid, trial.token, (), session.spec.isolation.stop.grace_s)
            if isinstance(exc, OSError):
                raise start_error(exc, trial.paths.dir) from None
            raise
        slot.trial = trial
        source.started(slot, trial)
        session.recorder.trial_running(trial)
        self.display.trial_started(session, trial)
        return True

    def _admit(self, slot: Slot, pending: Pending) -> Admission:
        """The memory model's say on this trial (run as is, shrunk, wait, or skip)."""
        session = self.session
        return admit(pending.params, session.spec.isolation, session.records, slot.device,
                     [t for t in session.running if t.device is slot.device and not t.stopping],
                     pack=True if session.filler.auto else None)  # auto: wait, never crowd

    def _record_skipped(self, slot: Slot, pending: Pending, admitted: Admission) -> None:
        """A trial predicted not to fit: recorded, never started."""
        session = self.session
        session.launched += 1
        record = skipped_record(slot, pending, admitted, now_iso())
        session.recorder.trial_ended(record, [])
        self.display.trial_ended(session, record)
        session.source.ended(session, slot, record)
