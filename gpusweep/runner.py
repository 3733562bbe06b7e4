"""The sweep loop: ask the engine, run one isolated trial, record it, repeat.

State lives in the journal and the records, never only in memory: ``--resume`` rebuilds the
run list from the journal, ends what a dead orchestrator left running, and goes on.
"""

from __future__ import annotations

import gc
import os
import secrets
import signal
import string
import time
from dataclasses import dataclass
from typing import Any

from gpusweep.cleanup import end_tree
from gpusweep.config import SweepSpec
from gpusweep.controller import Controller, RunView
from gpusweep.device import Device
from gpusweep.errors import EXIT_GPU_DIRTY, EXIT_INTERRUPTED, EXIT_OK, SweepAborted
from gpusweep.recorder import SweepRecorder
from gpusweep.records import CleanupRecord, TrialRecord
from gpusweep.status import StopReason, TrialStatus
from gpusweep.trialrun import RunningTrial, now_iso
from gpusweep.wandb_summary import publish_summary

TICK_S = 0.05
_ALPHABET = string.ascii_lowercase + string.digits


def new_id(length: int = 8) -> str:
    """A W&B-style id: lowercase letters and digits."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class SweepOptions:
    log_dir: str = "log"
    count: int | None = None
    resume: str | None = None
    project: str | None = None


class SweepRunner:
    """Runs a validated sweep to its end (or to Ctrl-C) and returns the exit code."""

    def __init__(self, spec: SweepSpec, options: SweepOptions, device: Device,
                 display: Any) -> None:
        self.spec = spec
        self.options = options
        self.device = device
        self.display = display
        self.sweep_id = options.resume or new_id()
        self.recorder = SweepRecorder(options.log_dir, self.sweep_id, spec)
        self.controller = Controller(spec, seed=self.sweep_id)
        self.rerun: list[dict[str, Any]] = []
        self.running: RunningTrial | None = None
        self.launched = 0
        self.baseline_mb: float | None = None
        self._interrupted = False
        self._wall_start = 0.0

    @property
    def sweep_dir(self) -> str:
        return self.recorder.dir

    @property
    def records(self) -> list[TrialRecord]:
        return self.recorder.records

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._wall_start

    def views(self) -> list[RunView]:
        views = self.recorder.views()
        if self.running is not None:
            views.append(self.running.view())
        return views

    # -- public ----------------------------------------------------------------------------
    def run(self) -> int:
        self.recorder.prepare(resume=bool(self.options.resume))
        previous = self._trap_signals()
        self._wall_start = time.monotonic()
        state, code = "finished", EXIT_OK
        try:
            if self.options.resume:
                for entry in self.recorder.restore():
                    self._close_orphan(entry)
            self.baseline_mb = self.device.used_mb()
            self.display.sweep_started(self)
            self.recorder.write_sweep("running")
            while not self._interrupted:
                params = self._next_params()
                if params is None:
                    break
                self._run_trial(*params)
            if self._interrupted:
                state, code = "interrupted", EXIT_INTERRUPTED
        except SweepAborted as exc:
            state, code = "aborted", exc.exit_code
            self.display.message(str(exc))
        except BaseException:
            state = "crashed"  # a bug of ours: the trial was still ended and recorded
            raise
        finally:
            self.recorder.write_sweep(state)
            publish_summary(self.sweep_dir, state)  # the W&B summary run, in a subprocess
            self._restore_signals(previous)
            self.display.sweep_ended(self, state)
        return code

    # -- the loop ----------------------------------------------------------------------------
    def _next_params(self) -> tuple[dict[str, Any], str | None] | None:
        """The next trial's params (a re-run first), or None when the sweep is over."""
        if self.options.count is not None and self.launched >= self.options.count:
            return None
        if self.spec.run_cap is not None and len(self.records) >= self.spec.run_cap:
            return None
        if self.rerun:
            return self.rerun.pop(0), "rerun"
        params = self.controller.propose(self.views())
        return None if params is None else (params, None)

    def _run_trial(self, params: dict[str, Any], origin: str | None) -> None:
        trial = RunningTrial(run_id=new_id(), params=params, spec=self.spec,
                             sweep_id=self.sweep_id, sweep_dir=self.sweep_dir,
                             device=self.device, project=self.options.project)
        self.running = trial
        self.launched += 1
        self.recorder.trial_started(trial, origin)
        reason: StopReason | None = None
        try:
            trial.start(dict(os.environ))
            self.recorder.trial_running(trial)
            self.display.trial_started(self, trial)
            while not trial.exited(TICK_S):
                if self._interrupted:
                    reason = StopReason.INTERRUPT
                    break
                self._watch(trial)
                if trial.stop_reason is not None:
                    break
                self.display.refresh(self)
        except BaseException:
            reason = reason or StopReason.INTERRUPT
            raise
        finally:
            self._finish(trial, reason)

    def _watch(self, trial: RunningTrial) -> None:
        """Read the trial's events; stop it if Hyperband says so or its time is up."""
        if trial.read_events() and trial.run_id in self.controller.to_stop(self.views()):
            trial.stop(StopReason.HYPERBAND)
        elif trial.timed_out():
            trial.stop(StopReason.TIMEOUT)

    def _finish(self, trial: RunningTrial, reason: StopReason | None) -> None:
        """The finally of every trial: stop, clean, wait, record; abort if the GPU stays dirty."""
        if reason is not None:
            trial.stop(reason)
        try:
            record = trial.finish(self.baseline_mb)
        finally:
            self.running = None
        self.recorder.trial_ended(record, trial.events.history)
        self.display.trial_ended(self, record)
        if not record.cleanup.clean and self.spec.isolation.on_dirty == "abort":
            raise SweepAborted(
                f"GPU did not come back clean after {record.run} (residual "
                f"{record.gpu.residual_mb} MB after {record.cleanup.wait_s} s); "
                "on_dirty is abort", EXIT_GPU_DIRTY)

    def _close_orphan(self, entry: dict[str, Any]) -> None:
        """A trial that was running when the orchestrator died: end it, record it killed."""
        ended = end_tree(entry.get("pgid"), entry.get("token"), (),
                         self.spec.isolation.stop.grace_s)
        gc.collect()
        record = TrialRecord(
            run=entry["run"], params=entry.get("params") or {}, status=TrialStatus.KILLED,
            exit_code=None, signal=None, started="", ended=now_iso(), duration_s=0.0,
            cleanup=CleanupRecord(processes_killed=ended.processes_killed,
                                  escapees_killed=ended.escapees_killed,
                                  wait_s=0.0, clean=not ended.leftover),
            error="the orchestrator stopped while this trial ran; re-run under a new id")
        self.recorder.trial_ended(record, [])
        if entry.get("origin") != "rerun":
            self.rerun.append(record.params)

    # -- signals ----------------------------------------------------------------------------
    def _trap_signals(self) -> dict[int, Any]:
        """Ctrl-C and SIGTERM set a flag; the loop stops the trial cleanly and exits 130."""

        def interrupted(signum: int, frame: Any) -> None:
            self._interrupted = True

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, interrupted)
            except ValueError:  # not the main thread (tests driving the runner directly)
                pass
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
