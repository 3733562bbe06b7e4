"""GPUs behind one small interface; the only module that imports NVML (``pynvml``).

The orchestrator never touches CUDA: it sees GPUs through NVML, which creates no context and
holds no device memory. On a machine without a GPU (or without the driver) every sweep gets a
:class:`NullDevice` with the same interface, chosen once at start, so no caller ever handles
an NVML exception. Like nvitop, every NVML query goes through one helper that returns a
default when the library or the value is missing; here the default is None (unknown), never
0, and the helper keeps the last error so a record can say why a figure is missing.

``GPUSWEEP_NVML_MODULE`` names the module to import instead of ``pynvml`` (nvidia-ml-py):
the tests' simulated NVML uses only nvidia-ml-py's own names and signatures, so the real
module and a stand-in are interchangeable. It is read here and nowhere else.

What real drivers do to us (each handled below, or in :mod:`gpusweep.gpu.scan` for the
opening): a GPU whose handle fails (lost, no permission) is left out and reported instead of
hiding every GPU; the per-process queries are
probed once per device, ``_v3`` then ``_v2`` then the plain name (nvidia-ml-py 13 calls
``_v3`` under the plain name; older bindings call v1 there, and older drivers lack the
``_v3`` symbol: ``NVMLError_FunctionNotFound``); a process in the compute, graphics and MPS
lists is merged by max, never summed; ``usedGpuMemory`` None or NVML_VALUE_NOT_AVAILABLE
stays unknown; free memory comes from memory info v2's ``.free`` (v2's ``total`` includes
the driver's reserved memory, ``used`` does not). A MIG-enabled GPU is one device per
instance, read through the instance's own handle.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import ModuleType
from typing import Any, Protocol, TypeVar

from gpusweep.errors import BadInput

T = TypeVar("T")
_MB = 1024.0 * 1024.0
NVML_MODULE_ENV = "GPUSWEEP_NVML_MODULE"
DEFAULT_NVML_MODULE = "pynvml"
_NOT_AVAILABLE = 2**63  # NVML_VALUE_NOT_AVAILABLE is 2**64 - 1; nothing real comes close
_PROCESS_LISTS = ("Compute", "Graphics", "MPSCompute")


class Namespace(Enum):
    """Whether NVML's process ids are ours: unknown until a reading proves one or the other.

    ``FOREIGN``: NVML reports PIDs of another PID namespace (a container without
    ``--pid=host``: host PIDs), so no process of ours can be found by PID.
    """

    UNKNOWN = "unknown"
    MATCHED = "matched"
    FOREIGN = "foreign"


@dataclass(frozen=True)
class DeviceInfo:
    """What the records say about a device."""

    name: str
    uuid: str | None
    index: int | None  # NVML index of the physical GPU (PCI bus order)
    total_mb: float | None
    mig_index: int | None = None  # the instance's slot on its GPU, for a MIG device
    parent_uuid: str | None = None  # the physical GPU of a MIG device
    mig_ids: tuple[int, int] | None = None  # (GPU instance id, compute instance id)

    @property
    def label(self) -> str:
        """How records and messages name it: ``0``, or ``1/0`` for MIG instance 0 of GPU 1."""
        if self.index is None:
            return self.name
        return str(self.index) if self.mig_index is None else f"{self.index}/{self.mig_index}"


class Device(Protocol):
    """A GPU as the orchestrator sees it: memory readings, never CUDA."""

    info: DeviceInfo
    namespace: Namespace
    last_error: str | None
    lists_error: str | None  # the last process-list read failed (None: read, or none exist)

    @property
    def is_gpu(self) -> bool: ...

    def used_mb(self) -> float | None:
        """Device memory in use by everything (None without a GPU or when unreadable)."""

    def free_mb(self) -> float | None:
        """Device memory free for a new allocation (None when unknown)."""

    def process_memory_mb(self) -> dict[int, float | None] | None:
        """GPU memory per PID of the processes NVML lists (None: the lists were unreadable;
        a value of None: the process is listed but its memory is unknown)."""

    def utilization(self) -> float | None:
        """GPU busy percentage over the driver's last sample period."""

    def energy_mj(self) -> float | None:
        """The device's total energy counter (mJ since the driver loaded)."""


