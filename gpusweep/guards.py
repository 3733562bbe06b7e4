"""Decisions taken while a trial runs, from the monitor's numbers: host memory and stalls.

Pure functions of numbers, so they are tested without processes; the runner asks them on
every tick and stops the tree when one answers with a reason.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass

from gpusweep.isolation import LimitsConfig

# A SIGKILL we did not send, with this little of the machine's memory left, was the kernel.
OOM_KILLER_AVAILABLE_FRACTION = 0.05
OOM_KILLER_RSS_FRACTION = 0.8


def host_memory_reason(
    tree_rss_mb: float, available_mb: float | None, limits: LimitsConfig
) -> str | None:
    """Why the trial must stop now for host memory, or None.

    Two guards: the tree's own limit (``limits.rss_mb``), and the machine's margin
    (``limits.min_available_mb``), so the kernel never has to choose a victim, which could be
    the orchestrator itself.
    """
    if limits.rss_mb is not None and tree_rss_mb > limits.rss_mb:
        return (f"the trial's processes used {tree_rss_mb:.0f} MB of RAM, over "
                f"isolation.limits.rss_mb {limits.rss_mb:.0f}")
    if available_mb is not None and available_mb < limits.min_available_mb:
        return (f"the machine had only {available_mb:.0f} MB of RAM available, under "
                f"isolation.limits.min_available_mb {limits.min_available_mb:.0f}")
    return None


def oom_killer_suspected(
    returncode: int | None,
    we_signalled: bool,
    peak_rss_mb: float | None,
    min_available_mb: float | None,
    machine_mb: float | None,
) -> bool:
    """Whether a SIGKILL that we did not send came from the kernel's OOM killer.

    The kernel kills with SIGKILL when memory runs out; the monitor saw either the tree's RSS
    near the machine's limit or the machine's available memory nearly gone.
    """
    if returncode != -signal.SIGKILL or we_signalled or not machine_mb:
        return False
    near_limit = peak_rss_mb is not None and peak_rss_mb >= OOM_KILLER_RSS_FRACTION * machine_mb
    exhausted = (min_available_mb is not None
                 and min_available_mb <= OOM_KILLER_AVAILABLE_FRACTION * machine_mb)
    return near_limit or exhausted


def cgroup_oom_reason(kills: int, limit_mb: float | None) -> str:
    """The record's reason when the kernel's OOM killer acted inside the trial's cgroup."""
    limit = "" if limit_mb is None else f" (isolation.limits.rss_mb {limit_mb:g} MB)"
    return (f"the kernel's OOM killer ended {kills} process(es) of the trial at its cgroup's "
            f"memory.max{limit}")


def stalled_for(
    now: float, last_activity: float, cpu_used_in_window_s: float, stall_s: float,
    cpu_fraction: float = 0.02,
) -> bool:
    """Whether a trial is stalled: no activity for ``stall_s`` and (almost) no CPU in that time.

    ``last_activity`` is the latest of the trial's start, its last report and its last GPU
    activity; the CPU used in the last ``stall_s`` seconds must stay under ``cpu_fraction`` of
    one core.
    """
    return now - last_activity >= stall_s and cpu_used_in_window_s < cpu_fraction * stall_s


@dataclass(frozen=True)
class Activity:
    """One look at a trial's whole tree, for the stall rule."""

    t: float  # monotonic seconds
    cpu_s: float  # CPU seconds the whole tree has used so far
    on_gpu: bool = False  # the trial's device is a GPU
    gpu_tree_mb: float | None = None  # GPU memory of the tree's processes (NVML, by pid)
    gpu_util: float | None = None  # the device's busy % (None: NVML could not say)


def gpu_active(previous_tree_mb: float | None, now: Activity) -> bool:
    """Whether the GPU shows that the trial may be computing.

    The device busy at all (it may be a neighbour's work: then we cannot call ours dead), the
    tree's GPU memory changed, or the tree holds GPU memory while NVML cannot say how busy the
    device is: unknown is never taken for idle.
    """
    if not now.on_gpu:
        return False
    if now.gpu_util is not None and now.gpu_util > 0:
        return True
    if now.gpu_tree_mb is not None and previous_tree_mb is not None \
            and abs(now.gpu_tree_mb - previous_tree_mb) >= 1.0:
        return True
    return now.gpu_util is None and bool(now.gpu_tree_mb)


class StallWindow:
    """The stall rule over a trial's last ``stall_s`` seconds: no report, no CPU and no GPU
    activity anywhere in its tree. Fed with readings and report times, it answers; the clock
    is the caller's, so it is tested with plain numbers.

    It keeps one CPU reading per ``stall_s / 50`` (a 30-minute window holds 50, not 36,000).
    """

    def __init__(self, stall_s: float, start: float, cpu_fraction: float = 0.02) -> None:
        self.stall_s = stall_s
        self.cpu_fraction = cpu_fraction
        self.resolution = stall_s / 50
        self.last_activity = start
        self._cpu: deque[tuple[float, float]] = deque()  # (t, tree CPU s), oldest first
        self._latest: Activity | None = None

    def due(self, now: float) -> bool:
        """Whether a new reading is wanted (the caller reads the GPU only then)."""
        return self._latest is None or now - self._latest.t >= min(self.resolution, 1.0)

    def reported(self, t: float) -> None:
        self.last_activity = max(self.last_activity, t)

    def observe(self, reading: Activity) -> None:
        previous = self._latest
        if gpu_active(previous.gpu_tree_mb if previous else None, reading):
            self.last_activity = max(self.last_activity, reading.t)
        self._latest = reading
        if not self._cpu or reading.t - self._cpu[-1][0] >= self.resolution:
            self._cpu.append((reading.t, reading.cpu_s))
        while len(self._cpu) > 1 and self._cpu[1][0] <= reading.t - self.stall_s:
            self._cpu.popleft()

    def verdict(self) -> str | None:
        """Why the trial is stalled as of the latest reading, or None."""
        if self._latest is None or not self._cpu:
            return None
        now = self._latest.t
        since, cpu_then = self._cpu[0]
        if since > now - self.stall_s:  # not watched for a whole window yet
            return None
        cpu_used = self._latest.cpu_s - cpu_then
        if not stalled_for(now, self.last_activity, cpu_used, self.stall_s, self.cpu_fraction):
            return None
        gpu = " and no GPU activity" if self._latest.on_gpu else ""
        return (f"no report, {cpu_used:.2f} s of CPU{gpu} in the whole tree in the last "
                f"{self.stall_s:g} s (isolation.stall_s)")

