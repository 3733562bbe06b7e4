"""SIMULATION: what a CUDA program does to the GPU, for real processes on a CPU machine.

``hold(mb)`` picks the device the process was given (``CUDA_VISIBLE_DEVICES``: a ``GPU-`` or
``MIG-`` UUID, an index, or unset for the first), opens that device's files under
``<state_dir>/dev`` as a CUDA context would (``nvidiactl``, ``nvidia-uvm``, ``nvidia<N>``;
inherited by forked children, so a DataLoader worker holds them too) and registers the
memory for the simulated NVML to report. An empty ``CUDA_VISIBLE_DEVICES`` means no GPU, as
for CUDA: ``NoCudaDevice``.
"""

from __future__ import annotations

import itertools
import json
import os

import psutil

from simnvml.world import load_scenario, units

_sequence = itertools.count()
_open_files: list[int] = []  # kept open for the process's life, as a CUDA context's are


class NoCudaDevice(RuntimeError):
    pass


def device_for(environ: dict[str, str] | None = None) -> dict:
    """The simulated device a process with this environment runs on."""
    environ = dict(os.environ if environ is None else environ)
    devices = units(load_scenario(environ.get("GPUSWEEP_SIMNVML")))
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        if not devices:
            raise NoCudaDevice("no GPU in the simulated scenario")
        return devices[0]
    first = value.split(",")[0].strip()
    if not first:
        raise NoCudaDevice("CUDA_VISIBLE_DEVICES is empty: no CUDA device")
    if first.isdigit():
        gpus = [d for d in devices if d["index"] == int(first)]
        if gpus:
            return gpus[0]
    for device in devices:
        if device["uuid"].startswith(first):
            return device
    for device in devices:  # a MIG-enabled GPU's UUID: CUDA shows its first usable instance
        if device.get("parent", "").startswith(first) and device.get("access", "ok") == "ok":
            return device
    raise NoCudaDevice(f"CUDA_VISIBLE_DEVICES={value!r} names no simulated device")


class Holding:
    """Memory this process holds on its simulated device."""

    def __init__(self, device: dict, mb: float, lists: tuple[str, ...], orphan_mb: float,
                 state_dir: str, busy: bool = True) -> None:
        self.device = device
        me = psutil.Process()
        self._entry = {"pid": me.pid, "create_time": me.create_time(), "uuid": device["uuid"],
                       "mb": float(mb), "lists": list(lists), "orphan_mb": float(orphan_mb),
                       "busy": bool(busy)}
        folder = os.path.join(state_dir, "alloc")
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{me.pid}.{next(_sequence)}.json")
        self._write()

    def set(self, mb: float) -> None:
        self._entry["mb"] = float(mb)
        self._write()

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _write(self) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self._entry, handle)
        os.replace(tmp, self.path)


def open_context(device: dict, state_dir: str) -> None:
    """Open the device files a CUDA context keeps open (once per process)."""
    if _open_files:
        return
    dev = os.path.join(state_dir, "dev")
    os.makedirs(dev, exist_ok=True)
    for name in ("nvidiactl", "nvidia-uvm", f"nvidia{device['minor']}"):
        path = os.path.join(dev, name)
        _open_files.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.set_inheritable(_open_files[-1], True)  # forked workers keep the context too


def hold(mb: float, lists: tuple[str, ...] = ("compute",), orphan_mb: float = 0.0,
         environ: dict[str, str] | None = None, busy: bool = True) -> Holding:
    """Hold ``mb`` MB on this process's simulated device, with a CUDA context open.

    ``busy``: its memory makes the device busy (utilization grows with it); False for a
    process that holds its context and runs nothing (a dead trial: NVML shows 0 %)."""
    scenario = load_scenario((environ or os.environ).get("GPUSWEEP_SIMNVML"))
    device = device_for(environ)
    open_context(device, scenario["state_dir"])
    return Holding(device, mb, lists, orphan_mb, scenario["state_dir"], busy)
