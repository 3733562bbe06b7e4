"""One trial, start to end: launch, watch, stop, clean up, record.

The orchestrator side of a trial. ``finish`` is the ``finally`` of every trial, whatever
ended it: it ends the whole tree, collects garbage, waits until the GPU is back to its
baseline, and returns the record. The child records its own outcome (metrics, torch peaks)
through its events file; this side records what only the parent can see.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psutil

from gpusweep import containment, guards, launcher
from gpusweep.cleanup import EndResult, WaitResult, wait_until_clean
from gpusweep.config import SweepSpec
from gpusweep.containment import TrialContainment
from gpusweep.controller import RunView
from gpusweep.device import Device
from gpusweep.events import EventTail, TrialEvents
from gpusweep.gpuview import Baseline
from gpusweep.launcher import TrialPaths, with_config_file
from gpusweep.leak import leak_verdict
from gpusweep.monitor import Monitor
from gpusweep.oom import oom_line
from gpusweep.records import (
    CleanupRecord,
    GpuRecord,
    HostRecord,
    LeakRecord,
    MetricSummary,
    Timeline,
    TrialRecord,
)
from gpusweep.redact import redact
from gpusweep.status import StopReason, TrialStatus, classify, signal_name


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def iso_from_unix(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


class RunningTrial:
    """A trial process and everything the orchestrator watches about it."""

    def __init__(
        self,
        *,
        run_id: str,
        params: dict[str, Any],
        spec: SweepSpec,
        sweep_id: str,
        sweep_dir: str,
        device: Device,
        project: str | None,
        retry_of: str | None = None,
        extra_env: dict[str, str] | None = None,
        slot: int = 0,
        predicted_peak_mb: float | None = None,
        fit_note: str | None = None,
        proposed: dict[str, Any] | None = None,
        neighbour_pids: Callable[[], set[int]] | None = None,
        config_file: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.neighbour_pids = neighbour_pids  # other trials' pids on the same device
        self.config_file = config_file
        self.slot = slot
        self.predicted_peak_mb = predicted_peak_mb
        self.fit_note = fit_note
        self.proposed = proposed  # the engine's params when the memory model changed them
        self.retry_of = retry_of
        self.extra_env = dict(extra_env or {})
        self.params = params
        self.spec = spec
        self.sweep_id = sweep_id
        self.device = device
        self.project = project
        self.paths = TrialPaths(sweep_dir, run_id)
        self.token = uuid.uuid4().hex
        self.events = TrialEvents(spec.metric.name if spec.metric else None)
        self.stop_reason: StopReason | None = None
        self.reason_text: str | None = None
        self._stall: guards.StallWindow | None = None  # None: isolation.stall_s is null
        self.argv: list[str] = []
        self.contained: TrialContainment | None = None  # its launcher (and cgroup)
        self.popen: subprocess.Popen | None = None  # the launcher (mirrors the trial's exit)
        self.monitor: Monitor | None = None
        self.started_iso = ""
        self.t_start = 0.0
        self.t_exit: float | None = None
        self._unix: dict[str, float] = {}  # phase -> unix time, for the record's timeline
        # A run the W&B server hands out again (``resume``) finds its old events here: only
        # what it reports from now on is this trial's.
        self._tail = EventTail(self.paths.events, from_end=True)
        self._ends: list[EndResult] = []

    # -- start ---------------------------------------------------------------------------
    def start(self, environ: dict[str, str]) -> None:
        """Write the param files, build argv and env, start the process and its monitor."""
        spec = self.spec
        self.argv = launcher.build_argv(spec.command, spec.program, self.params,
                                        self.paths.args_json_file, environ=environ)
        if self.config_file:
            self.argv = with_config_file(self.argv, self.config_file)
        launcher.write_param_files(self.paths, self.params,
                                   argv_uses_json="${args_json_file}" in spec.command)
        env = launcher.trial_env(environ, sweep_id=self.sweep_id, run_id=self.run_id,
                                 token=self.token, paths=self.paths, project=self.project,
                                 device=self.device, sweep_name=spec.name)
        env.update(self.extra_env)
        self.started_iso = now_iso()
        self.t_start = time.monotonic()
        self._unix["start"] = time.time()
        contained = containment.start(self.argv, env, self.paths, isolation=spec.isolation,
                                      name=f"{self.sweep_id}-{self.run_id}")
        try:
            self.monitor = Monitor(contained.process.pid, self.device,
                                   spec.isolation.monitor.hz, self.paths.memory_csv,
                                   launcher_pid=contained.process.launcher_pid,
                                   neighbour_pids=self.neighbour_pids).start()
        except BaseException:
            contained.end(self.token, (), spec.isolation.stop.grace_s)
            raise
        self.contained, self.popen = contained, contained.process.popen
        if spec.isolation.stall_s is not None:
            self._stall = guards.StallWindow(spec.isolation.stall_s, self.t_start)

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
            self.reason_text = self.reason_text or process.lost_reason()
        if ended and self.t_exit is None:
            self.t_exit = time.monotonic()
            self._unix["exit"] = time.time()
        return ended

    def read_events(self) -> bool:
        """Take the trial's new events; True when the sweep metric got a new value."""
        new_metric = False
        reports = self.events.reports
        for event in self._tail.read_new():
            new_metric |= self.events.add(event)
        if self.events.reports > reports and self._stall is not None:
            self._stall.reported(time.monotonic())
        return new_metric

    def timed_out(self) -> bool:
        limit = self.spec.isolation.timeout_s
        return limit is not None and time.monotonic() - self.t_start > limit

    def guard(self) -> tuple[StopReason, str] | None:
        """Host memory and stall checks on the monitor's latest sample: a reason to stop."""
        assert self.monitor is not None
        sample = self.monitor.last
        if sample is None:
            return None
        isolation = self.spec.isolation
        text = guards.host_memory_reason(sample.rss_mb, sample.available_mb, isolation.limits)
        if text:
            return StopReason.HOST_MEMORY, text
        if self._stall is None:
            return None
        now = time.monotonic()
        if self._stall.due(now):
            on_gpu = self.device.is_gpu
            self._stall.observe(guards.Activity(now, sample.cpu_s, on_gpu, sample.gpu_tree_mb,
                                                self.device.utilization() if on_gpu else None))
        text = self._stall.verdict()
        return None if text is None else (StopReason.STALL, text)

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
        if self.stop_reason is None:
            self.stop_reason, self.reason_text = reason, text
            if reason is StopReason.PREEMPT:
                try:
                    with open(self.paths.preempt_marker, "w", encoding="utf-8") as handle:
                        handle.write("preempted\n")
                except OSError:
                    pass  # the run is then not marked; the trial still ends

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None or self.t_exit is not None

    def view(self) -> RunView:
        state = "finished" if self.stopping else "running"
        params = self.proposed if self.proposed and self.spec.method == "grid" else self.params
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
        try:
            if self.exited() and self.stop_reason in (StopReason.HYPERBAND, StopReason.SERVER,
                                                      StopReason.INTERRUPT,
                                                      StopReason.PREEMPT):
                # It ended on its own before we signalled anything: its exit decides.
                self.stop_reason = self.reason_text = None
            if self.stop_reason is StopReason.STALL and self.t_exit is None:
                self.dump_stacks()
            self._end_tree()  # the launcher is reaped there, its tree ended
        finally:
            self.monitor.stop()
        self.read_events()
        gc.collect()
        self._unix["wait_start"] = time.time()
        trial_pids = {pid for pid, _ in self.monitor.seen}
        for end in self._ends:
            trial_pids.update(end.ended_pids)
        waited = wait_until_clean(self.device, baseline, trial_pids, self.spec.isolation.wait,
                                  neighbour_pids=neighbour_pids or self.neighbour_pids,
                                  peak_mb=self._peak_mb())
        self._unix["wait_end"] = time.time()
        return self._record(baseline.used_mb, waited)

    def pids(self) -> set[int]:
        """Every pid seen in this trial's tree (for the neighbours' GPU wait)."""
        return {pid for pid, _ in self.monitor.seen} if self.monitor else set()

    def _end_tree(self) -> None:
        assert self.contained is not None and self.monitor is not None
        end = self.contained.end(self.token, self.monitor.seen, self.spec.isolation.stop.grace_s)
        self._ends.append(end)
        if end.leftover:
            self.reason_text = (self.reason_text or "") + \
                f" (pids {', '.join(map(str, end.leftover))} survived SIGKILL)"
        self.exited()

    def _record(self, baseline_mb: float | None, waited: WaitResult) -> TrialRecord:
        assert self.contained is not None and self.monitor is not None
        contained = self.contained
        returncode = contained.process.returncode
        peaks = self.monitor.peaks
        gpu = self.monitor.gpu.summary(waited.foreign_mb)
        clean, why = cleanup_verdict(waited, self._ends)
        failed = returncode != 0 and self.stop_reason is None
        oom = oom_line(self.events.errors, self.output_tail(200)) if failed else None
        cgroup_oom = failed and bool(contained.oom_kills)
        killer = cgroup_oom or failed and guards.oom_killer_suspected(
            returncode, False, peaks.rss_mb, peaks.min_available_mb, _machine_mb())
        status = classify(returncode, self.stop_reason, cuda_oom=oom is not None,
                          oom_killer=killer, preempting=self.events.preempting)
        reason = self.reason_text
        if cgroup_oom:
            reason = guards.cgroup_oom_reason(contained.oom_kills or 0,
                                              self.spec.isolation.limits.rss_mb)
        elif killer:
            reason = ("SIGKILL that gpusweep did not send, with host memory nearly exhausted: "
                      "the kernel's OOM killer")
        leak = leak_verdict([m.get("rss_mb") for m in self.events.report_memory],
                            [m.get("torch_allocated_mb") for m in self.events.report_memory],
                            self.spec.isolation.leak)
        values = self.events.metric_values
        best = None
        if values and self.spec.metric:
            best = (min if self.spec.metric.goal == "minimize" else max)(values)
        return TrialRecord(
            run=self.run_id,
            params=self.params,
            status=status,
            exit_code=returncode,
            signal=signal_name(returncode),
            started=self.started_iso,
            ended=now_iso(),
            duration_s=round((self.t_exit or time.monotonic()) - self.t_start, 3),
            retry_of=self.retry_of,
            slot=self.slot,
            reason=reason,
            predicted_peak_mb=_r(self.predicted_peak_mb),
            fit_note=self.fit_note,
            proposed=self.proposed,
            oom_line=oom,
            metric=MetricSummary(self.events.metric_name, values[-1] if values else None, best,
                                 len(values)),  # reports of the metric, not of any row
            gpu=GpuRecord(
                device=self.device.info.name,
                index=self.device.info.index,
                baseline_mb=_r(baseline_mb),
                peak_used_mb=_r(peaks.gpu_used_mb),
                peak_tree_mb=_r(gpu.peak_tree_mb),
                torch_peak_allocated_mb=_r(self.events.torch_peak_allocated_mb),
                torch_peak_reserved_mb=_r(self.events.torch_peak_reserved_mb),
                residual_mb=_r(waited.residual_mb),
                uuid=self.device.info.uuid,
                mig_index=self.device.info.mig_index,
                attribution=gpu.attribution,
                foreign_start_mb=_r(gpu.foreign_start_mb),
                foreign_end_mb=_r(gpu.foreign_end_mb),
                energy_j=_r(gpu.energy_j),
                util_mean_pct=_r(gpu.util_mean_pct),
                util_peak_pct=_r(gpu.util_peak_pct),
            ),
            host=HostRecord(peak_rss_mb=_r(self._host_peak_mb(peaks.rss_mb)),
                            min_available_mb=_r(peaks.min_available_mb),
                            peak_rss_trial_mb=_r(self._host_peak_mb(peaks.rss_trial_mb)),
                            cgroup_peak_mb=_r(contained.peak_mb)),
            cleanup=CleanupRecord(
                processes_killed=sum(e.processes_killed for e in self._ends),
                escapees_killed=sum(e.escapees_killed for e in self._ends),
                wait_s=round(waited.wait_s, 3),
                clean=clean,
                reason=why,
            ),
            containment=contained.kind,
            containment_note=contained.note,
            leak=LeakRecord(leak.rss_mb_per_step, leak.gpu_mb_per_step, leak.suspected),
            command=[redact(token) for token in self.argv],
            error=None if status is TrialStatus.FINISHED else self.output_tail(),
            wandb_run=self.events.wandb_run,
            timeline=Timeline(**{k: round(v, 3) for k, v in self._unix.items()}),
        )

    def _peak_mb(self) -> float | None:
        """The trial's peak for ``mode: fixed``: torch's reserved peak (what its size rule was
        set on), else its processes' NVML peak; the host peak on a machine with no GPU."""
        assert self.monitor is not None
        peaks = self.monitor.peaks
        if self.device.is_gpu:
            reserved = self.events.torch_peak_reserved_mb
            return reserved if reserved is not None else peaks.gpu_tree_mb
        return self._host_peak_mb(peaks.rss_mb)

    def _host_peak_mb(self, sampled: float | None) -> float | None:
        """The tree's sampled peak, or what the trial reported of its own RSS if that was
        higher (a trial shorter than the monitor's interval is sampled only at its start)."""
        reported = [m["rss_mb"] for m in self.events.report_memory
                    if isinstance(m.get("rss_mb"), (int, float))]
        peaks = [v for v in [sampled, *reported] if v is not None]
        return max(peaks) if peaks else None

    def output_tail(self, lines: int = 15) -> str | None:
        """The last lines of output.log (secrets masked), for records and messages."""
        try:
            with open(self.paths.output_log, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 65536))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return None
        return redact(error_tail(text, lines)) or None


def cleanup_verdict(waited: WaitResult, ends: list[EndResult]) -> tuple[bool | None, str | None]:
    """``cleanup.clean`` and its reason: a process that survived SIGKILL is dirty whatever
    the GPU says; otherwise the wait's verdict (None: not proven either way)."""
    leftover = sorted({pid for end in ends for pid in end.leftover})
    if leftover:
        return False, f"processes survived SIGKILL: {', '.join(map(str, leftover))}"
    return waited.clean, waited.reason


def error_tail(text: str, lines: int) -> str:
    """The last ``lines`` lines of a trial's output that say something about it: wandb's
    footer (``wandb:`` lines: run history, summary, sync hint) and blank lines are dropped
    first, or they push the traceback out."""
    kept = [line for line in text.splitlines()
            if line.strip() and not line.startswith("wandb:")]
    return "\n".join(kept[-lines:])


@functools.cache
def _machine_mb() -> float | None:
    return guards.machine_memory_mb()


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


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
