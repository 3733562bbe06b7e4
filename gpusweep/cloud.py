"""Cloud mode: the W&B server proposes params and decides Hyperband; each trial runs isolated.

The agent is wandb's own (``wandb.wandb_agent.Agent``): its registration, heartbeat loop,
command handling (``run``, ``resume``, ``stop``, ``exit``), flapping rules and Ctrl-C tiers
are reused as they are. One method is replaced: ``_command_run`` starts our isolated
:class:`~gpusweep.trialrun.RunningTrial` instead of a bare ``Popen``, wrapped in
:class:`IsolatedRun`, an object with the ``poll/wait/terminate/kill`` interface wandb's loop
expects of a run process. Whatever ends a trial (its exit, a ``stop`` or ``exit`` command,
Ctrl-C), it goes through the same finish as locally: whole-tree stop, cleanup, the wait for
a clean GPU, the records (:class:`~gpusweep.recorder.SweepRecorder`), and then
``memory/residual_mb``, ``memory/wait_s`` and ``cleanup/clean`` pushed to the run's summary
through the public API.

wandb 0.31's agent internals (``_command_run``, ``_run_processes``, ``POLL_INTERVAL``) are
private names: ``pyproject.toml`` pins ``wandb<0.32``. Only verified at the seam here (a
fake API that answers wandb's own GraphQL calls); see README.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from wandb.wandb_agent import Agent, ShutdownSignal

from gpusweep.cleanup import wait_until_clean
from gpusweep.config import SweepSpec
from gpusweep.device import Device
from gpusweep.errors import EXIT_GPU_DIRTY, EXIT_INTERRUPTED, EXIT_OK, SweepAborted
from gpusweep.lock import SweepLock
from gpusweep.recorder import SweepRecorder
from gpusweep.records import TrialRecord
from gpusweep.slots import make_slots
from gpusweep.status import StopReason, TrialStatus
from gpusweep.trialrun import RunningTrial
from gpusweep.wandb_summary import publish_summary

TICK_S = 0.05


class IsolatedRun:
    """One isolated trial, seen by wandb's agent as a run process.

    ``terminate`` and ``kill`` both end the whole tree, clean up and wait for a clean GPU
    before they return; the first reason to stop sticks (``stop`` from the server means
    Hyperband, anything else is an interruption).
    """

    def __init__(self, trial: RunningTrial, sweep: CloudSweep) -> None:
        self.trial = trial
        self.sweep = sweep
        self.stop_reason: StopReason | None = None
        self.record: TrialRecord | None = None
        self.last_sigterm_time: float | None = None  # wandb's agent keeps this on the process

    def poll(self) -> int | None:
        """None while the trial runs; its exit code (for wandb's flapping rules) once
        ended and recorded."""
        if self.record is None:
            self.trial.read_events()
            if self.trial.timed_out():
                self._stop(StopReason.TIMEOUT)
                return self.returncode
            if not self.trial.exited():
                self.sweep.display.refresh(self.sweep)
                return None
            self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.sweep.terminating:  # SIGTERM: stop now rather than wait for the end
                self.terminate()
            code = self.poll()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.trial.argv, timeout or 0)
            self.trial.exited(TICK_S)

    def terminate(self) -> None:
        self._stop(self.stop_reason or StopReason.INTERRUPT)

    def kill(self) -> None:
        self._stop(self.stop_reason or StopReason.INTERRUPT)

    @property
    def returncode(self) -> int | None:
        """What wandb's agent counts: > 0 only for a failure of the trial itself."""
        if self.record is None:
            return None
        status = self.record.status
        if status in (TrialStatus.FINISHED, TrialStatus.STOPPED_EARLY):
            return 0
        if status is TrialStatus.KILLED:
            return -signal.SIGTERM
        code = self.record.exit_code
        return code if code is not None and code > 0 else 1

    def _stop(self, reason: StopReason) -> None:
        with _interrupts_deferred():  # a stop, once begun, ends with a record
            if self.record is None:
                self.trial.request_stop(reason)
                self._finish()

    def _finish(self) -> None:
        with _interrupts_deferred():
            if self.record is None:
                try:
                    self.record = self.trial.finish(self.sweep.baseline_mb)
                finally:
                    self.sweep.current = None
                self.sweep.trial_ended(self)


class CloudAgent(Agent):
    """wandb's agent, with each ``run`` command started as an isolated trial."""

    POLL_INTERVAL = Agent.POLL_INTERVAL  # seconds between heartbeats (tests make it short)

    def __init__(self, api: Any, sweep: CloudSweep, count: int | None = None,
                 poll_interval: float | None = None) -> None:
        super().__init__(api, queue.Queue(), sweep_id=sweep.sweep_id, count=count)
        self.sweep = sweep
        self.interrupted = False
        if poll_interval is not None:
            self.POLL_INTERVAL = poll_interval

    def _command_run(self, command: dict[str, Any]) -> None:
        # One trial at a time (one GPU, one baseline): the server gives an agent its next run
        # when the last one ended; should one come early, it waits for the running trial.
        for proc in list(self._run_processes.values()):
            proc.wait()
        run_id = command["run_id"]
        params = {k: v["value"] for k, v in command["args"].items()}
        proc = IsolatedRun(self.sweep.start_trial(run_id, params), self.sweep)
        self._run_processes[run_id] = proc
        self._last_report_time = None

    def _command_stop(self, command: dict[str, Any]) -> None:
        proc = self._run_processes.get(command.get("run_id"))
        if isinstance(proc, IsolatedRun) and proc.stop_reason is None:
            proc.stop_reason = StopReason.HYPERBAND  # the server's early termination
        super()._command_stop(command)

    def _run_loop(self, agent_id: str) -> None:
        try:
            super()._run_loop(agent_id)
        except ShutdownSignal:
            self.interrupted = True
            raise

    def stop_soon(self) -> None:
        """End the loop after this round (the GPU stayed dirty and on_dirty is abort)."""
        self._running = False


class CloudSweep:
    """Runs trials for a W&B sweep on this machine; records like a local sweep.

    Has the attributes the display reads from a runner (``records``, ``running``, ``spec``,
    ``sweep_id``, ``sweep_dir``, ``devices``, ``slots``, ``options``, ``wall_s``). One trial
    at a time: one slot (one process per GPU, or several machines, for more).
    """

    def __init__(self, *, api: Any, sweep_id: str, entity: str | None, project: str | None,
                 spec: SweepSpec, options: Any, device: Device, display: Any,
                 environ: dict[str, str], poll_interval: float | None = None) -> None:
        self.sweep_id = sweep_id
        self.entity = entity
        self.project = project
        self.spec = spec
        self.options = options
        self.device = device
        self.display = display
        self.environ = dict(environ, WANDB_SWEEP_ID=sweep_id)
        self.recorder = SweepRecorder(options.log_dir, sweep_id, spec)
        self.agent = CloudAgent(api, self, count=options.count, poll_interval=poll_interval)
        self.devices = [device]
        self.slots = make_slots(1, self.devices)
        self.current: RunningTrial | None = None
        self.baseline_mb: float | None = None
        self.aborted = False
        self.terminating = False  # SIGTERM arrived: stop the running trial, then leave
        self.summary_errors: list[str] = []
        self._wall_start = time.monotonic()

    @property
    def sweep_dir(self) -> str:
        return self.recorder.dir

    @property
    def records(self) -> list[TrialRecord]:
        return self.recorder.records

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._wall_start

    @property
    def running(self) -> list[RunningTrial]:
        return [self.current] if self.current is not None else []

    def run(self) -> int:
        """Work on the sweep until the server says exit, ``--count`` is reached or Ctrl-C.

        An agent restarted with the same ``--log-dir`` goes on with the records it left,
        after ending what it left running (found by token), like ``--resume`` does locally.
        """
        again = os.path.exists(self.recorder.journal.path)
        self.recorder.prepare(resume=again)
        lock = SweepLock(self.recorder.dir)
        lock.acquire()
        state, code, aborted = "finished", EXIT_OK, None
        previous = self._trap_sigterm()
        try:
            orphans: set[int] = set()
            for entry in self.recorder.restore() if again else ():
                orphans |= self.recorder.close_orphan(entry, self.spec.isolation.stop.grace_s)[1]
            if orphans:  # before the baseline: the GPU must first let the orphans go
                wait_until_clean(self.device, None, orphans, self.spec.isolation.wait)
            self.baseline_mb = self.device.used_mb()
            self.display.sweep_started(self)
            self.recorder.write_sweep("running")
            self.agent.run()  # wandb's loop; our IsolatedRun does the rest
            if self.aborted:
                state, code = "aborted", EXIT_GPU_DIRTY
            elif self.agent.interrupted:
                state, code = "interrupted", EXIT_INTERRUPTED
        except SweepAborted as exc:  # the records could not be written
            state, code, aborted = "aborted", exc.exit_code, str(exc)
        except BaseException:
            state = "crashed"
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            lock.release()
            with contextlib.suppress(SweepAborted):
                self.recorder.write_sweep(state, self.wall_s)
            publish_summary(self.sweep_dir, state, self.environ, project=self.project,
                            backfill=False)
            self.display.sweep_ended(self, state)
            if aborted:
                self.display.error(aborted)
        return code

    def _trap_sigterm(self) -> Any:
        """SIGTERM (a scheduler, ``kill``) ends the agent like Ctrl-C does, but stops the
        running trial at once (whole tree, cleanup, record) instead of waiting for it."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def terminate(signum: int, frame: Any) -> None:
            self.terminating = True
            raise ShutdownSignal(signum)

        return signal.signal(signal.SIGTERM, terminate)

    def start_trial(self, run_id: str, params: dict[str, Any]) -> RunningTrial:
        """Start the isolated trial for one ``run`` command of the server."""
        trial = RunningTrial(run_id=run_id, params=params, spec=self.spec,
                             sweep_id=self.sweep_id, sweep_dir=self.sweep_dir,
                             device=self.device, project=self.project)
        self.recorder.trial_started(trial, origin="wandb")
        self.current = trial
        try:
            trial.start(self.environ)
        except BaseException:
            self.current = None
            raise
        self.recorder.trial_running(trial)
        self.display.trial_started(self, trial)
        return trial

    def trial_ended(self, run: IsolatedRun) -> None:
        """Records, then what only we know goes to the run's summary on the server."""
        record = run.record
        assert record is not None
        self.recorder.trial_ended(record, run.trial.events.history)
        self.display.trial_ended(self, record)
        self.push_summary(record)
        if not record.cleanup.clean and self.spec.isolation.on_dirty == "abort":
            self.display.message(f"GPU did not come back clean after {record.run} "
                                 f"(residual {record.gpu.residual_mb} MB); on_dirty is abort")
            self.aborted = True
            self.agent.stop_soon()

    def push_summary(self, record: TrialRecord) -> None:
        """``memory/residual_mb``, ``memory/wait_s`` and ``cleanup/*`` (clean, processes and
        escapees killed) into the W&B run's summary through the public API; a failure is
        reported, never fatal."""
        path = "/".join(p for p in (self.entity, self.project, record.run) if p)
        values = {"memory/residual_mb": record.gpu.residual_mb,
                  "memory/wait_s": record.cleanup.wait_s, "cleanup/clean": record.cleanup.clean,
                  "cleanup/processes_killed": record.cleanup.processes_killed,
                  "cleanup/escapees_killed": record.cleanup.escapees_killed}
        try:  # the agent's current API object: wandb's loop renews it after each run
            self.agent._api.run(path).summary.update(values)
        except Exception as exc:
            message = f"could not update the W&B summary of {path}: {type(exc).__name__}"
            self.summary_errors.append(message)
            self.display.message(f"warning: {message}")


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until a trial's finish and record are done, then take effect
    (each handler that was in place runs then, once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for sig in dict.fromkeys(caught):
        handler = previous[sig]
        if callable(handler):
            handler(sig, None)
        elif sig == signal.SIGINT:
            raise KeyboardInterrupt
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), sig)
