"""Opening the GPUs NVML can see, each on its own, MIG instances expanded.

A GPU whose handle fails (lost, no permission) is reported and left out instead of hiding
every GPU; a MIG-enabled GPU becomes one device per instance that can be opened (in a
container given one slice, the others are refused).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gpusweep.gpu.device import NvmlDevice, load_nvml

T = TypeVar("T")


@dataclass
class PhysicalGpu:
    """One GPU NVML enumerates, with the devices trials can run on: itself, or its MIG
    instances when MIG is enabled (none when its handle or every instance failed)."""

    index: int
    uuid: str | None
    mig: bool
    units: list[NvmlDevice] = field(default_factory=list)


@dataclass
class DeviceScan:
    """Every GPU NVML enumerates, and what went wrong opening them (one line each)."""

    gpus: list[PhysicalGpu] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    driver: str | None = None

    @property
    def devices(self) -> list[NvmlDevice]:
        return [unit for gpu in self.gpus for unit in gpu.units]


def open_devices(environ: Mapping[str, str] | None = None) -> list[NvmlDevice]:
    """Every device NVML can see (MIG instances expanded), in PCI bus order."""
    return scan_devices(environ).devices


def scan_devices(environ: Mapping[str, str] | None = None) -> DeviceScan:
    """Open every GPU NVML can see, each on its own: a bad one is reported, the rest kept."""
    nvml = load_nvml(environ)
    if nvml is None:
        return DeviceScan()
    try:
        nvml.nvmlInit()
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:  # no driver (LibraryNotFound, DriverNotLoaded): no GPU
        missing = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")
        problems = [] if type(exc).__name__ in missing else [f"NVML: {_describe(exc)}"]
        return DeviceScan(problems=problems)
    scan = DeviceScan(driver=_safe(lambda: _text(nvml.nvmlSystemGetDriverVersion())))
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            scan.gpus.append(PhysicalGpu(index, None, False))
            scan.problems.append(f"GPU {index} left out: {_describe(exc)}")
            continue
        scan.gpus.append(_open_gpu(nvml, handle, index, scan.problems))
    return scan


def _open_gpu(nvml: Any, handle: Any, index: int, problems: list[str]) -> PhysicalGpu:
    """A GPU, expanded into its MIG instances when MIG is on."""
    uuid = _safe(lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
    mode = _safe(lambda: nvml.nvmlDeviceGetMigMode(handle))
    if not mode or int(mode[0]) != 1:
        return PhysicalGpu(index, uuid, False, [NvmlDevice(nvml, handle, index)])
    gpu = PhysicalGpu(index, uuid, True)
    slots = _safe(lambda: int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))) or 0
    refused = []
    for slot in range(slots):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except Exception as exc:  # NotFound: an empty slot; NoPermission: not ours
            if type(exc).__name__ != "NVMLError_NotFound":
                refused.append(f"{slot} ({_describe(exc)})")
            continue
        unit = NvmlDevice(nvml, mig, index, mig_index=slot, parent_uuid=uuid)
        if unit.info.uuid is None:  # CUDA_VISIBLE_DEVICES can name an instance only so
            problems.append(f"GPU {index}/{slot} left out: its MIG- UUID could not be read, "
                            "and a trial can be given a MIG instance only by it")
            continue
        gpu.units.append(unit)
    if not gpu.units:
        problems.append(f"GPU {index} left out: MIG is enabled and no instance is usable"
                        + (f" (refused: {', '.join(refused)})" if refused else ""))
    return gpu


def _safe(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except Exception:
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
