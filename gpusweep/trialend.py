"""Ending one trial: its stop in a worker thread, its record on the main thread, then the
sweep's own guards.

Each trial's ending (the tree stop with its grace period, the GPU wait) runs in a worker
thread, so a slow stop in one slot never holds up the others (nor the W&B heartbeats, which
have threads of their own). Only the main thread writes records: it collects each finished
ending here and decides whether the sweep itself must stop (a GPU proven dirty, flapping).
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gpusweep.admission import with_prediction_error
from gpusweep.errors import EXIT_FLAPPING, EXIT_GPU_DIRTY, SweepAborted
from gpusweep.flapping import is_flapping
from gpusweep.isolation import IsolationConfig
from gpusweep.records import TrialRecord
from gpusweep.session import SweepSession
from gpusweep.slots import Slot
from gpusweep.status import StopReason, TrialStatus
from gpusweep.trialrun import RunningTrial


def sweep_abort(record: TrialRecord, ended: list[tuple[TrialStatus, float]],
                isolation: IsolationConfig) -> SweepAborted | None:
    """Why the sweep must stop after ``record`` (the last of ``ended``, this session's
    endings with their times), or None to go on."""
    # Only a GPU proven dirty aborts; unknown (None) is recorded with its reason.
    if record.cleanup.clean is False and isolation.on_dirty == "abort":
        return SweepAborted(
            f"GPU did not come back clean after {record.run} (residual "
            f"{record.gpu.residual_mb} MB after {record.cleanup.wait_s} s); "
            "on_dirty is abort", EXIT_GPU_DIRTY)
    flapping = isolation.flapping
    if is_flapping(ended, flapping):
        return SweepAborted(
            f"error: {len(ended)} trials failed and none succeeded (within "
            f"{flapping.window_s:g} s, or in a row): the environment looks broken, sweep "
            f"stopped (isolation.flapping). Last trial {record.run} ended with:\n"
            f"{record.error or '(no output)'}", EXIT_FLAPPING)
    return None


class TrialFinisher:
    """Ends the session's trials in worker threads and records each on the main thread."""

    def __init__(self, session: SweepSession, display: Any) -> None:
        self.session = session
        self.display = display
        self._ended: list[tuple[TrialStatus, float]] = []  # this session's, for flapping
        self._pool = ThreadPoolExecutor(max_workers=len(session.slots),
                                        thread_name_prefix="gpusweep-finish")

    def begin(self, slot: Slot) -> None:
        """End the trial in a worker thread: tree stop, gc, the GPU wait, its record."""
        trial, source = slot.trial, self.session.source
        baseline = self.session.baselines.get(slot.device)
        neighbours = functools.partial(self.session.neighbour_pids, slot)

        def finish() -> TrialRecord:
            record = trial.finish(baseline, neighbours)
            source.after_finish(record)  # cloud: the run's summary, off the main thread
            return record

        slot.finishing = self._pool.submit(finish)

    def collect(self) -> None:
        """Record every trial whose finish completed (main thread only); raises
        :class:`SweepAborted` when the sweep's own guards say stop."""
        for slot in self.session.slots:
            if slot.finishing is not None and slot.finishing.done():
                trial, future = slot.trial, slot.finishing
                slot.trial = slot.finishing = None
                self._ended_one(slot, trial, future)

    def stop_all(self, reason: StopReason) -> None:
        """End every trial still in a slot and record it (Ctrl-C, abort, or a bug of ours)."""
        session = self.session
        for slot in session.slots:
            if slot.trial is not None and slot.finishing is None:
                slot.trial.request_stop(reason)
                self.begin(slot)
        for slot in session.slots:
            if slot.finishing is not None:
                trial, future = slot.trial, slot.finishing
                slot.trial = slot.finishing = None
                try:
                    session.source.ended(session, slot, self._record(trial, future))
                except SweepAborted:
                    continue  # the trial was ended; only its record could not be written

    def shutdown(self) -> None:
        """Wait for the worker threads (every ending has been collected by now)."""
        self._pool.shutdown(wait=True)

    def _record(self, trial: RunningTrial, future: Future) -> TrialRecord:
        """Write one ended trial's records (every path that ends a trial comes here)."""
        session = self.session
        record = session.filler.ended(with_prediction_error(future.result()), trial.device)
        session.recorder.trial_ended(record, trial.events.history)
        self.display.trial_ended(session, record)
        return record

    def _ended_one(self, slot: Slot, trial: RunningTrial, future: Future) -> None:
        """Record one ended trial; then the sweep's own guards."""
        session = self.session
        record = self._record(trial, future)
        self._ended.append((record.status, session.wall_s))
        session.baselines.trial_ended(trial.device, trial.pids(), record.cleanup.clean)
        session.source.ended(session, slot, record)
        if aborted := sweep_abort(record, self._ended, session.spec.isolation):
            raise aborted
