"""SIMULATED NVML: a stand-in for nvidia-ml-py's ``pynvml`` on machines without a GPU.

Select it with ``GPUSWEEP_NVML_MODULE=simnvml`` (``tests/`` on ``PYTHONPATH``) and
``GPUSWEEP_SIMNVML=<scenario.json>``. It defines only nvidia-ml-py's own function names, with
their signatures (a test compares them), returns nvidia-ml-py's own structures
(``c_nvmlMemory_v2_t``, ``nvmlFriendlyObject`` process entries) and raises its own exception
classes (``NVMLError_FunctionNotFound`` ...: the real module's, re-exported). It reads the
scenario at every ``nvmlInit()``.

Scenario (JSON; every key optional but ``state_dir``; :mod:`simnvml.compose` builds them)::

    {
      "state_dir": "/abs/dir",     # alloc/ (what processes hold), dev/ (device files), triggers
      "driver": "550.54.15",       # null: no driver, nvmlInit raises NVMLError_LibraryNotFound
      "bindings": "v3",            # "v1": old nvidia-ml-py, plain process queries are v1 and
                                   #   no _v2/_v3 functions exist (AttributeError)
      "pid_offset": 0,             # reported PID = real PID + offset (host PIDs in a container)
      "free_delay_s": 0.0,         # a gone process stays listed, its memory held, this long
      "missing": ["nvmlDeviceGetComputeRunningProcesses_v3"],  # driver lacks the symbol:
                                   #   NVMLError_FunctionNotFound (plain names call _v3)
      "used_memory": "reported",   # "none": usedGpuMemory None; "not_available": 2**64 - 1
      "faults": [{"function": "nvmlDeviceGetMemoryInfo", "error": "Unknown",
                  "when_file": "nvml-down", "gpu": "GPU-..."}],  # raise while
                                   #   <state_dir>/<when_file> exists ("function": "*": all)
      "gpus": [{
        "uuid": "GPU-...", "name": "Tesla T4", "total_mb": 15360, "reserved_mb": 0,
        "base_used_mb": 300, "compute_capability": [7, 5],
        "energy": true, "utilization": true,    # false: NVMLError_NotSupported
        "util_full_mb": 4000,      # utilization = 100 % * held MB / this (grows with memory;
                                   #   memory held with hold(busy=False) counts for none)
        "idle_w": 30, "max_w": 70, # power between them by utilization, integrated as energy
        "handle_error": null,      # e.g. "GpuIsLost": nvmlDeviceGetHandleByIndex raises it
        "memory_error": null,      # e.g. "NoPermission": the memory query raises it
        "processes": [{"pid": 4000001, "mb": 500, "lists": ["compute"]}],  # static, foreign
        "mig": [{"uuid": "MIG-...", "total_mb": 10000, "base_used_mb": 10, "gi": 1, "ci": 0,
                 "access": "ok"}]  # MIG enabled; "NoPermission"/"NotFound": handle refused
      }]
    }

Processes hold memory through :func:`simnvml.holder.hold`, which resolves the device from
their ``CUDA_VISIBLE_DEVICES`` (as the orchestrator set it), opens the device's files under
``<state_dir>/dev`` (so ``/proc/<pid>/fd`` shows a CUDA context: point
``GPUSWEEP_DEVICE_DIR`` there) and registers the memory; see :mod:`simnvml.world`.
MIG instances report no per-process memory, no utilization and no energy, as real ones.
"""

from __future__ import annotations

from typing import Any

import pynvml as _real

from simnvml.world import MB, World, load_scenario

for _name in dir(_real):  # the real module's errors, constants and structures
    if _name.startswith(("NVMLError", "NVML_", "nvmlMemory_v", "c_nvml", "nvmlFriendlyObject",
                         "NVMLLibraryMismatchError")):
        globals()[_name] = getattr(_real, _name)

_world: World | None = None
_VERSIONED: dict[str, Any] = {}  # _v2/_v3 functions, absent with "bindings": "v1"


class _Handle:
    """SIMULATION: an opaque device handle (the real one is a ctypes pointer)."""

    def __init__(self, gpu: int, mig: int | None = None) -> None:
        self.gpu, self.mig = gpu, mig

    def __repr__(self) -> str:
        return f"<simulated nvmlDevice_t {self.gpu}/{self.mig}>"


def _error(name: str) -> Exception:
    code = next(v for v, cls in _real.NVMLError._valClassMapping.items()
                if cls.__name__ == f"NVMLError_{name}")
    return _real.NVMLError(code)


def _state() -> World:
    if _world is None:
        raise _real.NVMLError(_real.NVML_ERROR_UNINITIALIZED)
    return _world


def _gpu(handle: _Handle) -> dict[str, Any]:
    return _state().scenario["gpus"][handle.gpu]


def _unit(handle: _Handle) -> dict[str, Any]:
    gpu = _gpu(handle)
    return gpu if handle.mig is None else gpu["mig"][handle.mig]