class NullDevice:
    """The device of a machine with no GPU: readings are None, no process holds memory."""

    info = DeviceInfo(name="cpu", uuid=None, index=None, total_mb=None)
    is_gpu = False
    namespace = Namespace.MATCHED
    last_error = None
    lists_error = None

    def used_mb(self) -> float | None:
        return None

    def free_mb(self) -> float | None:
        return None

    def process_memory_mb(self) -> dict[int, float | None] | None:
        return {}

    def utilization(self) -> float | None:
        return None

    def energy_mj(self) -> float | None:
        return None


class NvmlDevice:
    """One NVIDIA GPU, or one MIG instance of it, read through NVML (nvidia-ml-py)."""

    is_gpu = True

    def __init__(self, nvml: Any, handle: Any, index: int, mig_index: int | None = None,
                 parent_uuid: str | None = None) -> None:
        self._nvml = nvml
        self._handle = handle
        self._memory_v1 = False  # the driver lacks memory info v2
        self._lists: dict[str, Callable[[Any], Any] | None] | None = None  # probed once
        self.namespace = Namespace.UNKNOWN
        self.last_error: str | None = None
        self.lists_error: str | None = None
        uuid = self._query(lambda: _text(nvml.nvmlDeviceGetUUID(handle)), None)
        name = self._query(lambda: _text(nvml.nvmlDeviceGetName(handle)), "NVIDIA GPU")
        memory = self._memory()
        mig_ids = None
        if mig_index is not None:
            gi = self._query(lambda: int(nvml.nvmlDeviceGetGpuInstanceId(handle)), None)
            ci = self._query(lambda: int(nvml.nvmlDeviceGetComputeInstanceId(handle)), None)
            mig_ids = None if gi is None or ci is None else (gi, ci)
        self.info = DeviceInfo(name=name, uuid=uuid, index=index,
                               total_mb=None if memory is None else memory.total / _MB,
                               mig_index=mig_index, parent_uuid=parent_uuid, mig_ids=mig_ids)

    def __repr__(self) -> str:
        return f"NvmlDevice({self.info.label}: {self.info.name}, {self.info.uuid})"

    # -- memory ------------------------------------------------------------------------------
    def _memory(self) -> Any:
        """Memory info, v2 where the driver has it (v1 ``used`` counts reserved memory)."""
        nvml = self._nvml
        if not self._memory_v1:
            try:
                return nvml.nvmlDeviceGetMemoryInfo(self._handle, version=nvml.nvmlMemory_v2)
            except (AttributeError, TypeError, nvml.NVMLError_FunctionNotFound):
                self._memory_v1 = True  # an old driver or binding: v1 from now on
            except Exception as exc:
                self._failed("nvmlDeviceGetMemoryInfo", exc)
                return None
        return self._query(lambda: nvml.nvmlDeviceGetMemoryInfo(self._handle), None,
                           "nvmlDeviceGetMemoryInfo")

    def used_mb(self) -> float | None:
        memory = self._memory()
        return None if memory is None else _mb(memory.used)

    def free_mb(self) -> float | None:
        memory = self._memory()
        return None if memory is None else _mb(memory.free)

    # -- processes ----------------------------------------------------------------------------
    def process_memory_mb(self) -> dict[int, float | None] | None:
        self.lists_error = None
        getters = self._process_getters()
        if getters is None:
            return None
        usage: dict[int, float | None] = {}
        for name, getter in getters.items():
            try:
                processes = getter(self._handle)
            except Exception as exc:  # a partial list would hide a holder: unknown
                self._failed(name, exc)
                self.lists_error = self.last_error
                return None
            for proc in processes:
                usage[proc.pid] = _merge(usage.get(proc.pid, _ABSENT),
                                         _mb(getattr(proc, "usedGpuMemory", None)))
        return usage

    def _process_getters(self) -> dict[str, Callable[[Any], Any]] | None:
        """The first process query of each list that this driver and binding answer (v3,
        v2, then the plain name), probed once; None while no list can be read."""
        if self._lists is None:
            found: dict[str, Callable[[Any], Any] | None] = {}
            for kind in _PROCESS_LISTS:
                choice = self._probe(kind)
                if choice is _RETRY:
                    return None  # a transient error: probe again at the next reading
                found[kind] = choice
            self._lists = found
        getters = {f"nvmlDeviceGet{k}RunningProcesses": g for k, g in self._lists.items() if g}
        return getters or None

    def process_queries(self) -> dict[str, str | None] | None:
        """Which NVML query answers each process list (``..._v3``, ``_v2``, the plain name;
        None: this list does not exist here), or None while none could be probed."""
        if self._process_getters() is None and self._lists is None:
            return None
        return {kind: getattr(getter, "__name__", None) if getter else None
                for kind, getter in (self._lists or {}).items()}

    def _probe(self, kind: str) -> Any:
        nvml = self._nvml
        # The plain name of nvidia-ml-py 12+ turns a missing symbol into this error.
        missing = (nvml.NVMLError_FunctionNotFound,
                   getattr(nvml, "NVMLLibraryMismatchError", nvml.NVMLError_FunctionNotFound))
        base = f"nvmlDeviceGet{kind}RunningProcesses"
        for name in (f"{base}_v3", f"{base}_v2", base):
            getter = getattr(nvml, name, None)
            if getter is None:
                continue
            try:
                getter(self._handle)
                return getter
            except missing:
                continue
            except nvml.NVMLError_NotSupported:
                return None  # this list does not exist here (e.g. MPS on some drivers)
            except Exception as exc:
                self._failed(name, exc)
                self.lists_error = self.last_error
                return _RETRY
        return None

    # -- activity -----------------------------------------------------------------------------
    def utilization(self) -> float | None:
        """Busy percentage; None on MIG instances (NVML: NotSupported) and where missing."""
        return self._query(lambda: float(self._nvml.nvmlDeviceGetUtilizationRates(
            self._handle).gpu), None, "nvmlDeviceGetUtilizationRates")

    def energy_mj(self) -> float | None:
        """Total energy since the driver loaded (Volta and newer); None where missing."""
        return self._query(lambda: float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(
            self._handle)), None, "nvmlDeviceGetTotalEnergyConsumption")

    def compute_capability(self) -> tuple[int, int] | None:
        value = self._query(lambda: self._nvml.nvmlDeviceGetCudaComputeCapability(
            self._handle), None)
        return None if value is None else (int(value[0]), int(value[1]))

    # -- the one query helper -----------------------------------------------------------------
    def _query(self, read: Callable[[], T], default: T, name: str | None = None) -> T:
        """Run one NVML query; any NVML (or missing-function) error gives the default."""
        try:
            return read()
        except Exception as exc:  # NVMLError subclasses; AttributeError on old bindings
            if name:
                self._failed(name, exc)
            return default

    def _failed(self, name: str, exc: BaseException) -> None:
        self.last_error = f"{name}: {type(exc).__name__}: {exc}"


