"""A local sweep's trials: W&B's engine on this machine, plus re-runs and OOM retries.

``sweeps.next_run`` proposes params over the run list the session keeps; Hyperband
(``sweeps.stop_runs``) is asked after every new metric value. An OOM trial is run again with
a smaller batch (``isolation.oom``); after a restart (``--resume``) the trials that were
running, or were preempted, are run again once under new ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpusweep.config import SweepSpec
from gpusweep.controller import Controller
from gpusweep.oom import backoff_params, retry_depth
from gpusweep.records import TrialOrigin, TrialRecord
from gpusweep.source import Pending, Session
from gpusweep.status import StopReason, TrialStatus

if TYPE_CHECKING:
    from gpusweep.slots import Slot
    from gpusweep.trialrun import RunningTrial


class LocalSource:
    """The engine's proposals and Hyperband's stops, for a sweep id of our own."""

    server_runs = False  # trials without a run get a stand-in from the summary step
    exit_code: int | None = None  # the sweep's own end decides the exit code

    def __init__(self, spec: SweepSpec, sweep_id: str, resume: bool = False) -> None:
        self.spec = spec
        self.sweep_id = sweep_id
        self.resume = resume
        self.controller = Controller(spec, seed=sweep_id)
        self.pending: list[Pending] = []
        self._exhausted = False

    def restored(self, runner: Session, orphans: list[TrialRecord]) -> None:
        """Run each orphan again (once), and each preempted trial; queue the OOM retries the
        dead orchestrator had not started yet."""
        retried = {r.retry_of for r in runner.records if r.retry_of}
        origins, rerun = runner.recorder.origins, runner.recorder.rerun_of
        for record in orphans:
            if origins.get(record.run) is not TrialOrigin.RERUN:  # again, in its record's place
                self.pending.append(Pending(record.params, TrialOrigin.RERUN, record.retry_of,
                                            rerun_of=record.run))
                runner.rerun_records += 1
        for record in runner.records:
            if record.status is TrialStatus.PREEMPTED and record.run not in rerun \
                    and origins.get(record.run) is not TrialOrigin.RERUN:
                self.pending.append(Pending(record.params, TrialOrigin.RERUN, record.retry_of,
                                            rerun_of=record.run))
                runner.rerun_records += 1
            elif record.status is TrialStatus.OOM and record.run not in retried:
                self._queue_oom_retry(runner, record)

    def open(self, runner: Session) -> None:
        pass

    def poll(self, runner: Session) -> None:
        pass

    def next_trial(self, runner: Session, slot: Slot) -> Pending | None:
        """Re-runs and OOM retries first; the engine is not asked again once it said the
        sweep is done (a finished grid), but a retry can still come from an ending trial."""
        count = runner.options.count
        if count is not None and runner.launched >= count:
            return None
        started = len(runner.records) + len(runner.running) - runner.rerun_records
        if self.spec.run_cap is not None and started >= self.spec.run_cap:
            return None
        if self.pending:
            return self.pending.pop(0)
        if self._exhausted:
            return None
        params = self.controller.propose(runner.views())
        self._exhausted = params is None
        return None if params is None else Pending(params)

    def put_back(self, slot: Slot, pending: Pending) -> None:
        self.pending.insert(0, pending)

    def stop_for(self, runner: Session, trial: RunningTrial,
                 new_metric: bool) -> tuple[StopReason, str | None] | None:
        if new_metric and trial.run_id in self.controller.to_stop(runner.views()):
            return StopReason.HYPERBAND, None
        return None

    def started(self, slot: Slot, trial: RunningTrial) -> None:
        pass

    def ended(self, runner: Session, slot: Slot | None, record: TrialRecord) -> None:
        if record.status is TrialStatus.OOM:
            self._queue_oom_retry(runner, record)

    def after_finish(self, record: TrialRecord) -> None:
        pass

    def over(self, runner: Session) -> bool:
        return True  # nothing runs and nothing could start: the engine has no more

    def trial_environ(self, base: dict[str, str]) -> dict[str, str]:
        return dict(base)

    def close(self) -> None:
        pass

    def _queue_oom_retry(self, runner: Session, record: TrialRecord) -> None:
        """Run the same params again with a smaller batch, up to ``max_retries`` times."""
        config = self.spec.isolation.oom
        if not config.retry or retry_depth(record, runner.records) >= config.max_retries:
            return
        params = backoff_params(record.params, config)
        if params is not None:
            self.pending.insert(0, Pending(params, TrialOrigin.OOM_RETRY, record.run))
