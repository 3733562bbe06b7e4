"""One trial, start to end: launch, watch, stop, clean up, record.

The orchestrator side of a trial's process. ``finish`` is the ``finally`` of every trial,
whatever ended it: it ends the whole tree, collects garbage, waits until the GPU is back to
its baseline, and returns the record. The child records its own outcome (metrics, torch
peaks) through its events file; this side records what only the parent can see: its
accounting (:mod:`gpusweep.trialaccount`), its stop rules (:mod:`gpusweep.trialwatch`) and
the record built from them (:mod:`gpusweep.trialrecord`).
"""

from __future__ import annotations

import gc
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from gpusweep.bootstrap._gpusweep_secrets import redact
from gpusweep.cleanup import WaitResult, wait_until_clean
from gpusweep.config import SweepSpec
from gpusweep.controller import RunView
from gpusweep.events import EventTail, TrialEvents
from gpusweep.gpu.device import Device
from gpusweep.gpu.view import Baseline
from gpusweep.leak import leak_verdict
from gpusweep.process import containment, launcher
from gpusweep.process.containment import TrialContainment
from gpusweep.process.launcher import TrialPaths, with_config_file
from gpusweep.process.monitor import Monitor
from gpusweep.records import LeakRecord, MetricSummary, Timeline, TrialRecord
from gpusweep.status import EngineState, StopReason, TrialStatus, signal_name
from gpusweep.trialaccount import TrialAccount, iso_from_unix, now_iso
from gpusweep.trialrecord import (
    best_metric,
    cleanup_record,
    fixed_wait_peak_mb,
    gpu_record,
    host_record,
    machine_mb,
    outcome,
    output_tail,
    rounded,
)
from gpusweep.trialwatch import TrialWatch

__all__ = ["Placement", "RunningTrial", "SweepContext", "TrialPlan", "iso_from_unix", "now_iso"]


@dataclass(frozen=True)
class TrialPlan:
    """What to run, decided before the start (the engine's params, the memory model's say)."""

    run_id: str
    params: dict[str, Any]
    retry_of: str | None = None
    predicted_peak_mb: float | None = None
    fit_note: str | None = None
    proposed: dict[str, Any] | None = None  # the engine's params when the model changed them


@dataclass(frozen=True)
class SweepContext:
    """What every trial of the sweep shares."""

    spec: SweepSpec
    sweep_id: str
    sweep_dir: str
    project: str | None
    extra_env: dict[str, str] = field(default_factory=dict)
    config_file: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where the trial runs: its slot's device and the other trials on it."""

    device: Device
    slot: int = 0
    neighbour_pids: Callable[[], set[int]] | None = None  # other trials' pids on the device


