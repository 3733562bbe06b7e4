"""``CUDA_VISIBLE_DEVICES`` of the orchestrator, resolved to NVML devices as CUDA would.

A Slurm job without cgroup device limits, or a shared workstation, sets the variable to the
GPUs that are ours; trials must only ever get GPUs from that set. CUDA's rules (CUDA C++
Programming Guide, "CUDA Environment Variables"; the MIG user guide; nvitop's
``parse_cuda_visible_devices``, whose fallback parser follows them):

- unset: every GPU; empty: none;
- entries are indices, ``GPU-<uuid>`` (a unique prefix is enough), ``MIG-<uuid>`` or the
  older ``MIG-GPU-<uuid>/<gpu instance>/<compute instance>``; an index keeps only its leading
  digits (``1abc`` is ``1``); the first entry decides between indices and UUIDs;
- an entry that is malformed, names no device, or is of the other kind hides itself and
  every entry after it; a duplicate hides everything. A negative index (``-1``, the common
  way to say "no GPU") does so on purpose: ``-1`` first means none, ``0,-1`` means GPU 0.

Indices are read in PCI bus order, as with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (which trials
get); CUDA's default order (fastest first) differs only on machines with mixed GPU models.

Where we differ, on purpose: a MIG-enabled GPU (by index or UUID) gives all its instances,
and several ``MIG-`` entries give several devices (CUDA shows one process one MIG device:
each trial gets exactly one, so the set is a pool). And an entry CUDA would hide is refused
(exit 2) instead of silently running on fewer GPUs than were named; but on a machine where
NVML finds no GPU at all, any value means the CPU for CUDA too, so it is a warning there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpusweep.gpu.device import Device, NullDevice, NvmlDevice
from gpusweep.gpu.scan import DeviceScan, PhysicalGpu, scan_devices

ENV = "CUDA_VISIBLE_DEVICES"
_LEGACY_MIG = re.compile(r"^MIG-GPU-(?P<gpu>[0-9a-fA-F-]+)/(?P<gi>\d+)/(?P<ci>\d+)$")


@dataclass
class Visible:
    """The devices trials may use, and why an entry hid the rest (None: all resolved)."""

    devices: list[NvmlDevice] = field(default_factory=list)
    problem: str | None = None
    warning: str | None = None  # worth a line, but CUDA would run the same way


def resolve(value: str | None, gpus: Sequence[PhysicalGpu]) -> Visible:
    """The devices ``CUDA_VISIBLE_DEVICES=value`` leaves visible, in the order given."""
    if value is None:
        return Visible([unit for gpu in gpus for unit in gpu.units])
    entries = [entry.strip() for entry in value.split(",")]
    if entries == [""] or re.match(r"^-\d+$", entries[0]):
        return Visible([])
    if not gpus:
        return Visible([], warning=f"{ENV}={value} but NVML finds no GPU here: trials run "
                       "on the CPU, as CUDA would")
    visible = Visible()
    kind: str | None = None
    seen: set[int] = set()
    for position, entry in enumerate(entries):
        if re.match(r"^-\d+$", entry):  # CUDA's "no GPU from here on"
            break
        found, entry_kind, why = _one(entry, gpus)
        kind = kind or entry_kind
        if found is not None and entry_kind != kind:
            found, why = None, f"a {entry_kind} after {kind}s (the first entry decides)"
        if found is None:
            visible.problem = f"entry {position + 1} {entry!r} {why}"
            return visible
        for unit in found:
            if id(unit) in seen:
                return Visible([], f"entry {position + 1} {entry!r} names a device twice "
                                   "(CUDA then shows no GPU at all)")
            seen.add(id(unit))
            visible.devices.append(unit)
    return visible


def _one(entry: str, gpus: Sequence[PhysicalGpu]) -> tuple[list[NvmlDevice] | None, str, str]:
    """One entry: the devices it names, its kind (index or UUID), and what is wrong."""
    digits = re.match(r"^\d+", entry)
    if digits:
        index = int(digits.group(0))
        gpu = next((g for g in gpus if g.index == index), None)
        if gpu is None:
            return None, "index", f"is no GPU index here ({len(gpus)} GPUs)"
        if not gpu.units:
            return None, "index", "is a GPU that could not be opened"
        return list(gpu.units), "index", ""
    legacy = _LEGACY_MIG.match(entry)
    if legacy:
        gpu = _by_prefix(legacy.group("gpu"), gpus)
        ids = (int(legacy.group("gi")), int(legacy.group("ci")))
        units = [u for u in gpu.units if u.info.mig_ids == ids] if gpu else []
        return (units or None), "uuid", "names no MIG instance here"
    if entry.startswith("MIG-"):
        units = [u for g in gpus for u in g.units if u.info.mig_index is not None
                 and _matches(u.info.uuid, entry)]
        return _unique(units, "MIG instance")
    if entry.startswith("GPU-"):
        gpu = _by_prefix(entry[4:], gpus)
        if gpu is None:
            matches = [g for g in gpus if _matches(g.uuid, entry)]
            why = "is ambiguous (a prefix of several GPUs)" if matches else "names no GPU here"
            return None, "uuid", why
        return (list(gpu.units) or None), "uuid", "is a GPU that could not be opened"
    return None, "index" if not entry else "uuid", "is neither an index nor a GPU-/MIG- UUID"


def _by_prefix(prefix: str, gpus: Sequence[PhysicalGpu]) -> PhysicalGpu | None:
    matches = [g for g in gpus if _matches(g.uuid, f"GPU-{prefix}")]
    return matches[0] if len(matches) == 1 else None


def _unique(units: list[NvmlDevice], what: str) -> tuple[list[NvmlDevice] | None, str, str]:
    if len(units) == 1:
        return units, "uuid", ""
    return None, "uuid", (f"is ambiguous (a prefix of several {what}s)" if units
                          else f"names no {what} here")


def _matches(uuid: str | None, prefix: str) -> bool:
    return uuid is not None and len(prefix) > 4 and uuid.lower().startswith(prefix.lower())


def visible_devices(scan: DeviceScan, environ: Mapping[str, str] | None = None) -> Visible:
    """The devices the orchestrator's ``CUDA_VISIBLE_DEVICES`` leaves visible."""
    environ = os.environ if environ is None else environ
    return resolve(environ.get(ENV), scan.gpus)


def default_device(environ: Mapping[str, str] | None = None) -> Device:
    """The first device ``CUDA_VISIBLE_DEVICES`` leaves visible, or a NullDevice."""
    devices = visible_devices(scan_devices(environ), environ).devices
    return devices[0] if devices else NullDevice()


def describe(devices: Sequence[NvmlDevice]) -> str:
    """The visible set as ``--gpus`` numbers it, for messages."""
    if not devices:
        return "none"
    return ", ".join(f"{i} = GPU {d.info.label} {d.info.name}" for i, d in enumerate(devices))
