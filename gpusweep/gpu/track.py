"""What the monitor learns about a trial's GPU, one sample at a time.

Each sample reads the device once (used memory, NVML's process lists, utilization), splits
the listed memory into the trial's, its neighbours' and foreign (:mod:`gpusweep.gpu.view`),
looks at the device files of the trial's processes that NVML did not name (a container),
and keeps what the record needs: the peak the trial can be credited with, how it was
attributed, foreign memory at the start and the end, utilization, and the energy counter
read at the start and at the end.

Energy and utilization are the device's: a trial's own only while no other trial of the
sweep shares the device, so they are null when one did (and include other users' work on a
shared GPU, which NVML cannot separate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gpusweep.gpu import devfiles
from gpusweep.gpu.device import Device, Namespace
from gpusweep.gpu.view import (
    Attribution,
    Listed,
    attribute,
    namespace_evidence,
    next_namespace,
    split_usage,
)

FOREIGN_AFTER = 3  # readings in a row before NVML's PIDs are declared not ours
RISE_MB = 1.0  # the device's memory rose above where the trial found it


@dataclass(frozen=True)
class GpuSample:
    used_mb: float | None
    tree_mb: float | None
    foreign_mb: float | None
    util_pct: float | None


@dataclass(frozen=True)
class GpuSummary:
    """The GPU part of a trial's record."""

    attribution: str | None = None
    peak_tree_mb: float | None = None
    foreign_start_mb: float | None = None
    foreign_end_mb: float | None = None
    energy_j: float | None = None
    util_mean_pct: float | None = None
    util_peak_pct: float | None = None


class GpuTrack:
    """The GPU side of one trial's monitor (not thread-safe: the monitor holds its lock)."""

    def __init__(self, device: Device, neighbour_pids: Callable[[], set[int]] | None = None
                 ) -> None:
        self.device = device
        self._neighbour_pids = neighbour_pids or (lambda: set())
        self._matched = False
        self._holder_seen = False
        self._files_readable = False
        self._lists_readable = False
        self._foreign_votes = 0
        self._peak: float | None = None
        self._peak_unknown = False  # a matched reading whose memory NVML did not give
        self._foreign: list[float | None] = []
        self._first: tuple[Listed | None, set[int], set[int]] | None = None  # the first reading
        self._low_used: float | None = None  # the device's lowest used memory in this trial
        self._util: list[float] = []
        self._shared = False
        self._energy_start: float | None = None
        self._energy_end: float | None = None
        self._started = False

    def sample(self, tree: set[int]) -> GpuSample:
        device = self.device
        if not device.is_gpu:
            return GpuSample(None, None, None, None)
        if not self._started:
            self._started = True
            self._energy_start = device.energy_mj()
        used = device.used_mb()
        listed = device.process_memory_mb()
        neighbours = self._neighbour_pids()
        self._shared |= bool(neighbours)
        self._lists_readable |= listed is not None
        unnamed = tree - set(listed or ())
        holders, unreadable = devfiles.context_holders(unnamed)
        self._files_readable |= bool(unnamed - unreadable) or not unnamed
        self._holder_seen |= bool(holders)
        if used is not None:
            self._low_used = used if self._low_used is None else min(self._low_used, used)
        rose = used is not None and self._low_used is not None \
            and used > self._low_used + RISE_MB
        self._learn_namespace(listed, tree | neighbours, holders, rose)
        if self._first is None:
            self._first = (listed, set(tree), set(neighbours))
        usage = split_usage(listed, tree, neighbours, device.namespace)
        if usage.matched:
            self._matched = True
            if usage.tree_mb is None:
                self._peak_unknown = True
        if usage.tree_mb is not None:
            self._peak = usage.tree_mb if self._peak is None else max(self._peak, usage.tree_mb)
        self._foreign.append(usage.foreign_mb)
        util = device.utilization()
        if util is not None:
            self._util.append(util)
        return GpuSample(used, usage.tree_mb, usage.foreign_mb, util)

    def _learn_namespace(self, listed, ours: set[int], holders: set[int], rose: bool) -> None:
        """The device's namespace after this reading (:func:`gpusweep.gpu.view.next_namespace`:
        FOREIGN only after a few in a row with the device's memory risen)."""
        device = self.device
        if device.namespace is Namespace.MATCHED:
            return
        evidence = namespace_evidence(listed, ours, devfiles.holds_context, holders)
        device.namespace, self._foreign_votes = next_namespace(
            device.namespace, evidence, self._foreign_votes, rose, FOREIGN_AFTER)

    def stop(self) -> None:
        """The trial's processes are gone: read the energy counter once more."""
        if self._started and self._energy_end is None:
            self._energy_end = self.device.energy_mj()

    def summary(self, foreign_end_mb: float | None = None) -> GpuSummary:
        """The record's GPU figures. ``foreign_end_mb``: foreign memory at the end of the
        wait (the figure the residual was corrected with), else the last sample's."""
        if not self.device.is_gpu:
            return GpuSummary()
        peak = None if self._peak_unknown else self._peak
        how, peak = attribute(self._matched, self._holder_seen, self._files_readable,
                              self._lists_readable, self.device.namespace, peak)
        energy = None
        if not self._shared and self._energy_start is not None \
                and self._energy_end is not None and self._energy_end >= self._energy_start:
            energy = (self._energy_end - self._energy_start) / 1000.0
        util = [] if self._shared else self._util
        foreign_end = foreign_end_mb if foreign_end_mb is not None else \
            (self._foreign[-1] if self._foreign else None)
        return GpuSummary(
            attribution=how.value if isinstance(how, Attribution) else how,
            peak_tree_mb=peak,
            foreign_start_mb=self._foreign_start(),
            foreign_end_mb=foreign_end,
            energy_j=energy,
            util_mean_pct=sum(util) / len(util) if util else None,
            util_peak_pct=max(util) if util else None)

    def _foreign_start(self) -> float | None:
        """Foreign memory at the first reading, split again with the namespace as it is now
        known (the first reading is often made before anything proved whose PIDs NVML
        lists: another user's process is foreign only once ours were matched)."""
        if self._first is None:
            return None
        listed, tree, neighbours = self._first
        return split_usage(listed, tree, neighbours, self.device.namespace).foreign_mb