_ABSENT = object()
_RETRY = object()


def _merge(current: Any, value: float | None) -> float | None:
    """One process in several lists: the max of what is known, never the sum."""
    if current is _ABSENT:
        return value
    if current is None:
        return value
    return current if value is None else max(current, value)


def _mb(value: Any) -> float | None:
    """Bytes to MB; None and NVML_VALUE_NOT_AVAILABLE stay unknown."""
    if value is None or isinstance(value, bool):
        return None
    value = int(value)
    if value < 0 or value >= _NOT_AVAILABLE:
        return None
    return value / _MB


# -- the NVML module --------------------------------------------------------------------------
def load_nvml(environ: Mapping[str, str] | None = None) -> ModuleType | None:
    """The NVML module: ``GPUSWEEP_NVML_MODULE`` if set, else ``pynvml``.

    Without nvidia-ml-py there is no GPU (None). A module named explicitly that cannot be
    imported is bad input: one line, exit 2.
    """
    environ = os.environ if environ is None else environ
    chosen = environ.get(NVML_MODULE_ENV, "").strip()
    name = chosen or DEFAULT_NVML_MODULE
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        if not chosen:
            return None
        raise BadInput(NVML_MODULE_ENV, name, f"cannot be imported "
                       f"({type(exc).__name__}: {exc})") from None
    if chosen and not hasattr(module, "nvmlInit"):
        raise BadInput(NVML_MODULE_ENV, name, "is not an NVML module (it has no nvmlInit)")
    return module


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
