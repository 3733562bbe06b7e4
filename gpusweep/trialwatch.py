"""The rules that stop a running trial: its timeout, host memory, the stall window.

The decisions themselves are pure (:mod:`gpusweep.guards`: ``host_memory_reason``, the
``StallWindow``, whose clock is the caller's); this holds one trial's window and asks them on
each of the monitor's samples. The GPU's utilization is read only when the window wants a
new reading.
"""

from __future__ import annotations

from collections.abc import Callable

from gpusweep import guards
from gpusweep.isolation import IsolationConfig
from gpusweep.process.monitor import Sample
from gpusweep.status import StopReason


class TrialWatch:
    """One trial's stop rules, from its start (monotonic seconds)."""

    def __init__(self, isolation: IsolationConfig, t_start: float) -> None:
        self.isolation = isolation
        self.t_start = t_start
        self.stall = (None if isolation.stall_s is None  # null: the stall rule is off
                      else guards.StallWindow(isolation.stall_s, t_start))

    def timed_out(self, now: float) -> bool:
        limit = self.isolation.timeout_s
        return limit is not None and now - self.t_start > limit

    def reported(self, now: float) -> None:
        """The trial reported: a report is activity for the stall rule."""
        if self.stall is not None:
            self.stall.reported(now)

    def check(self, sample: Sample | None, now: float, on_gpu: bool,
              utilization: Callable[[], float | None]) -> tuple[StopReason, str] | None:
        """Host memory, then the stall rule, on the latest sample: a reason to stop."""
        if sample is None:
            return None
        text = guards.host_memory_reason(sample.rss_mb, sample.available_mb,
                                         self.isolation.limits)
        if text:
            return StopReason.HOST_MEMORY, text
        if self.stall is None:
            return None
        if self.stall.due(now):
            self.stall.observe(guards.Activity(now, sample.cpu_s, on_gpu, sample.gpu_tree_mb,
                                               utilization() if on_gpu else None))
        text = self.stall.verdict()
        return None if text is None else (StopReason.STALL, text)
