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
from gpusweep.errors import (
    EXIT_FLAPPING,
    EXIT_GPU_DIRTY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SweepAborted,
)
from gpusweep.flapping import is_flapping
from gpusweep.lock import SweepLock
from gpusweep.oom import backoff_params
from gpusweep.recorder import SweepRecorder
from gpusweep.records import CleanupRecord, TrialRecord
from gpusweep.status import StopReason, TrialStatus
from gpusweep.trialrun import RunningTrial, now_iso

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
    profile_leaks: bool = False


@dataclass(frozen=True)
class Pending:
    """A trial to run before asking the engine: a re-run after a crash, or an OOM retry."""

    params: dict[str, Any]
    origin: str | None = None  # "rerun" | "oom-retry"
    retry_of: str | None = None
    depth: int = 0  # how many OOM retries led to this one


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
        self.pending: list[Pending] = []
        self.retry_depth: dict[str, int] = {}
        self.running: RunningTrial | None = None
        self.launched = 0
        self.baseline_mb: float | None = None
        self._interrupted = False
        self._wall_start = 0.0
        self._started_unix = 0.0
        self._lock = SweepLock(self.recorder.dir)
        self._ended_here: list[tuple[TrialStatus, float]] = []

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
        # Everything imported so far (wandb, sweeps, scipy: a million objects) lives as long
        # as the process: freezing it keeps each trial's gc.collect() to our own garbage.
        gc.collect()
        gc.freeze()
        self.recorder.prepare(resume=bool(self.options.resume))
        self._lock.acquire()
        previous = self._trap_signals()
        self._wall_start, self._started_unix = time.monotonic(), time.time()
        state, code = "finished", EXIT_OK
        try:
            if self.options.resume:
                for entry in self.recorder.restore():
                    self._close_orphan(entry)
            self.baseline_mb = self.device.used_mb()
            self.display.sweep_started(self)
            self.recorder.write_sweep("running")
            while not self._interrupted:
                pending = self._next_trial()
                if pending is None:
                    break
                self._run_trial(pending)
            if self._interrupted:
                state, code = "interrupted", EXIT_INTERRUPTED
        except SweepAborted as exc:
            state, code = "aborted", exc.exit_code
            self.display.message(str(exc))
        except BaseException:
            state = "crashed"  # a bug of ours: the trial was still ended and recorded
            raise
        finally:
            try:
                self.recorder.write_sweep(state, self.wall_s)
            except SweepAborted:
                pass  # the records cannot be written; those written before stay valid
            self._restore_signals(previous)
            self._lock.release()
            self.display.sweep_ended(self, state)
        return code

    # -- the loop ----------------------------------------------------------------------------
    def _next_trial(self) -> Pending | None:
        """The next trial (re-runs and OOM retries first), or None when the sweep is over."""
        if self.options.count is not None and self.launched >= self.options.count:
            return None
        if self.spec.run_cap is not None and len(self.records) >= self.spec.run_cap:
            return None
        if self.pending:
            return self.pending.pop(0)
        params = self.controller.propose(self.views())
        return None if params is None else Pending(params)

    def _run_trial(self, pending: Pending) -> None:
        trial = RunningTrial(run_id=new_id(), params=pending.params, spec=self.spec,
                             sweep_id=self.sweep_id, sweep_dir=self.sweep_dir,
                             device=self.device, project=self.options.project,
                             retry_of=pending.retry_of, extra_env=self._trial_env())
        self.running = trial
        self.launched += 1
        self.retry_depth[trial.run_id] = pending.depth
        self.recorder.trial_started(trial, pending.origin)
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

    def _trial_env(self) -> dict[str, str]:
        env = {"GPUSWEEP_LEAK_WARMUP": str(self.spec.isolation.leak.warmup_steps)}
        if self.options.profile_leaks:
            env["GPUSWEEP_PROFILE_LEAKS"] = "1"
        return env

    def _watch(self, trial: RunningTrial) -> None:
        """Read the trial's events; stop it for Hyperband, time, host memory or a stall."""
        if trial.read_events() and trial.run_id in self.controller.to_stop(self.views()):
            trial.stop(StopReason.HYPERBAND)
        elif trial.timed_out():
            trial.stop(StopReason.TIMEOUT, f"ran past isolation.timeout_s "
                       f"{self.spec.isolation.timeout_s:g} s")
        elif verdict := trial.guard():
            reason, text = verdict
            if reason is StopReason.STALL:
                trial.dump_stacks()
            trial.stop(reason, text)

    def _finish(self, trial: RunningTrial, reason: StopReason | None) -> None:
        """The finally of every trial: stop, clean, wait, record; then the sweep's guards."""
        if reason is not None:
            trial.stop(reason)
        try:
            record = trial.finish(self.baseline_mb)
        finally:
            self.running = None
        self.recorder.trial_ended(record, trial.events.history)
        self.display.trial_ended(self, record)
        self._ended_here.append((record.status, time.time() - self._started_unix))
        if record.status is TrialStatus.OOM:
            self._queue_oom_retry(record)
        if not record.cleanup.clean and self.spec.isolation.on_dirty == "abort":
            raise SweepAborted(
                f"GPU did not come back clean after {record.run} (residual "
                f"{record.gpu.residual_mb} MB after {record.cleanup.wait_s} s); "
                "on_dirty is abort", EXIT_GPU_DIRTY)
        flapping = self.spec.isolation.flapping
        if is_flapping(self._ended_here, flapping):
            raise SweepAborted(
                f"error: the first {len(self._ended_here)} trials all failed within "
                f"{flapping.window_s:g} s: the environment looks broken, sweep stopped "
                f"(isolation.flapping). Last trial {record.run} ended with:\n"
                f"{record.error or '(no output)'}", EXIT_FLAPPING)

    def _queue_oom_retry(self, record: TrialRecord) -> None:
        """Run the same params again with a smaller batch, up to ``max_retries`` times."""
        config = self.spec.isolation.oom
        depth = self.retry_depth.get(record.run, 0)
        if not config.retry or depth >= config.max_retries:
            return
        params = backoff_params(record.params, config)
        if params is not None:
            self.pending.insert(0, Pending(params, "oom-retry", record.run, depth + 1))

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
            self.pending.append(Pending(record.params, "rerun"))

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
