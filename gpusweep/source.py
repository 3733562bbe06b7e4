"""Where a sweep's trials come from: the one thing local and cloud sweeps do differently.

The session (:class:`gpusweep.runner.SweepRunner`, its state in
:class:`gpusweep.session.SweepSession`) runs every trial the same way; a source says which
params to run next, which running trial to stop, and when the sweep is over. A source sees
the session through :class:`Session`, the little it reads of it, so the session imports its
sources and no source imports the session.
:class:`gpusweep.local_source.LocalSource` asks W&B's engine on this machine;
:class:`gpusweep.wb.cloud_source.CloudSource` takes the W&B server's commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gpusweep.records import TrialOrigin, TrialRecord
from gpusweep.status import StopReason

if TYPE_CHECKING:
    from gpusweep.controller import RunView
    from gpusweep.recorder import SweepRecorder
    from gpusweep.slots import Slot
    from gpusweep.trialrun import RunningTrial


@dataclass(frozen=True)
class Pending:
    """A trial to start: its params, and where they came from."""

    params: dict[str, Any]
    origin: TrialOrigin | None = None  # None: W&B's engine on this machine proposed them
    retry_of: str | None = None
    run_id: str | None = None  # the W&B server's run id; None: the session makes one
    rerun_of: str | None = None  # the killed or preempted trial this one runs again


class Options(Protocol):
    count: int | None  # ``--count``: at most this many trials from this orchestrator


class Session(Protocol):
    """What a source reads of the session that runs its trials."""

    options: Options
    recorder: SweepRecorder
    launched: int  # trials this orchestrator started
    rerun_records: int  # records of trials killed by our death (or preempted) and run again

    @property
    def records(self) -> list[TrialRecord]:
        """The ended trials' records, in order."""

    @property
    def running(self) -> list[RunningTrial]:
        """Trials in a slot, running or being finished."""

    def views(self) -> list[RunView]:
        """Every trial as W&B's engine sees it."""


class TrialSource(Protocol):
    sweep_id: str
    resume: bool  # go on from the sweep directory's journal
    server_runs: bool  # the W&B server makes every trial's run (no stand-ins)
    exit_code: int | None  # set when the source ended the sweep for its own reason

    def restored(self, runner: Session, orphans: list[TrialRecord]) -> None:
        """After a restart: ``orphans`` are the trials a dead orchestrator left running."""

    def open(self, runner: Session) -> None:
        """The session is ready to run trials (cloud: register with the server)."""

    def poll(self, runner: Session) -> None:
        """Take what arrived since the last tick (main thread, every tick)."""

    def next_trial(self, runner: Session, slot: Slot) -> Pending | None:
        """The trial to start in this free slot now, or None."""

    def put_back(self, slot: Slot, pending: Pending) -> None:
        """A trial that could not start yet (the memory model said wait)."""

    def stop_for(self, runner: Session, trial: RunningTrial,
                 new_metric: bool) -> tuple[StopReason, str | None] | None:
        """Why a running trial must stop now, or None."""

    def started(self, slot: Slot, trial: RunningTrial) -> None: ...

    def ended(self, runner: Session, slot: Slot | None, record: TrialRecord) -> None:
        """A trial's records are written (main thread)."""

    def after_finish(self, record: TrialRecord) -> None:
        """In the trial's worker thread, once its record exists (cloud: the run's summary)."""

    def over(self, runner: Session) -> bool:
        """Nothing runs: is the sweep over, or may more trials still come?"""

    def trial_environ(self, base: dict[str, str]) -> dict[str, str]:
        """The environment trials start from."""

    def close(self) -> None: ...
