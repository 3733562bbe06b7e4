"""Slots: how many trials run at once, and on which device each one runs.

``--slots N`` runs up to N trials at once; ``--gpus 0,1|all`` gives one slot per listed GPU
by default. Slot i runs on device i mod len(devices), so two slots on one GPU share it (and
the memory model decides whether a trial fits beside its neighbour).
"""

from __future__ import annotations

import os
import select
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpusweep.device import Device, NullDevice, open_devices
from gpusweep.errors import BadInput


@dataclass
class Slot:
    index: int
    device: Device
    trial: Any = None  # the RunningTrial in this slot, running or finishing
    finishing: Any = None  # the Future of its finish (tree stop, GPU wait, record)

    @property
    def free(self) -> bool:
        return self.trial is None


def choose_devices(gpus: str | None, available: Sequence[Device] | None = None) -> list[Device]:
    """The devices named by ``--gpus`` (indices in NVML's PCI order, or ``all``).

    Without ``--gpus``: the first GPU, or the CPU when there is none.
    """
    devices = list(open_devices() if available is None else available)
    if gpus is None:
        return devices[:1] or [NullDevice()]
    if gpus.strip() == "all":
        if not devices:
            raise BadInput("--gpus", "all", "no GPU is visible through NVML on this machine")
        return devices
    chosen = []
    for part in gpus.split(","):
        try:
            index = int(part)
        except ValueError:
            raise BadInput("--gpus", part, "expected GPU indices like 0,1 or all") from None
        if not 0 <= index < len(devices):
            raise BadInput("--gpus", part, f"no such GPU (this machine has {len(devices)})")
        if devices[index] in chosen:
            raise BadInput("--gpus", part, "listed twice; for several trials on one GPU use "
                           "--slots N")
        chosen.append(devices[index])
    return chosen


def make_slots(count: int | None, devices: Sequence[Device]) -> list[Slot]:
    """``count`` slots (default: one per device), dealt round-robin over the devices."""
    count = count or len(devices)
    return [Slot(i, devices[i % len(devices)]) for i in range(count)]


def wait_for_exit(pids: Sequence[int], timeout_s: float) -> None:
    """Sleep until one of ``pids`` exits or ``timeout_s`` passes (pidfds where available).

    A trial's exit is then noticed at once instead of at the next polling tick, which keeps
    the overhead between trials in milliseconds.
    """
    fds: list[int] = []
    try:
        for pid in pids if hasattr(os, "pidfd_open") else ():
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                return  # already gone: no sleep, the loop will see its exit
            except OSError:  # no pidfds here (old kernel, seccomp): a plain tick
                for fd in fds:
                    os.close(fd)
                fds = []
                break
        select.select(fds, [], [], timeout_s)
    finally:
        for fd in fds:
            os.close(fd)