def _check(function: str, handle: _Handle | None = None) -> None:
    world = _state()
    scenario = world.scenario
    if function in scenario.get("missing", []):
        raise _real.NVMLError(_real.NVML_ERROR_FUNCTION_NOT_FOUND)
    for fault in scenario.get("faults", []):
        if fault["function"] not in ("*", function):
            continue
        if fault.get("gpu") and (handle is None or fault["gpu"] not in (
                _gpu(handle)["uuid"], _unit(handle).get("uuid"))):
            continue
        if not fault.get("when_file") or world.triggered(fault["when_file"]):
            raise _error(fault.get("error", "Unknown"))


# -- library -------------------------------------------------------------------------------
def nvmlInit():
    global _world
    scenario = load_scenario()
    if scenario.get("driver", "550.54.15") is None:
        raise _real.NVMLError(_real.NVML_ERROR_LIBRARY_NOT_FOUND)
    _world = World(scenario)
    _apply_bindings(scenario.get("bindings", "v3"))


def nvmlShutdown():
    _state()


def nvmlSystemGetDriverVersion():
    return _state().scenario.get("driver", "550.54.15")


def nvmlDeviceGetCount():
    _check("nvmlDeviceGetCount")
    return len(_state().scenario.get("gpus", []))


def nvmlDeviceGetHandleByIndex(index):
    _check("nvmlDeviceGetHandleByIndex")
    gpus = _state().scenario.get("gpus", [])
    if not 0 <= index < len(gpus):
        raise _real.NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
    if gpus[index].get("handle_error"):
        raise _error(gpus[index]["handle_error"])
    return _Handle(index)


def nvmlDeviceGetUUID(handle):
    _check("nvmlDeviceGetUUID", handle)
    return _unit(handle)["uuid"]


def nvmlDeviceGetName(handle):
    _check("nvmlDeviceGetName", handle)
    gpu = _gpu(handle)
    name = gpu.get("name", "NVIDIA Simulated GPU")
    return name if handle.mig is None else f"{name} MIG {_unit(handle).get('profile', '1g')}"


def nvmlDeviceGetMinorNumber(handle):
    _check("nvmlDeviceGetMinorNumber", handle)
    return handle.gpu


def nvmlDeviceGetCudaComputeCapability(handle):
    _check("nvmlDeviceGetCudaComputeCapability", handle)
    return tuple(_gpu(handle).get("compute_capability", [8, 0]))


# -- memory --------------------------------------------------------------------------------
def _used_bytes(handle: _Handle) -> tuple[float, float, float]:
    """(total, reserved, used) in bytes, v2 style (used excludes reserved)."""
    unit = _unit(handle)
    held, _ = _state().held_mb(unit["uuid"])
    static = sum(p["mb"] for p in unit.get("processes", []))
    reserved = unit.get("reserved_mb", 0.0)
    used = unit.get("base_used_mb", 0.0) + held + static
    return unit.get("total_mb", 16000.0) * MB, reserved * MB, used * MB


def nvmlDeviceGetMemoryInfo(handle, version=None):
    name = "nvmlDeviceGetMemoryInfo_v2" if version else "nvmlDeviceGetMemoryInfo"
    _check(name, handle)
    _check("nvmlDeviceGetMemoryInfo", handle)
    if _unit(handle).get("memory_error"):
        raise _error(_unit(handle)["memory_error"])
    total, reserved, used = _used_bytes(handle)
    if not version:
        memory = _real.c_nvmlMemory_t()
        memory.total, memory.used = int(total), int(used + reserved)
        memory.free = int(max(0.0, total - used - reserved))
        return memory
    memory = _real.c_nvmlMemory_v2_t()
    memory.version = version
    memory.total, memory.reserved, memory.used = int(total), int(reserved), int(used)
    memory.free = int(max(0.0, total - reserved - used))
    return memory


# -- processes -----------------------------------------------------------------------------
def _processes(handle: _Handle, kind: str, version: int) -> list[Any]:
    """One of the three lists, as nvidia-ml-py's ``_v<version>`` (or old v1) returns it."""
    world = _state()
    scenario = world.scenario
    units = [_unit(handle)] if handle.mig is not None or _gpu(handle).get("mig") is None \
        else list(_gpu(handle)["mig"])
    mode = scenario.get("used_memory", "reported")
    found = []
    for unit in units:
        _, listed = world.held_mb(unit["uuid"])
        entries = [(a.pid + int(scenario.get("pid_offset", 0)), a.mb, a.lists) for a in listed]
        entries += [(p["pid"], p["mb"], p.get("lists", ["compute"]))
                    for p in unit.get("processes", [])]
        for pid, mb, lists in entries:
            if kind not in lists:
                continue
            used: int | None = int(mb * MB)
            if handle.mig is not None or _gpu(handle).get("mig") is not None or mode == "none":
                used = None  # MIG: per-process memory is not reported
            elif mode == "not_available":
                used = 2**64 - 1
            if used == 2**64 - 1 and version >= 2:
                used = None  # nvidia-ml-py's _v2/_v3 turn NVML_VALUE_NOT_AVAILABLE into None
            fields = {"pid": pid, "usedGpuMemory": used}
            if version >= 2:
                fields.update(gpuInstanceId=unit.get("gi", 0xFFFFFFFF),
                              computeInstanceId=unit.get("ci", 0xFFFFFFFF))
            found.append(_real.nvmlFriendlyObject(fields))
    return found


