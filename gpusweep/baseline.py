"""Each device's baseline, and when it may be taken again.

The baseline is measured before the first trial. Where NVML's PIDs are ours, other users'
processes are followed per PID and the baseline stays. Where they are not (a container) or
not yet known, a colleague's job starting or ending would make a stale baseline lie, so it
is taken again before each launch, while none of our processes is on the device: no trial
running or being cleaned up there, no process of the sweep listed by NVML, and the last
trial there not left dirty (its leftover memory must not become the next baseline).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gpusweep.device import Device, Namespace
from gpusweep.gpuview import Baseline, listed_total


def take(device: Device, sweep_pids: set[int]) -> Baseline | None:
    """The device now, or None when a process of the sweep is still listed on it."""
    listed = device.process_memory_mb()
    if listed and set(listed) & sweep_pids:
        return None
    return Baseline(device.used_mb(), listed_total(listed))


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
        """Take the baseline again where PIDs cannot (yet) be followed, if the device is
        free of our processes."""
        if not device.is_gpu or busy or self._dirty.get(id(device)):
            return
        if device.namespace is Namespace.MATCHED and self.get(device).used_mb is not None:
            return  # foreign memory is followed per PID: the first baseline stays right
        fresh = take(device, self.ended_pids(device))
        if fresh is not None and fresh.used_mb is not None:
            self._baselines[id(device)] = fresh

    def trial_ended(self, device: Device, pids: Iterable[int], clean: bool | None) -> None:
        """Remember the trial's pids; a dirty one keeps the baseline from being re-taken."""
        self._pids.setdefault(id(device), set()).update(pids)
        self._dirty[id(device)] = clean is False
