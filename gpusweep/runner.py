"""The sweep session: one lifecycle for local and cloud sweeps.

Lock, signals, the GPU baseline, slots, every guard (limits, stall, timeout, leak, OOM
classification, admission, flapping, on_dirty), finishing in worker threads, records and the
summary run are the same whoever proposes the params; a :class:`~gpusweep.source.TrialSource`
says only which params to run next, which trial to stop, and when the sweep is over (W&B's
engine here, or the W&B server's commands).

This module is the lifecycle and the loop; the parts it drives each have their own:
:mod:`gpusweep.session` (the state they share), :mod:`gpusweep.trialstart` (starting one
trial), :mod:`gpusweep.trialend` (ending and recording one, the sweep's own guards),
:mod:`gpusweep.resume` (what a dead orchestrator left running) and :mod:`gpusweep.sweepend`
(the sweep's state, exit code and summary run). The main thread does all the deciding and
all the record writing. State lives in the journal and the records, never only in memory: a
restart rebuilds the run list from the journal, ends what a dead orchestrator left running,
and goes on.
"""

from __future__ import annotations

import gc
import time
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import wait as wait_futures
from typing import Any

from gpusweep import signals
from gpusweep.config import SweepSpec
from gpusweep.errors import EXIT_OK, SweepAborted
from gpusweep.gpu.device import Device
from gpusweep.lock import SweepLock
from gpusweep.records import SweepState
from gpusweep.resume import resume
from gpusweep.session import SweepOptions, SweepSession, new_id
from gpusweep.slots import Slot, wait_for_exit
from gpusweep.source import TrialSource
from gpusweep.status import StopReason
from gpusweep.sweepend import outcome, record_end
from gpusweep.trialend import TrialFinisher
from gpusweep.trialstart import TrialStarter

__all__ = ["SweepOptions", "SweepRunner", "new_id"]  # the command lines' entry points

TICK_S = 0.05


class SweepRunner:
    """Runs a validated sweep to its end (or to Ctrl-C) and returns the exit code."""

    def __init__(self, spec: SweepSpec, options: SweepOptions, devices: list[Device],
                 display: Any, source: TrialSource | None = None) -> None:
        self.session = SweepSession(spec, options, devices, source)
        self.display = display
        self.starter = TrialStarter(self.session, display)
        self.finisher = TrialFinisher(self.session, display)
        self._lock = SweepLock(self.session.sweep_dir)
        self._interrupted: StopReason | None = None  # Ctrl-C (INTERRUPT) or SIGTERM (PREEMPT)

    def run(self) -> int:
        # Everything imported so far (wandb, sweeps, scipy: a million objects) lives as long
        # as the process: freezing it keeps each trial's gc.collect() to our own garbage.
        gc.collect()
        gc.freeze()
        session, source = self.session, self.session.source
        session.recorder.prepare(resume=source.resume)
        self._lock.acquire()
        # Ctrl-C, SIGTERM and SIGHUP set a flag; the loop stops the trials cleanly.
        previous = signals.trap(self._on_signal)
        session.start_clock()
        state, code, aborted = SweepState.FINISHED, EXIT_OK, None
        try:
            if source.resume:
                resume(session)
            session.baselines.start()
            self.display.sweep_started(session)
            session.recorder.write_sweep(SweepState.RUNNING)
            source.open(session)
            self._loop()
            state, code = outcome(self._interrupted, source.exit_code)
        except SweepAborted as exc:
            state, code, aborted = SweepState.ABORTED, exc.exit_code, str(exc)
        except BaseException:
            state = SweepState.CRASHED  # a bug of ours: the trials were still ended and recorded
            raise
        finally:
            self.finisher.stop_all(self._interrupted or StopReason.INTERRUPT)
            self.finisher.shutdown()
            source.close()
            record_end(session, state)
            signals.restore(previous)
            self._lock.release()
            gc.unfreeze()
            self.display.sweep_ended(session, state.value)
            if aborted:
                self.display.error(aborted)
        return code

    def _on_signal(self, signum: int) -> None:
        """The first signal's reason sticks (see :mod:`gpusweep.signals`)."""
        if self._interrupted is None:
            self._interrupted = signals.stop_reason(signum)

    def _loop(self) -> None:
        """Until the sweep is over: record ended trials, fill free slots, watch the running."""
        session = self.session
        while True:
            self.finisher.collect()
            if self._interrupted:
                return
            session.source.poll(session)
            session.filler.fill(self.starter.launch)
            if not session.running and session.source.over(session):
                return  # nothing running and nothing left to launch: the sweep is over
            for slot in session.slots:
                if slot.trial is not None and slot.finishing is None:
                    self._watch(slot)
            self.display.refresh(session)
            self._idle()

    def _watch(self, slot: Slot) -> None:
        """Read a trial's events; end it when it exited, or for Hyperband, time, host memory
        or a stall."""
        trial = slot.trial
        new_metric = trial.read_events()
        if trial.exited():
            pass  # it ended on its own: its exit decides its status, not a late stop
        elif stop := self.session.source.stop_for(self.session, trial, new_metric):
            trial.request_stop(*stop)
        elif trial.timed_out():
            trial.request_stop(StopReason.TIMEOUT, f"ran past isolation.timeout_s "
                               f"{self.session.spec.isolation.timeout_s:g} s")
        elif verdict := trial.guard():
            trial.request_stop(*verdict)
        if trial.stopping:
            self.finisher.begin(slot)

    def _idle(self) -> None:
        """Sleep until a trial exits, a finish completes, or the next tick."""
        slots = self.session.slots
        running = [s.trial.pid for s in slots if s.trial and s.finishing is None]
        finishing = [s.finishing for s in slots if s.finishing is not None]
        if running:
            wait_for_exit(running, TICK_S)
        elif finishing:
            wait_futures(finishing, timeout=TICK_S, return_when=FIRST_COMPLETED)
        else:
            time.sleep(TICK_S)  # waiting for the W&B server's next command
