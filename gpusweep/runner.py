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

from gpusweep import records as rec
from gpusweep.atomic import write_yaml
from gpusweep.cleanup import end_tree
from gpusweep.config import SweepSpec
from gpusweep.controller import Controller, RunView
from gpusweep.device import Device
from gpusweep.errors import EXIT_GPU_DIRTY, EXIT_INTERRUPTED, EXIT_OK, BadInput, SweepAborted
from gpusweep.journal import Journal
from gpusweep.records import SweepHeader, TrialRecord
from gpusweep.status import StopReason, TrialStatus
from gpusweep.trialrun import RunningTrial, engine_view, now_iso

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
        self.sweep_dir = os.path.join(options.log_dir, self.sweep_id)
        self.journal = Journal(os.path.join(self.sweep_dir, "journal.jsonl"))
        self.controller = Controller(spec, seed=self.sweep_id)
        self.records: list[TrialRecord] = []
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.rerun: list[dict[str, Any]] = []
        self.running: RunningTrial | None = None
        self.launched = 0
        self.baseline_mb: float | None = None
        self.header: SweepHeader | None = None
        self._interrupted = False
        self._wall_start = 0.0

    # -- public ----------------------------------------------------------------------------
    def run(self) -> int:
        self._prepare_dir()
        previous = self._trap_signals()
        self._wall_start = time.monotonic()
        state, code = "finished", EXIT_OK
        try:
            if self.options.resume:
                self._restore()
            self.baseline_mb = self.device.used_mb()
            self.display.sweep_started(self)
            self._write_sweep("running")
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
            self._write_sweep(state)
            self._restore_signals(previous)
            self.display.sweep_ended(self, state)
        return code

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._wall_start

    def views(self) -> list[RunView]:
        views = [engine_view(r, self.histories.get(r.run, [])) for r in self.records]
        if self.running is not None:
            views.append(self.running.view())
        return views

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
        os.makedirs(trial.paths.dir, exist_ok=True)
        self.journal.append({"event": "start", "run": trial.run_id, "params": params,
                             "token": trial.token, "t": time.time(), "origin": origin})
        reason: StopReason | None = None
        try:
            trial.start(dict(os.environ))
            self.journal.append({"event": "pid", "run": trial.run_id, "pgid": trial.pid})
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
        self.records.append(record)
        self.histories[record.run] = list(trial.events.history)
        rec.write_trial(trial.paths.memory_yaml, record)
        self.journal.append({"event": "end", "run": record.run, "record": record.to_dict(),
                             "history": self.histories[record.run]})
        self._write_sweep("running")
        self.display.trial_ended(self, record)
        if not record.cleanup.clean and self.spec.isolation.on_dirty == "abort":
            raise SweepAborted(
                f"GPU did not come back clean after {record.run} (residual "
                f"{record.gpu.residual_mb} MB after {record.cleanup.wait_s} s); "
                "on_dirty is abort", EXIT_GPU_DIRTY)

    # -- sweep dir, records, resume -------------------------------------------------------
    def _prepare_dir(self) -> None:
        """Create the sweep dir (or check the resumed one) and prove it is writable."""
        if self.options.resume and not os.path.isdir(self.sweep_dir):
            raise BadInput(self.sweep_dir, "--resume", "no such sweep directory")
        try:
            os.makedirs(self.sweep_dir, exist_ok=True)
            probe = os.path.join(self.sweep_dir, ".write-test")
            with open(probe, "w", encoding="utf-8") as handle:
                handle.write("ok")
            os.unlink(probe)
        except OSError as exc:
            raise BadInput(self.options.log_dir, "--log-dir",
                           f"not writable: {exc.strerror or exc}") from None
        if not self.options.resume:
            write_yaml(os.path.join(self.sweep_dir, "config.yaml"), self.spec.raw)
        self.header = SweepHeader(
            id=self.sweep_id, name=self.spec.name, config=self.spec.raw,
            method=self.spec.method,
            metric=None if self.spec.metric is None else
            {"name": self.spec.metric.name, "goal": self.spec.metric.goal},
            started=now_iso())

    def _restore(self) -> None:
        """Rebuild the run list from the journal; end and re-run what was cut off."""
        started: dict[str, dict[str, Any]] = {}
        for entry in self.journal.read():
            run = entry.get("run")
            if entry["event"] == "start":
                started[run] = dict(entry)
            elif entry["event"] == "pid" and run in started:
                started[run]["pgid"] = entry.get("pgid")
            elif entry["event"] == "end" and isinstance(entry.get("record"), dict):
                started.pop(run, None)
                self.records.append(TrialRecord.from_dict(entry["record"]))
                self.histories[run] = entry.get("history") or []
        for run, entry in started.items():
            self._close_orphan(run, entry)

    def _close_orphan(self, run: str, entry: dict[str, Any]) -> None:
        """A trial that was running when the orchestrator died: end it, record it killed."""
        ended = end_tree(entry.get("pgid"), entry.get("token"), (),
                         self.spec.isolation.stop.grace_s)
        gc.collect()
        record = TrialRecord(
            run=run, params=entry.get("params") or {}, status=TrialStatus.KILLED,
            exit_code=None, signal=None, started="", ended=now_iso(), duration_s=0.0,
            cleanup=rec.CleanupRecord(processes_killed=ended.processes_killed,
                                      escapees_killed=ended.escapees_killed,
                                      wait_s=0.0, clean=not ended.leftover),
            error="the orchestrator stopped while this trial ran; re-run under a new id")
        self.records.append(record)
        self.histories[run] = []
        trial_dir = os.path.join(self.sweep_dir, run)
        os.makedirs(trial_dir, exist_ok=True)
        rec.write_trial(os.path.join(trial_dir, "memory.yaml"), record)
        self.journal.append({"event": "end", "run": run, "record": record.to_dict(),
                             "history": []})
        if entry.get("origin") != "rerun":
            self.rerun.append(record.params)

    def _write_sweep(self, state: str) -> None:
        assert self.header is not None
        ended = None if state == "running" else now_iso()
        self.header = SweepHeader(**{**self.header.__dict__, "state": state, "ended": ended})
        rec.write_sweep(os.path.join(self.sweep_dir, "sweep.yaml"), self.header, self.records,
                        self.spec.metric)

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
