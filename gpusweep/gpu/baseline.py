"""Each device's baseline, and how it follows other users' memory between trials.

The baseline is measured before the first trial. A colleague's job starting or ending would
make it lie, so before each launch, while none of our processes is on the device (no trial
running or being cleaned up there, no process of the sweep listed by NVML, and the last
trial there not left dirty), it moves by exactly the change in what NVML lists: all of that
is foreign then, in any PID namespace. Memory that no process holds (a driver that did not
give a trial's memory back) is never absorbed into it. Where NVML lists processes but not
their memory (MIG), the device is read again as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gpusweep.gpu.device import Device
from gpusweep.gpu.view import Baseline, listed_total


def take(device: Device, sweep_pids: set[int]) -> Baseline | None:
    """The device now, or None when a process of the sweep is still listed on it."""
    listed = device.process_memory_mb()
    if listed and set(listed) & sweep_pids:
        return None
    return Baseline(device.used_mb(), listed_total(listed), len(listed or ()))


def moved(old: Baseline, now: Baseline) -> Baseline:
    """The baseline again: the old one plus the change in listed (foreign) memory."""
    if old.used_mb is None:
        return now
    if old.listed_mb is not None and now.listed_mb is not None:
        return Baseline(old.used_mb + now.listed_mb - old.listed_mb, now.listed_mb,
                        now.listed_pids)
    return now if now.listed_pids else old  # amounts unknown: only if someone else is there


class DeviceBaselines:
    """The sweep's baseline per device, and the pids its trials had there."""

    def __init__(self, devices: Sequence[Device]) -> None:
        self._devices = list(devices)
        self._baselines: dict[int, Baseline] = {}
        self._pids: dict[int, set[int]] = {id(d): set() for d in devices}
        self._dirty: dict[int, bool] = {}

    def start(self) -> None:
        """Before the first trial."""
        for device in self._devices:
            self._baselines[id(device)] = take(device, set()) or Baseline(None)

    def get(self, device: Device) -> Baseline:
        return self._baselines.get(id(device), Baseline(None))

    def ended_pids(self, device: Device) -> set[int]:
        """Every pid an ended trial had on this device."""
        return set(self._pids.get(id(device), ()))

    def before_launch(self, device: Device, busy: bool) -> None:
        """Follow foreign memory since the last baseline, if the device is free of ours."""
        if not device.is_gpu or busy or self._dirty.get(id(device)):
            return
        fresh = take(device, self.ended_pids(device))
        if fresh is not None and fresh.used_mb is not None:
            self._baselines[id(device)] = moved(self.get(device), fresh)

    def trial_ended(self, device: Device, pids: Iterable[int], clean: bool | None) -> None:
        """Remember the trial's pids; a dirty one keeps the baseline from being re-taken."""
        self._pids.setdefault(id(device), set()).update(pids)
        self._dirty[id(device)] = clean is False
