"""Filling the slots: which free slot gets a trial now, and how many trials ran side by side.

With a fixed count (``--slots N``, one per device by default) every free slot is filled. With
``auto`` each device has ``max_slots`` slots, and a free one is filled only when
:func:`gpusweep.autoslots.decide` says one more trial fits beside the running ones; this
module takes the readings that decision needs (device memory and utilization over a window,
the trials' peaks and CPU, the host's memory) and keeps the OOM back-off's ceilings: a
device's after a CUDA OOM, the host's after a host OOM. It also
counts, for every trial, the most trials that ran beside it (its record's ``beside``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gpusweep import autoslots
from gpusweep.autoslots import DeviceReading, HostReading, Verdict
from gpusweep.gpu.device import Device
from gpusweep.hostmemory import available_mb
from gpusweep.isolation import IsolationConfig
from gpusweep.records import TrialRecord
from gpusweep.slots import Slot, make_slots
from gpusweep.status import TrialStatus

SAMPLE_S = 0.2  # utilization and CPU readings: five a second is plenty for a 5 s window


def slot_count(cli: int | str | None, isolation: IsolationConfig) -> int | str | None:
    """``--slots`` wins over ``isolation.slots``; None is one per device."""
    return cli if cli is not None else isolation.slots


class SlotFiller:
    """The sweep's slots, and the decision which free ones to fill now."""

    def __init__(self, count: int | str | None, isolation: IsolationConfig,
                 devices: Sequence[Device]) -> None:
        self.auto = count == "auto"
        self.isolation = isolation
        self.devices = list(devices)
        total = isolation.max_slots * len(devices) if self.auto else count
        self.slots: list[Slot] = make_slots(total, devices)  # type: ignore[arg-type]
        self.limits = autoslots.Limits(isolation.max_slots, isolation.max_utilization_pct,
                                       isolation.fit.margin,
                                       isolation.limits.min_available_mb)
        self.window_s = isolation.utilization_window_s
        self.reached: dict[int, int] = {}  # id(device) -> most trials run side by side
        self.ceiling: dict[int, int] = {}  # id(device) -> its bound after a CUDA OOM
        self.host_ceiling: int | None = None  # all devices' bound after a host OOM
        self.last_reason: dict[int, str] = {}
        self.beside: dict[str, int] = {}  # run -> most other trials running beside it
        self._util: dict[int, deque[tuple[float, float | None]]] = {}
        self._cpu: dict[str, deque[tuple[float, float]]] = {}
        self._on_gpu: dict[str, float] = {}  # run -> when it first held GPU memory
        self._peak_gpu: dict[int, float] = {}  # id(device) -> largest trial peak seen
        self._peak_rss = 0.0
        self._sampled = 0.0
        self._cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)

    # -- the loop's calls ----------------------------------------------------------------
    def fill(self, launch: Callable[[Slot], bool]) -> None:
        """Start trials in the free slots that may have one now (``launch`` returns False
        when there is no trial to start, or when the admission made it wait)."""
        self._sample()
        for slot in self.slots:
            if not self.auto:
                while slot.free and launch(slot):
                    pass  # a skipped trial leaves the slot free for the next proposal
                continue
            while slot.free and self._may_fill(slot.device) and launch(slot):
                self._count()
        self._count()

    def ended(self, record: TrialRecord, device: Device) -> TrialRecord:
        """The record with ``beside``; a CUDA OOM lowers the device's ceiling, a host OOM
        the host's (host memory is shared by every device's trials)."""
        if self.auto and record.status is TrialStatus.OOM:
            running = 1 + len(self._running(device))
            self.ceiling[id(device)] = min(self.ceiling.get(id(device), running),
                                           autoslots.after_oom(running))
        if self.auto and record.status is TrialStatus.HOST_OOM:
            running = 1 + len(self._trials())
            self.host_ceiling = min(self.host_ceiling or running, autoslots.after_oom(running))
        if record.gpu.peak_tree_mb is not None:
            key = id(device)
            self._peak_gpu[key] = max(self._peak_gpu.get(key, 0.0), record.gpu.peak_tree_mb)
        rss = record.host.peak_rss_trial_mb or record.host.peak_rss_mb
        self._peak_rss = max(self._peak_rss, rss or 0.0)
        self._cpu.pop(record.run, None)
        self._on_gpu.pop(record.run, None)
        return dataclasses.replace(record, beside=self.beside.pop(record.run, None))

    # -- readings --------------------------------------------------------------------------
    def _trials(self) -> list[Any]:
        """The trials running now: not being cleaned up, and not exited since the loop last
        watched them (an exited trial's memory is free already, and its peak is no longer
        held: counted as running, it would make room look like more)."""
        return [s.trial for s in self.slots
                if s.trial is not None and s.finishing is None and not s.trial.exited()]

    def _running(self, device: Device) -> list[Any]:
        return [t for t in self._trials() if t.device is device and not t.stopping]

    def _count(self) -> None:
        """Every running trial has at least the others beside it now (a trial being cleaned
        up has ended: it runs beside none)."""
        trials = self._trials()
        for trial in trials:
            self.beside[trial.run_id] = max(self.beside.get(trial.run_id, 0), len(trials) - 1)
        for device in self.devices:
            key = id(device)
            self.reached[key] = max(self.reached.get(key, 0), len(self._running(device)))

    def _sample(self) -> None:
        if not self.auto:
            return
        now = time.monotonic()
        if now - self._sampled < SAMPLE_S:
            return
        self._sampled = now
        keep = self.window_s * 2
        for device in self.devices:
            samples = self._util.setdefault(id(device), deque())
            samples.append((now, device.utilization() if device.is_gpu else None))
            while samples and samples[0][0] < now - keep:
                samples.popleft()
        for trial in self._trials():
            if trial.run_id not in self._on_gpu and (_gpu_now(trial) or 0.0) > 0:
                self._on_gpu[trial.run_id] = now
            last = trial.monitor.last if trial.monitor else None
            if last is None:
                continue
            samples = self._cpu.setdefault(trial.run_id, deque())
            samples.append((now, last.cpu_s))
            while len(samples) > 1 and samples[1][0] < now - keep:
                samples.popleft()

    def _may_fill(self, device: Device) -> bool:
        """Whether the autoslots decision lets one more trial start on ``device`` now."""
        running = self._running(device)
        key = id(device)
        now = time.monotonic()
        target = self.reached.get(key, 0)
        refill = 0 < len(running) < target  # back to a count already measured to fit
        decision = autoslots.decide(
            self._device_reading(device, running, now, refill), self._host_reading(now),
            self.limits, self.ceiling.get(key), self.host_ceiling)
        self.last_reason[key] = decision.reason
        return decision.verdict is Verdict.ADD

    def _settles_from(self, trial: Any, device: Device) -> float:
        """When a trial's load starts to show: on a GPU, when it first held memory there (a
        trial still importing torch computes nothing yet); one that never does, ten windows
        after its start (it runs on the CPU)."""
        if not device.is_gpu:
            return trial.account.t_start
        return self._on_gpu.get(trial.run_id, trial.account.t_start + 9 * self.window_s)

    def _device_reading(self, device: Device, running: Sequence[Any], now: float,
                        refill: bool) -> DeviceReading:
        settled = refill or all(now - self._settles_from(t, device) >= self.window_s
                                for t in running)
        util = autoslots.window_mean(self._util.get(id(device), ()), now, self.window_s)
        if refill and util is not None:
            util = 0.0  # this many ran before: the window still holds the trial that ended
        if not device.is_gpu:
            return DeviceReading(len(running), False, settled)
        peaks = [_gpu_now(t) for t in running]
        largest = max([self._peak_gpu.get(id(device), 0.0)] + [p or 0.0 for p in peaks])
        free = device.free_mb()
        if free is not None:  # less what the running trials may still grow by
            for trial, now_mb in zip(running, peaks, strict=True):
                expected = trial.predicted_peak_mb or largest
                free -= max(0.0, expected - (now_mb or 0.0))
        return DeviceReading(len(running), True, settled, free, largest or None, util)

    def _host_reading(self, now: float) -> HostReading:
        trials = self._trials()
        rss = [_rss_now(t) for t in trials]
        rates = [autoslots.cpu_rate(self._cpu.get(t.run_id, ()), now, self.window_s)
                 for t in trials]
        known = [r for r in rates if r is not None]
        used = sum(known) if len(known) == len(rates) else None
        share = used / len(rates) if used is not None and rates else None
        return HostReading(available_mb(), max([self._peak_rss] + rss) or None, self._cores,
                           used, share, len(trials))

    def concurrency(self) -> dict[str, int]:
        """Per device label, the most trials it ran side by side (for the summary)."""
        return {d.info.label: self.reached.get(id(d), 0) for d in self.devices}


def _gpu_now(trial: Any) -> float | None:
    peaks = trial.monitor.peaks if trial.monitor else None
    return peaks.gpu_tree_mb if peaks else None


def _rss_now(trial: Any) -> float:
    peaks = trial.monitor.peaks if trial.monitor else None
    if peaks is None:
        return 0.0
    return (peaks.rss_trial_mb if peaks.rss_trial_mb is not None else peaks.rss_mb) or 0.0


def running_at(records: Iterable[TrialRecord]) -> list[tuple[float, int]]:
    """Concurrency over time from the records' start and end times: ``(unix time, trials
    running from then on)`` at every start and end, in order."""
    edges: list[tuple[float, int]] = []
    for record in records:
        start, end = record.timeline.start, record.timeline.exit
        if start is None or end is None:
            continue
        edges += [(start, 1), (end, -1)]
    steps, running = [], 0
    for t, delta in sorted(edges, key=lambda e: (e[0], e[1])):
        running += delta
        steps.append((t, running))
    return steps