class RunningTrial:
    """A trial process and everything the orchestrator watches about it."""

    def __init__(self, plan: TrialPlan, sweep: SweepContext, placement: Placement) -> None:
        self.plan, self.sweep, self.placement = plan, sweep, placement
        self.paths = TrialPaths(sweep.sweep_dir, plan.run_id)
        self.token = uuid.uuid4().hex
        self.events = TrialEvents(sweep.spec.metric.name if sweep.spec.metric else None)
        self.account = TrialAccount()
        self.watch: TrialWatch | None = None  # from the start
        self.argv: list[str] = []
        self.contained: TrialContainment | None = None  # its launcher (and cgroup)
        self.monitor: Monitor | None = None
        # A run the W&B server hands out again (``resume``) finds its old events here: only
        # what it reports from now on is this trial's.
        self._tail = EventTail(self.paths.events, from_end=True)

    # The names the runner, the sources, the recorder and the display read.
    run_id = property(lambda self: self.plan.run_id)
    params = property(lambda self: self.plan.params)
    retry_of = property(lambda self: self.plan.retry_of)
    predicted_peak_mb = property(lambda self: self.plan.predicted_peak_mb)
    spec = property(lambda self: self.sweep.spec)
    device = property(lambda self: self.placement.device)
    slot = property(lambda self: self.placement.slot)
    stop_reason = property(lambda self: self.account.stop_reason)

    @property
    def popen(self) -> Any:
        """The launcher's Popen (it mirrors the trial's exit); None before the start."""
        return self.contained.process.popen if self.contained else None

    # -- start ---------------------------------------------------------------------------
    def start(self, environ: dict[str, str]) -> None:
        """Write the param files, build argv and env, start the process and its monitor."""
        spec, sweep = self.spec, self.sweep
        self.argv = launcher.build_argv(spec.command, spec.program, self.params,
                                        self.paths.args_json_file, environ=environ)
        if sweep.config_file:
            self.argv = with_config_file(self.argv, sweep.config_file)
        launcher.write_param_files(self.paths, self.params,
                                   argv_uses_json="${args_json_file}" in spec.command)
        env = launcher.trial_env(environ, sweep_id=sweep.sweep_id, run_id=self.run_id,
                                 token=self.token, paths=self.paths, project=sweep.project,
                                 device=self.device, sweep_name=spec.name)
        env.update(sweep.extra_env)
        self.account.started()
        contained = containment.start(self.argv, env, self.paths, isolation=spec.isolation,
                                      name=f"{sweep.sweep_id}-{self.run_id}")
        try:
            self.monitor = Monitor(contained.process.pid, self.device,
                                   spec.isolation.monitor.hz, self.paths.memory_csv,
                                   launcher_pid=contained.process.launcher_pid,
                                   neighbour_pids=self.placement.neighbour_pids).start()
        except BaseException:
            contained.end(self.token, (), spec.isolation.stop.grace_s)
            raise
        self.contained = contained
        self.watch = TrialWatch(spec.isolation, self.account.t_start)

    # -- while it runs -------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """The trial's main process, which leads its process group."""
        assert self.contained is not None
        return self.contained.process.pid

    def exited(self, timeout_s: float = 0.0) -> bool:
        """Whether the trial's main process has exited (waits up to ``timeout_s``).

        Also True when its launcher was killed: the trial's exit status is then unknown, and
        :meth:`finish` ends whatever is left of its tree.
        """
        assert self.contained is not None
        process = self.contained.process
        ended = process.poll(timeout_s) is not None
        if not ended and process.launcher_lost:
            ended = True
            self.account.note(process.lost_reason())
        if ended:
            self.account.exited()
        return ended

    def read_events(self) -> bool:
        """Take the trial's new events; True when the sweep metric got a new value."""
        new_metric = False
        reports = self.events.reports
        for event in self._tail.read_new():
            new_metric |= self.events.add(event)
        if self.events.reports > reports and self.watch is not None:
            self.watch.reported(time.monotonic())
        return new_metric

    def timed_out(self) -> bool:
        return self.watch is not None and self.watch.timed_out(time.monotonic())

    def guard(self) -> tuple[StopReason, str] | None:
        """Host memory and stall checks on the monitor's latest sample: a reason to stop."""
        assert self.monitor is not None and self.watch is not None
        device = self.device
        return self.watch.check(self.monitor.last, time.monotonic(), device.is_gpu,
                                device.utilization)

    def dump_stacks(self, settle_s: float = 1.0) -> int:
        """Ask every process that announced a stack dump handler for its Python stacks (they
        land in output.log), then wait until the log stops growing; returns how many."""
        seen = dict(self.monitor.seen) if self.monitor else {}
        asked = 0
        for pid in self.events.stackdump_pids:
            try:
                proc = psutil.Process(pid)
                if pid in seen and abs(proc.create_time() - seen[pid]) < 0.01:
                    proc.send_signal(signal.SIGUSR1)
                    asked += 1
            except (psutil.Error, OSError):
                continue
        if asked:
            _wait_until_stable(self.paths.output_log, settle_s)
        return asked

    def request_stop(self, reason: StopReason, text: str | None = None) -> None:
        """Mark the trial for stopping; :meth:`finish` ends the tree. The first reason sticks.

        A preemption leaves a marker file in the trial's directory before the tree gets its
        SIGTERM: the trial's bootstrap then marks its W&B run preempting
        (``run.mark_preempting()``) before it exits, so the server hands the run out again.
        """
        if self.account.stop(reason, text) and reason is StopReason.PREEMPT:
            try:
                with open(self.paths.preempt_marker, "w", encoding="utf-8") as handle:
                    handle.write("preempted\n")
            except OSError:
                pass  # the run is then not marked; the trial still ends

    @property
    def stopping(self) -> bool:
        return self.account.stopping

    def view(self) -> RunView:
        state = EngineState.FINISHED if self.stopping else EngineState.RUNNING
        proposed = self.plan.proposed
        params = proposed if proposed and self.spec.method == "grid" else self.params
        return RunView(self.run_id, params, state, list(self.events.history))

    # -- the finally ---------------------------------------------------------------------
    def finish(self, baseline: Baseline | float | None,
               neighbour_pids: Callable[[], set[int]] | None = None) -> TrialRecord:
        """The ``finally`` of the trial: stacks first if it stalled, then end the whole tree,
        reap, stop the monitor, gc, and wait until the GPU is clean; returns the record.

        ``neighbour_pids`` gives the processes of other trials on the same device, whose
        memory the wait leaves out (so one slot's trial never waits for its neighbour's).
        """
        if not isinstance(baseline, Baseline):
            baseline = Baseline(baseline)
        assert self.contained is not None and self.monitor is not None
        account = self.account
        try:
            if self.exited() and account.stop_reason in (StopReason.HYPERBAND,
                                                         StopReason.SERVER,
                                                         StopReason.INTERRUPT,
                                                         StopReason.PREEMPT):
                account.forget_stop()  # it ended on its own before we signalled anything
            if account.stop_reason is StopReason.STALL and account.t_exit is None:
                self.dump_stacks()
            self._end_tree()  # the launcher is reaped there, its tree ended
        finally:
            self.monitor.stop()
        self.read_events()
        gc.collect()
        account.phase("wait_start")
        trial_pids = {pid for pid, _ in self.monitor.seen}
        for end in account.ends:
            trial_pids.update(end.ended_pids)
        peak_mb = fixed_wait_peak_mb(self.device.is_gpu, self.events, self.monitor.peaks)
        waited = wait_until_clean(self.device, baseline, trial_pids, self.spec.isolation.wait,
                                  neighbour_pids=neighbour_pids or self.placement.neighbour_pids,
                                  peak_mb=peak_mb)
        account.phase("wait_end")
        return self._record(baseline.used_mb, waited)

    def pids(self) -> set[int]:
        """Every pid seen in this trial's tree (for the neighbours' GPU wait)."""
        return {pid for pid, _ in self.monitor.seen} if self.monitor else set()

    def output_tail(self, lines: int = 15) -> str | None:
        """The last lines of output.log (secrets masked), for records and messages."""
        return output_tail(self.paths.output_log, lines)

    def _end_tree(self) -> None:
        assert self.contained is not None and self.monitor is not None
        self.account.tree_ended(self.contained.end(self.token, self.monitor.seen,
                                                   self.spec.isolation.stop.grace_s))
        self.exited()

    def _record(self, baseline_mb: float | None, waited: WaitResult) -> TrialRecord:
        assert self.contained is not None and self.monitor is not None
        contained, account, events, spec = self.contained, self.account, self.events, self.spec
        returncode = contained.process.returncode
        peaks = self.monitor.peaks
        failed = returncode != 0 and account.stop_reason is None
        status, reason, oom = outcome(
            returncode, account.stop_reason, account.reason_text, events=events,
            output_tail=self.output_tail(200) if failed else None,
            oom_kills=contained.oom_kills, peaks=peaks,
            rss_limit_mb=spec.isolation.limits.rss_mb, machine_mb=machine_mb())
        leak = leak_verdict([m.get("rss_mb") for m in events.report_memory],
                            [m.get("torch_allocated_mb") for m in events.report_memory],
                            spec.isolation.leak)
        values = events.metric_values
        minimize = None if spec.metric is None else spec.metric.goal == "minimize"
        plan = self.plan
        return TrialRecord(
            run=plan.run_id,
            params=plan.params,
            status=status,
            exit_code=returncode,
            signal=signal_name(returncode),
            started=account.started_iso,
            ended=now_iso(),
            duration_s=account.duration_s(),
            retry_of=plan.retry_of,
            slot=self.slot,
            reason=reason,
            predicted_peak_mb=rounded(plan.predicted_peak_mb),
            fit_note=plan.fit_note,
            proposed=plan.proposed,
            oom_line=oom,
            metric=MetricSummary(events.metric_name, values[-1] if values else None,
                                 best_metric(values, minimize),
                                 len(values)),  # reports of the metric, not of any row
            gpu=gpu_record(self.device.info, baseline_mb, peaks,
                           self.monitor.gpu.summary(waited.foreign_mb), events, waited),
            host=host_record(peaks, events.report_memory, contained.peak_mb),
            cleanup=cleanup_record(account.ends, waited),
            containment=contained.kind,
            containment_note=contained.note,
            leak=LeakRecord(leak.rss_mb_per_step, leak.gpu_mb_per_step, leak.suspected),
            command=[redact(token) for token in self.argv],
            error=None if status is TrialStatus.FINISHED else self.output_tail(),
            wandb_run=events.wandb_run,
            timeline=Timeline(**{k: round(v, 3) for k, v in account.unix.items()}),
        )


def _wait_until_stable(path: str, settle_s: float, step_s: float = 0.1) -> None:
    """Wait until ``path`` stopped growing for a short while (at most ``settle_s``)."""
    deadline = time.monotonic() + settle_s
    last = -1
    while time.monotonic() < deadline:
        try:
            size = os.path.getsize(path)
        except OSError:
            return
        if size == last:
            return
        last = size
        time.sleep(step_s)
