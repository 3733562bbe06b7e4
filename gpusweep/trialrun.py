"""One trial, start to end: launch, watch, stop, clean up, record.

The orchestrator side of a trial. ``finish`` is the ``finally`` of every trial, whatever
ended it: it ends the whole tree, collects garbage, waits until the GPU is back to its
baseline, and returns the record. The child records its own outcome (metrics, torch peaks)
through its events file; this side records what only the parent can see.
"""

from __future__ import annotations

import gc
import os
import subprocess
import time
import uuid
from datetime import datetime
from typing import Any

from gpusweep import launcher
from gpusweep.cleanup import EndResult, end_tree, wait_until_clean
from gpusweep.config import SweepSpec
from gpusweep.controller import RunView
from gpusweep.device import Device
from gpusweep.events import EventTail, TrialEvents
from gpusweep.launcher import TrialPaths
from gpusweep.monitor import Monitor
from gpusweep.records import (
    CleanupRecord,
    GpuRecord,
    HostRecord,
    MetricSummary,
    Timeline,
    TrialRecord,
)
from gpusweep.redact import redact
from gpusweep.status import StopReason, TrialStatus, classify, signal_name


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


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
    ) -> None:
        self.run_id = run_id
        self.params = params
        self.spec = spec
        self.sweep_id = sweep_id
        self.device = device
        self.project = project
        self.paths = TrialPaths(sweep_dir, run_id)
        self.token = uuid.uuid4().hex
        self.events = TrialEvents(spec.metric.name if spec.metric else None)
        self.stop_reason: StopReason | None = None
        self.argv: list[str] = []
        self.popen: subprocess.Popen | None = None
        self.monitor: Monitor | None = None
        self.started_iso = ""
        self.t_start = 0.0
        self.t_exit: float | None = None
        self._unix: dict[str, float] = {}  # phase -> unix time, for the record's timeline
        self._tail = EventTail(self.paths.events)
        self._ends: list[EndResult] = []

    # -- start ---------------------------------------------------------------------------
    def start(self, environ: dict[str, str]) -> None:
        """Write the param files, build argv and env, start the process and its monitor."""
        spec = self.spec
        self.argv = launcher.build_argv(spec.command, spec.program, self.params,
                                        self.paths.args_json_file, environ=environ)
        launcher.write_param_files(self.paths, self.params,
                                   argv_uses_json="${args_json_file}" in spec.command)
        env = launcher.trial_env(environ, sweep_id=self.sweep_id, run_id=self.run_id,
                                 token=self.token, paths=self.paths, project=self.project,
                                 device=self.device, sweep_name=spec.name)
        self.started_iso = now_iso()
        self.t_start = time.monotonic()
        self._unix["start"] = time.time()
        self.popen = launcher.start(self.argv, env, self.paths)
        hz = spec.isolation.monitor.hz
        self.monitor = Monitor(self.popen.pid, self.device, hz, self.paths.memory_csv).start()

    # -- while it runs -------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def exited(self, timeout_s: float = 0.0) -> bool:
        """Whether the trial's main process has exited (waits up to ``timeout_s``)."""
        assert self.popen is not None
        if self.popen.returncode is None:
            try:
                self.popen.wait(timeout=timeout_s) if timeout_s > 0 else self.popen.poll()
            except subprocess.TimeoutExpired:
                pass
        if self.popen.returncode is not None and self.t_exit is None:
            self.t_exit = time.monotonic()
            self._unix["exit"] = time.time()
        return self.popen.returncode is not None

    def read_events(self) -> bool:
        """Take the trial's new events; True when the sweep metric got a new value."""
        new_metric = False
        for event in self._tail.read_new():
            new_metric |= self.events.add(event)
        return new_metric

    def timed_out(self) -> bool:
        limit = self.spec.isolation.timeout_s
        return limit is not None and time.monotonic() - self.t_start > limit

    def stop(self, reason: StopReason) -> None:
        """End the whole tree now (polite signal, grace, kill); the first reason sticks."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._end_tree()

    def view(self) -> RunView:
        state = "running" if self.t_exit is None else "finished"
        return RunView(self.run_id, self.params, state, list(self.events.history))

    # -- the finally ---------------------------------------------------------------------
    def finish(self, baseline_mb: float | None) -> TrialRecord:
        """End the tree, reap, stop the monitor, gc, wait for a clean GPU; the record."""
        assert self.popen is not None and self.monitor is not None
        try:
            self._end_tree()
            self.popen.wait()
            self.exited()
        finally:
            self.monitor.stop()
        self.read_events()
        gc.collect()
        self._unix["wait_start"] = time.time()
        trial_pids = {pid for pid, _ in self.monitor.seen}
        for end in self._ends:
            trial_pids.update(end.ended_pids)
        waited = wait_until_clean(self.device, baseline_mb, trial_pids, self.spec.isolation.wait)
        self._unix["wait_end"] = time.time()
        return self._record(baseline_mb, waited)

    def _end_tree(self) -> None:
        assert self.popen is not None and self.monitor is not None
        seen = self.monitor.seen
        self._ends.append(end_tree(self.popen.pid, self.token, seen,
                                   self.spec.isolation.stop.grace_s))
        self.exited()

    def _record(self, baseline_mb: float | None, waited: Any) -> TrialRecord:
        assert self.popen is not None and self.monitor is not None
        returncode = self.popen.returncode
        status = classify(returncode, self.stop_reason)
        peaks = self.monitor.peaks
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
            metric=MetricSummary(self.events.metric_name, values[-1] if values else None, best,
                                 len(self.events.history)),
            gpu=GpuRecord(
                device=self.device.info.name,
                baseline_mb=_r(baseline_mb),
                peak_used_mb=_r(peaks.gpu_used_mb),
                peak_tree_mb=_r(peaks.gpu_tree_mb),
                torch_peak_allocated_mb=_r(self.events.torch_peak_allocated_mb),
                torch_peak_reserved_mb=_r(self.events.torch_peak_reserved_mb),
                residual_mb=_r(waited.residual_mb),
            ),
            host=HostRecord(peak_rss_mb=_r(peaks.rss_mb)),
            cleanup=CleanupRecord(
                processes_killed=sum(e.processes_killed for e in self._ends),
                escapees_killed=sum(e.escapees_killed for e in self._ends),
                wait_s=round(waited.wait_s, 3),
                clean=waited.clean and not any(e.leftover for e in self._ends),
            ),
            command=[redact(token) for token in self.argv],
            error=None if status is TrialStatus.FINISHED else self.output_tail(),
            timeline=Timeline(**{k: round(v, 3) for k, v in self._unix.items()}),
        )

    def output_tail(self, lines: int = 15) -> str | None:
        """The last lines of output.log (secrets masked), for records and messages."""
        try:
            with open(self.paths.output_log, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 16384))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return None
        tail = "\n".join(text.rstrip().splitlines()[-lines:])
        return redact(tail) or None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