def _lister(kind: str, base: str, version: int):
    name = f"{base}_v{version}"

    def query(handle):
        _check(name, handle)
        return _processes(handle, kind, version)

    query.__name__ = name
    return query


def _plain(kind: str, base: str):
    def query(handle):
        bindings = _state().scenario.get("bindings", "v3")
        if bindings == "v1":
            _check(base, handle)
            return _processes(handle, kind, 1)
        try:
            return globals()[f"{base}_v3"](handle)
        except _real.NVMLError_FunctionNotFound:  # as nvidia-ml-py's throwOnVersionMismatch
            raise _real.NVMLLibraryMismatchError(f"{base}: use {base}_v2") from None

    query.__name__ = base
    return query


for _kind, _base in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                     ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"),
                     ("mps", "nvmlDeviceGetMPSComputeRunningProcesses")):
    globals()[_base] = _plain(_kind, _base)
    for _version in (2, 3):
        _VERSIONED[f"{_base}_v{_version}"] = _lister(_kind, _base, _version)
        globals()[f"{_base}_v{_version}"] = _VERSIONED[f"{_base}_v{_version}"]


def _apply_bindings(bindings: str) -> None:
    for name, function in _VERSIONED.items():
        if bindings == "v1":
            globals().pop(name, None)
        else:
            globals()[name] = function


# -- activity ------------------------------------------------------------------------------
def _utilization_pct(handle: _Handle) -> float:
    unit = _unit(handle)
    held, _ = _state().held_mb(unit["uuid"])
    held -= _state().idle_mb(unit["uuid"])
    full = float(unit.get("util_full_mb") or unit.get("total_mb", 16000.0) / 4)
    return min(100.0, 100.0 * max(0.0, held) / full)


def nvmlDeviceGetUtilizationRates(handle):
    _check("nvmlDeviceGetUtilizationRates", handle)
    if handle.mig is not None or not _unit(handle).get("utilization", True):
        raise _real.NVMLError(_real.NVML_ERROR_NOT_SUPPORTED)
    rates = _real.c_nvmlUtilization_t()
    rates.gpu = int(round(_utilization_pct(handle)))
    rates.memory = rates.gpu // 2
    return rates


def nvmlDeviceGetPowerUsage(handle):
    _check("nvmlDeviceGetPowerUsage", handle)
    unit = _unit(handle)
    if handle.mig is not None or not unit.get("energy", True):
        raise _real.NVMLError(_real.NVML_ERROR_NOT_SUPPORTED)
    idle, top = unit.get("idle_w", 30.0), unit.get("max_w", 300.0)
    return int((idle + (top - idle) * _utilization_pct(handle) / 100.0) * 1000)


def nvmlDeviceGetTotalEnergyConsumption(handle):
    _check("nvmlDeviceGetTotalEnergyConsumption", handle)
    power_w = nvmlDeviceGetPowerUsage(handle) / 1000.0
    return int(_state().energy(_unit(handle)["uuid"], power_w))


# -- MIG -----------------------------------------------------------------------------------
def nvmlDeviceGetMigMode(device):
    _check("nvmlDeviceGetMigMode", device)
    if _gpu(device).get("mig") is None:
        return [0, 0]
    return [1, 1]


def nvmlDeviceGetMaxMigDeviceCount(device):
    _check("nvmlDeviceGetMaxMigDeviceCount", device)
    return len(_gpu(device).get("mig") or [])


def nvmlDeviceGetMigDeviceHandleByIndex(device, index):
    _check("nvmlDeviceGetMigDeviceHandleByIndex", device)
    instances = _gpu(device).get("mig") or []
    if not 0 <= index < len(instances):
        raise _real.NVMLError(_real.NVML_ERROR_NOT_FOUND)
    access = instances[index].get("access", "ok")
    if access != "ok":
        raise _error(access)
    return _Handle(device.gpu, index)


def nvmlDeviceIsMigDeviceHandle(device):
    return device.mig is not None


def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(migDevice):  # noqa: N803 (nvidia-ml-py's)
    return _Handle(migDevice.gpu)


def nvmlDeviceGetGpuInstanceId(device):
    _check("nvmlDeviceGetGpuInstanceId", device)
    return _unit(device).get("gi", 0)


def nvmlDeviceGetComputeInstanceId(device):
    _check("nvmlDeviceGetComputeInstanceId", device)
    return _unit(device).get("ci", 0)

