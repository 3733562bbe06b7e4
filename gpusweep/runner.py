"""The sweep session: one lifecycle for local and cloud sweeps.

Lock, signals, the GPU baseline, slots, every guard (limits, stall, timeout, leak, OOM
classification, admission, flapping, on_dirty), finishing in worker threads, records and the
summary run are the same whoever proposes the params; a :class:`~gpusweep.source.TrialSource`
says only which params to run next, which trial to stop, and when the sweep is over (W&B's
engine here, or the W&B server's commands).

The main thread does all the deciding and all the record writing; each trial's ending (the
tree stop with its grace period, the GPU wait) runs in a worker thread, so a slow stop in one
slot never holds up the others (nor the W&B heartbeats, which have threads of their own).
State lives in the journal and the records, never only in memory: a restart rebuilds the run
list from the journal, ends what a dead orchestrator left running, and goes on.
"""

from __future__ import annotations

import functools
import gc
import os
import secrets
import string
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

from gpusweep import signals
from gpusweep.admission import Action, Admission, admit, with_prediction_error
from gpusweep.bootstrap import _gpusweep_contract as contract
from gpusweep.cleanup import WaitResult, end_tree, wait_until_clean
from gpusweep.config import SweepSpec
from gpusweep.controller import RunView
from gpusweep.errors import (
    EXIT_FLAPPING,
    EXIT_GPU_DIRTY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SweepAborted,
    start_error,
)
from gpusweep.flapping import is_flapping
from gpusweep.gpu.baseline import DeviceBaselines
from gpusweep.gpu.device import Device
from gpusweep.lock import SweepLock
from gpusweep.recorder import SweepRecorder
from gpusweep.records import GpuRecord, SweepState, TrialRecord
from gpusweep.slotfill import SlotFiller, slot_count
from gpusweep.slots import Slot, wait_for_exit
from gpusweep.source import Pending, TrialSource
from gpusweep.status import StopReason, TrialStatus
from gpusweep.trialrun import Placement, RunningTrial, SweepContext, TrialPlan, now_iso
from gpusweep.wb.env import resolve_project
from gpusweep.wb.summary import agent_key, publish_summary

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
    slots: int | str | None = None  # N or "auto"; default: isolation.slots, or one per device
    entity: str | None = None
    config_file: str | None = None  # replaces --config_file's value in every trial's argv


