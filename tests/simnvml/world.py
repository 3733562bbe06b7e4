"""SIMULATION: the state behind the simulated NVML (the scenario and the memory processes
hold). See :mod:`simnvml` for the scenario format.

Real processes register "allocations" as small JSON files under ``<state_dir>/alloc/``
(:mod:`simnvml.holder` writes them); the simulation reports each while its process lives,
and for ``free_delay_s`` after it first sees the process gone (the driver frees a dead
process's memory a little later), then ``orphan_mb`` of it forever, listed under no process
(memory the driver never gave back).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

SCENARIO_ENV = "GPUSWEEP_SIMNVML"
MB = 1024 * 1024


def load_scenario(path: str | None = None) -> dict[str, Any]:
    path = path or os.environ.get(SCENARIO_ENV)
    if not path:
        raise RuntimeError(f"SIMULATED NVML: set {SCENARIO_ENV} to a scenario file")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def units(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """Every device a process can run on: GPUs without MIG, and MIG instances, each with
    ``minor`` (its /dev/nvidia<N>) and ``index`` (its GPU's NVML index)."""
    found = []
    for index, gpu in enumerate(scenario.get("gpus", [])):
        if gpu.get("mig") is None:
            found.append({**gpu, "index": index, "minor": index})
        for mig in gpu.get("mig") or []:
            found.append({**mig, "index": index, "minor": index, "parent": gpu["uuid"]})
    return found


@dataclass
class Allocation:
    pid: int
    uuid: str
    mb: float
    lists: list[str]
    orphan_mb: float
    alive: bool
    listed: bool  # alive, or gone for less than free_delay_s
    busy: bool = True  # False: held by a process that runs nothing on the GPU (a dead trial)


@dataclass
class World:
    """The scenario plus what processes hold now (read again at every query)."""

    scenario: dict[str, Any]
    gone_since: dict[str, float] = field(default_factory=dict)  # alloc file -> first seen gone
    energy_mj: dict[str, float] = field(default_factory=dict)
    energy_t: dict[str, float] = field(default_factory=dict)

    @property
    def state_dir(self) -> str:
        return self.scenario["state_dir"]

    def triggered(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.state_dir, name))

    def allocations(self) -> list[Allocation]:
        folder = os.path.join(self.state_dir, "alloc")
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            return []
        delay = float(self.scenario.get("free_delay_s", 0.0))
        now = time.monotonic()
        found = []
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    entry = json.load(handle)
            except (OSError, ValueError):
                continue  # removed (released) meanwhile
            alive = _alive(entry["pid"], entry.get("create_time"))
            if alive:
                self.gone_since.pop(name, None)
            else:
                self.gone_since.setdefault(name, now)
            listed = alive or now - self.gone_since[name] < delay
            found.append(Allocation(int(entry["pid"]), entry["uuid"], float(entry["mb"]),
                                    list(entry.get("lists") or ["compute"]),
                                    float(entry.get("orphan_mb", 0.0)), alive, listed,
                                    bool(entry.get("busy", True))))
        return found

    def held_mb(self, uuid: str) -> tuple[float, list[Allocation]]:
        """Memory on one device (listed allocations, orphans, static processes) and the
        allocations that are listed."""
        allocations = [a for a in self.allocations() if a.uuid == uuid]
        listed = [a for a in allocations if a.listed]
        total = sum(a.mb for a in listed) + sum(a.orphan_mb for a in allocations
                                                 if not a.listed)
        return total, listed

    def idle_mb(self, uuid: str) -> float:
        """Memory on one device held by live processes that run nothing on it."""
        return sum(a.mb for a in self.allocations()
                   if a.uuid == uuid and a.listed and not a.busy)

    def energy(self, uuid: str, power_w: float) -> float:
        """The energy counter (mJ): integrates the power now over the time since last read."""
        now = time.monotonic()
        last = self.energy_t.get(uuid, now)
        self.energy_mj[uuid] = self.energy_mj.get(uuid, 5.0e9) + power_w * (now - last) * 1e3
        self.energy_t[uuid] = now
        return self.energy_mj[uuid]


def _alive(pid: int, create_time: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.01:
            return False  # the pid was reused
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False
