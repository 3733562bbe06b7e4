"""Slots: how many trials run at once, and on which device each one runs.

``--slots N`` runs up to N trials at once; ``--gpus 0,1|all`` gives one slot per listed GPU
by default (positions in the set the orchestrator's ``CUDA_VISIBLE_DEVICES`` leaves
visible). Slot i runs on device i mod len(devices), so two slots on one GPU share it (and
the memory model decides whether a trial fits beside its neighbour).
"""

from __future__ import annotations

import os
import select
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gpusweep.errors import BadInput
from gpusweep.gpu.device import Device, NullDevice
from gpusweep.gpu.scan import scan_devices

# ``--gpus``'s help, the same for ``gpusweep`` and ``gpusweep agent`` (which passes it on).
GPUS_HELP = ("the GPUs to use: positions in the visible set (what CUDA_VISIBLE_DEVICES "
             "leaves, MIG instances as devices), GPU-/MIG- UUIDs (a unique prefix), or all; "
             "one slot each by default")

@dataclass
class Slot:
    index: int
    device: Device
    trial: Any = None  # the RunningTrial in this slot, running or finishing
    finishing: Any = None  # the Future of its finish (tree stop, GPU wait, record)

    @property
    def free(self) -> bool:
        return self.trial is None


def choose_devices(gpus: str | None, available: Sequence[Device] | None = None,
                   warn: Callable[[str], None] | None = None) -> list[Device]:
    """The devices named by ``--gpus``: positions in the visible set (``0,1``), ``all``, or
    ``GPU-``/``MIG-`` UUIDs (a unique prefix is enough).

    The visible set is what the orchestrator's ``CUDA_VISIBLE_DEVICES`` leaves visible
    (:mod:`gpusweep.gpu.visible`; every GPU when it is unset, MIG instances as devices of their
    own), unless ``available`` gives it. Without ``--gpus``: its first device, or the CPU.
    GPUs that could not be opened are reported through ``warn`` and left out.
    """
    devices = _visible(warn or _warn) if available is None else list(available)
    if gpus is None:
        return devices[:1] or [NullDevice()]
    if gpus.strip() == "all":
        if not devices:
            raise BadInput("--gpus", "all", "no GPU is visible" + _why_none())
        return devices
    chosen: list[Device] = []
    for part in (p.strip() for p in gpus.split(",")):
        device = _pick(part, devices)
        if device in chosen:
            raise BadInput("--gpus", part, "listed twice; for several trials on one GPU use "
                           "--slots N")
        chosen.append(device)
    return chosen


def _pick(part: str, devices: Sequence[Device]) -> Device:
    """One ``--gpus`` entry: a position in the visible set, or a UUID (prefix)."""
    if part.upper().startswith(("GPU-", "MIG-")):
        found = [d for d in devices if d.info.uuid and d.info.uuid.lower().startswith(
            part.lower())]
        if part.upper().startswith("GPU-"):  # a MIG-enabled GPU's UUID names its instances
            found += [d for d in devices if d.info.parent_uuid and d not in found and
                      d.info.parent_uuid.lower().startswith(part.lower())]
        if len(found) != 1:
            raise BadInput("--gpus", part, ("names several devices" if found else
                                            "names no visible device") + _listing(devices))
        return found[0]
    try:
        index = int(part)
    except ValueError:
        raise BadInput("--gpus", part, "expected positions in the visible set like 0,1, a "
                       "GPU-/MIG- UUID, or all") from None
    if not 0 <= index < len(devices):
        raise BadInput("--gpus", part, f"outside the visible set ({len(devices)} "
                       f"device{'s' if len(devices) != 1 else ''}{_why_none()})"
                       + _listing(devices))
    return devices[index]


def _visible(warn: Callable[[str], None]) -> list[Device]:
    from gpusweep.gpu.visible import ENV, visible_devices

    scan = scan_devices()
    cpu_asked = os.environ.get(ENV) is not None and not os.environ[ENV].strip()
    if scan.problems and not scan.devices and not cpu_asked:
        raise BadInput("NVML", "", f"{'; '.join(scan.problems)}: no GPU could be opened, so "
                       "none of its memory could be watched; fix the driver, or set "
                       f"{ENV}= (empty) to run the sweep on the CPU")
    for problem in scan.problems:
        warn(f"warning: {problem}")
    visible = visible_devices(scan)
    if visible.warning:
        warn(f"warning: {visible.warning}")
    if visible.problem:
        raise BadInput(ENV, os.environ.get(ENV, ""), f"{visible.problem}; CUDA would hide it "
                       "and every entry after it, so gpusweep stops rather than run on "
                       "fewer GPUs than named")
    return list(visible.devices)


def _why_none() -> str:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "; CUDA_VISIBLE_DEVICES is empty" if value is not None and not value.strip() \
        else ""


def _listing(devices: Sequence[Device]) -> str:
    if not devices:
        return ""
    return "; visible: " + ", ".join(f"{i} = GPU {d.info.label} ({d.info.uuid})"
                                      for i, d in enumerate(devices))


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