class SweepRunner:
    """Runs a validated sweep to its end (or to Ctrl-C) and returns the exit code."""

    def __init__(self, spec: SweepSpec, options: SweepOptions, devices: list[Device],
                 display: Any, source: TrialSource | None = None) -> None:
        from gpusweep.local_source import LocalSource

        self.spec = spec
        self.options = options
        self.devices = devices
        self.display = display
        self.source: TrialSource = source or LocalSource(
            spec, options.resume or new_id(), resume=bool(options.resume))
        self.sweep_id = self.source.sweep_id
        # one project for the trials and the summary run
        self.project = options.project or resolve_project(None, spec.project, spec.program)
        self.recorder = SweepRecorder(options.log_dir, self.sweep_id, spec,
                                      config_file=options.config_file, project=self.project,
                                      entity=options.entity)
        self.filler = SlotFiller(slot_count(options.slots, spec.isolation), spec.isolation,
                                 devices)
        self.slots: list[Slot] = self.filler.slots
        self.launched = 0
        self.rerun_records = 0  # killed by our death (or preempted) and re-run: one run_cap
        self.baselines = DeviceBaselines(devices)  # per device, re-taken where PIDs lie
        self._interrupted: StopReason | None = None  # Ctrl-C (INTERRUPT) or SIGTERM (PREEMPT)
        self._wall_start = 0.0
        self._started_unix = 0.0
        self._lock = SweepLock(self.recorder.dir)
        self._ended_here: list[tuple[TrialStatus, float]] = []
        self._pool = ThreadPoolExecutor(max_workers=len(self.slots),
                                        thread_name_prefix="gpusweep-finish")

    @property
    def device(self) -> Device:
        return self.devices[0]

    @property
    def sweep_dir(self) -> str:
        return self.recorder.dir

    @property
    def records(self) -> list[TrialRecord]:
        return self.recorder.records

    @property
    def running(self) -> list[RunningTrial]:
        """Trials in a slot, running or being finished, in slot order."""
        return [slot.trial for slot in self.slots if slot.trial is not None]

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._wall_start

    def views(self) -> list[RunView]:
        return self.recorder.views() + [trial.view() for trial in self.running]

    # -- public ----------------------------------------------------------------------------
    def run(self) -> int:
        # Everything imported so far (wandb, sweeps, scipy: a million objects) lives as long
        # as the process: freezing it keeps each trial's gc.collect() to our own garbage.
        gc.collect()
        gc.freeze()
        self.recorder.prepare(resume=self.source.resume)
        self._lock.acquire()
        previous = self._trap_signals()
        self._wall_start, self._started_unix = time.monotonic(), time.time()
        state, code, aborted = SweepState.FINISHED, EXIT_OK, None
        try:
            if self.source.resume:
                self._resume()
            self.baselines.start()
            self.display.sweep_started(self)
            self.recorder.write_sweep(SweepState.RUNNING)
            self.source.open(self)
            self._loop()
            if self._interrupted:
                state, code = SweepState.INTERRUPTED, EXIT_INTERRUPTED
            code = self.source.exit_code or code
        except SweepAborted as exc:
            state, code, aborted = SweepState.ABORTED, exc.exit_code, str(exc)
        except BaseException:
            state = SweepState.CRASHED  # a bug of ours: the trials were still ended and recorded
            raise
        finally:
            self._stop_all(self._interrupted or StopReason.INTERRUPT)
            self._pool.shutdown(wait=True)
            self.source.close()
            try:
                self.recorder.write_sweep(state, self.wall_s)
            except SweepAborted:
                pass  # the records cannot be written; those written before stay valid
            # The W&B summary run: a detached subprocess, in the trials' project.
            publish_summary(self.sweep_dir, state, self.source.trial_environ(dict(os.environ)),
                            project=self.project, entity=self.options.entity,
                            agent=agent_key(self.sweep_dir),
                            backfill=not self.source.server_runs)
            self._restore_signals(previous)
            self._lock.release()
            gc.unfreeze()
            self.display.sweep_ended(self, state.value)
            if aborted:
                self.display.error(aborted)
        return code

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        """Until the sweep is over: record ended trials, fill free slots, watch the running."""
        while True:
            self._collect_finished()
            if self._interrupted:
                return
            self.source.poll(self)
            self.filler.fill(self._launch)
            if not self.running and self.source.over(self):
                return  # nothing running and nothing left to launch: the sweep is over
            for slot in self.slots:
                if slot.trial is not None and slot.finishing is None:
                    self._watch(slot)
            self.display.refresh(self)
            self._idle()

    def _idle(self) -> None:
        """Sleep until a trial exits, a finish completes, or the next tick."""
        running = [s.trial.pid for s in self.slots if s.trial and s.finishing is None]
        finishing = [s.finishing for s in self.slots if s.finishing is not None]
        if running:
            wait_for_exit(running, TICK_S)
        elif finishing:
            wait_futures(finishing, timeout=TICK_S, return_when=FIRST_COMPLETED)
        else:
            time.sleep(TICK_S)  # waiting for the W&B server's next command

    def _launch(self, slot: Slot) -> bool:
        """Start the next trial in ``slot``; False when there is none to start now."""
        pending = self.source.next_trial(self, slot)
        if pending is None:
            return False
        admitted = self._admit(slot, pending)
        if admitted.action is Action.WAIT:  # pack: let a neighbour on this device end first
            self.source.put_back(slot, pending)
            return False
        if admitted.action is Action.SKIP:
            self._record_skipped(slot, pending, admitted)
            return True
        self.baselines.before_launch(slot.device, busy=any(
            t.device is slot.device for t in self.running))
        plan = TrialPlan(pending.run_id or new_id(), admitted.params, pending.retry_of,
                         admitted.predicted_mb, admitted.reason,
                         proposed=None if admitted.params == pending.params else pending.params)
        sweep = SweepContext(self.spec, self.sweep_id, self.sweep_dir, self.project,
                             self._trial_env(), self.options.config_file)
        trial = RunningTrial(plan, sweep, Placement(
            slot.device, slot.index, functools.partial(self._neighbour_pids, slot)))
        self.launched += 1
        self.recorder.trial_started(trial, pending.origin, pending.rerun_of)
        try:
            trial.start(self.source.trial_environ(dict(os.environ)))
        except BaseException as exc:
            if trial.popen is not None:  # started, then failed: leave nothing behind
                end_tree(trial.popen.pid, trial.token, (), self.spec.isolation.stop.grace_s)
            if isinstance(exc, OSError):
                raise start_error(exc, trial.paths.dir) from None
            raise
        slot.trial = trial
        self.source.started(slot, trial)
        self.recorder.trial_running(trial)
        self.display.trial_started(self, trial)
        return True

    def _admit(self, slot: Slot, pending: Pending) -> Admission:
        """The memory model's say on this trial (run as is, shrunk, wait, or skip)."""
        return admit(pending.params, self.spec.isolation, self.records, slot.device,
                     [t for t in self.running if t.device is slot.device and not t.stopping],
                     pack=True if self.filler.auto else None)  # auto: wait, never crowd

    def _record_skipped(self, slot: Slot, pending: Pending, admitted: Admission) -> None:
        """A trial predicted not to fit: recorded, never started."""
        self.launched += 1
        now = now_iso()
        record = TrialRecord(
            run=pending.run_id or new_id(), params=admitted.params,
            status=TrialStatus.SKIPPED_NO_FIT,
            exit_code=None, signal=None, started=now, ended=now, duration_s=0.0,
            retry_of=pending.retry_of, slot=slot.index,
            predicted_peak_mb=None if admitted.predicted_mb is None
            else round(admitted.predicted_mb, 1), fit_note=admitted.reason,
            reason=admitted.reason,
            gpu=GpuRecord(device=slot.device.info.name, index=slot.device.info.index))
        self.recorder.trial_ended(record, [])
        self.display.trial_ended(self, record)
        self.source.ended(self, slot, record)

    def _trial_env(self) -> dict[str, str]:
        env = {contract.LEAK_WARMUP_ENV: str(self.spec.isolation.leak.warmup_steps)}
        if self.options.profile_leaks:
            env[contract.PROFILE_LEAKS_ENV] = "1"
        if self.options.entity:
            env["WANDB_ENTITY"] = self.options.entity
        return env

    def _watch(self, slot: Slot) -> None:
        """Read a trial's events; end it when it exited, or for Hyperband, time, host memory
        or a stall."""
        trial = slot.trial
        new_metric = trial.read_events()
        if trial.exited():
            pass  # it ended on its own: its exit decides its status, not a late stop
        elif stop := self.source.stop_for(self, trial, new_metric):
            trial.request_stop(*stop)
        elif trial.timed_out():
            trial.request_stop(StopReason.TIMEOUT, f"ran past isolation.timeout_s "
                               f"{self.spec.isolation.timeout_s:g} s")
        elif verdict := trial.guard():
            trial.request_stop(*verdict)
        if trial.stopping:
            self._begin_finish(slot)

    def _begin_finish(self, slot: Slot) -> None:
        """End the trial in a worker thread: tree stop, gc, the GPU wait, its record."""
        trial = slot.trial
        baseline = self.baselines.get(slot.device)
        neighbours = functools.partial(self._neighbour_pids, slot)

        def finish() -> TrialRecord:
            record = trial.finish(baseline, neighbours)
            self.source.after_finish(record)  # cloud: the run's summary, off the main thread
            return record

        slot.finishing = self._pool.submit(finish)

    def _neighbour_pids(self, slot: Slot) -> set[int]:
        """The processes of the other trials on this slot's device, running or being cleaned
        up (read at every poll: a neighbour may start while this trial is being cleaned up)."""
        pids: set[int] = set()
        for other in list(self.slots):
            neighbour = other.trial
            if other is not slot and other.device is slot.device and neighbour:
                pids |= neighbour.pids()
        return pids

    def _collect_finished(self) -> None:
        """Record every trial whose finish completed (main thread only)."""
        for slot in self.slots:
            if slot.finishing is not None and slot.finishing.done():
                trial, future = slot.trial, slot.finishing
                slot.trial = slot.finishing = None
                self._ended(slot, trial, future)

    def _record(self, trial: RunningTrial, future: Future) -> TrialRecord:
        """Write one ended trial's records (every path that ends a trial comes here)."""
        record = self.filler.ended(with_prediction_error(future.result()), trial.device)
        self.recorder.trial_ended(record, trial.events.history)
        self.display.trial_ended(self, record)
        return record

    def _ended(self, slot: Slot, trial: RunningTrial, future: Future) -> None:
        """Record one ended trial; then the sweep's own guards."""
        record = self._record(trial, future)
        self._ended_here.append((record.status, time.time() - self._started_unix))
        self.baselines.trial_ended(trial.device, trial.pids(), record.cleanup.clean)
        self.source.ended(self, slot, record)
        # Only a GPU proven dirty aborts; unknown (None) is recorded with its reason.
        if record.cleanup.clean is False and self.spec.isolation.on_dirty == "abort":
            raise SweepAborted(
                f"GPU did not come back clean after {record.run} (residual "
                f"{record.gpu.residual_mb} MB after {record.cleanup.wait_s} s); "
                "on_dirty is abort", EXIT_GPU_DIRTY)
        flapping = self.spec.isolation.flapping
        if is_flapping(self._ended_here, flapping):
            raise SweepAborted(
                f"error: {len(self._ended_here)} trials failed and none succeeded (within "
                f"{flapping.window_s:g} s, or in a row): the environment looks broken, sweep "
                f"stopped (isolation.flapping). Last trial {record.run} ended with:\n"
                f"{record.error or '(no output)'}", EXIT_FLAPPING)

    def _stop_all(self, reason: StopReason) -> None:
        """End every trial still in a slot and record it (Ctrl-C, abort, or a bug of ours)."""
        for slot in self.slots:
            if slot.trial is not None and slot.finishing is None:
                slot.trial.request_stop(reason)
                self._begin_finish(slot)
        for slot in self.slots:
            if slot.finishing is not None:
                trial, future = slot.trial, slot.finishing
                slot.trial = slot.finishing = None
                try:
                    self.source.ended(self, slot, self._record(trial, future))
                except SweepAborted:
                    continue  # the trial was ended; only its record could not be written

    def _resume(self) -> None:
        """End what the dead orchestrator left running (by token), let the source decide
        what runs again, and wait until the GPU let the orphans go (before the new baseline);
        each orphan's record carries that wait's verdict."""
        orphans = self.recorder.restore()
        self.rerun_records = self.recorder.reruns_started  # each replaced a killed record
        ended = [self.recorder.end_orphan(entry, self.spec.isolation.stop.grace_s)
                 for entry in orphans]
        orphan_pids = {pid for end in ended for pid in end.ended_pids}
        waits: list[WaitResult] = [
            wait_until_clean(device, None, orphan_pids, self.spec.isolation.wait)
            for device in (self.devices if orphan_pids else ())]
        self.source.restored(self, [self.recorder.orphan_ended(entry, end, waits)
                                    for entry, end in zip(orphans, ended, strict=True)])

    # -- signals ----------------------------------------------------------------------------
    def _trap_signals(self) -> signals.Handlers:
        """Ctrl-C, SIGTERM and SIGHUP set a flag; the loop stops the trials cleanly (see
        :mod:`gpusweep.signals`). The first signal's reason sticks."""

        def interrupted(signum: int) -> None:
            if self._interrupted is None:
                self._interrupted = signals.stop_reason(signum)

        return signals.trap(interrupted)

    def _restore_signals(self, previous: signals.Handlers) -> None:
        signals.restore(previous)
