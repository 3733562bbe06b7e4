"""GPUs behind one small interface; the only module that imports ``pynvml``.

The orchestrator never touches CUDA: it sees GPUs through NVML, which creates no context and
holds no device memory. On a machine without a GPU (or without the driver) every sweep gets a
:class:`NullDevice` with the same interface, chosen once at start, so no caller ever handles
an NVML exception. Like nvitop, every NVML query goes through one helper that returns a
default when the library or the value is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
_MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class DeviceInfo:
    """What the records say about a device."""

    name: str
    uuid: str | None
    index: int | None
    total_mb: float | None


class Device(Protocol):
    """A GPU as the orchestrator sees it: memory readings, never CUDA."""

    info: DeviceInfo

    @property
    def is_gpu(self) -> bool: ...

    def used_mb(self) -> float | None:
        """Device memory in use by everything (None without a GPU)."""

    def process_memory_mb(self) -> dict[int, float]:
        """GPU memory per host PID of the processes holding memory on this device."""

    def utilization(self) -> float | None:
        """GPU busy percentage over the driver's last sample period."""


class NullDevice:
    """The device of a machine with no GPU: readings are None, no process holds memory."""

    info = DeviceInfo(name="cpu", uuid=None, index=None, total_mb=None)
    is_gpu = False

    def used_mb(self) -> float | None:
        return None

    def process_memory_mb(self) -> dict[int, float]:
        return {}

    def utilization(self) -> float | None:
        return None


class NvmlDevice:
    """One NVIDIA GPU read through NVML (nvidia-ml-py)."""

    is_gpu = True

    def __init__(self, nvml: Any, handle: Any, index: int) -> None:
        self._nvml = nvml
        self._handle = handle
        uuid = _query(lambda: _text(nvml.nvmlDeviceGetUUID(handle)), None)
        name = _query(lambda: _text(nvml.nvmlDeviceGetName(handle)), "NVIDIA GPU")
        total = _query(lambda: self._memory().total / _MB, None)
        self.info = DeviceInfo(name=name, uuid=uuid, index=index, total_mb=total)

    def _memory(self) -> Any:
        """Memory info, v2 where the driver has it (v1 counts driver-reserved memory)."""
        nvml = self._nvml
        try:
            return nvml.nvmlDeviceGetMemoryInfo(self._handle, version=nvml.nvmlMemory_v2)
        except (AttributeError, TypeError, nvml.NVMLError):
            return nvml.nvmlDeviceGetMemoryInfo(self._handle)

    def used_mb(self) -> float | None:
        return _query(lambda: self._memory().used / _MB, None)

    def process_memory_mb(self) -> dict[int, float]:
        def read() -> dict[int, float]:
            usage: dict[int, float] = {}
            for getter in ("nvmlDeviceGetComputeRunningProcesses",
                           "nvmlDeviceGetGraphicsRunningProcesses"):
                for proc in getattr(self._nvml, getter)(self._handle):
                    used = getattr(proc, "usedGpuMemory", None)
                    usage[proc.pid] = usage.get(proc.pid, 0.0) + (used or 0) / _MB
            return usage

        return _query(read, {})

    def utilization(self) -> float | None:
        return _query(lambda: float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu),
                      None)


def open_devices() -> list[Device]:
    """Every GPU NVML can see, in PCI bus order; empty without a GPU or driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        return [NvmlDevice(pynvml, pynvml.nvmlDeviceGetHandleByIndex(i), i)
                for i in range(count)]
    except pynvml.NVMLError:
        return []


def default_device() -> Device:
    """The first GPU, or a NullDevice when there is none."""
    devices = open_devices()
    return devices[0] if devices else NullDevice()


def _query(read: Callable[[], T], default: T) -> T:
    """Run one NVML query; any NVML (or missing-function) error gives the default."""
    try:
        return read()
    except Exception:  # pynvml raises NVMLError subclasses, AttributeError on old drivers
        return default


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
