"""The host's memory as this process's trials can use it: the machine's, or its memory
cgroup's (a container's) when that limit is nearer.

Probes of /proc and the cgroup fs; the decisions over these figures are in
:mod:`gpusweep.guards`.
"""

from __future__ import annotations

import functools


def machine_memory_mb() -> float | None:
    """The RAM this machine (or its memory cgroup, when smaller) can give processes."""
    import psutil

    total = psutil.virtual_memory().total / 2**20
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text) / 2**20)
    return total if total > 0 else None


def available_mb() -> float | None:
    """The memory processes can still get now: MemAvailable, or less when this runs in a
    memory cgroup (a container) whose limit is nearer. The monitor asks ten times a second:
    read single lines rather than have psutil parse everything."""
    machine = _meminfo_available_mb()
    room = cgroup_room_mb(*_cgroup_memory())
    if machine is None:
        return room
    return machine if room is None else min(machine, room)


def _meminfo_available_mb() -> float | None:
    try:
        with open("/proc/meminfo", "rb") as handle:
            for line in handle:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import psutil

    try:
        return psutil.virtual_memory().available / 2**20
    except OSError:
        return None


# (limit, usage, memory.stat key of reclaimable page cache), cgroup v2 then v1
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current",
     "/sys/fs/cgroup/memory.stat", b"inactive_file"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
     "/sys/fs/cgroup/memory/memory.stat", b"total_inactive_file"),
)


def cgroup_room_mb(limit: int | None, usage: int | None, inactive_file: int) -> float | None:
    """What the cgroup's limit still allows, in MB (None: no limit). Inactive page cache is
    reclaimed before the cgroup's OOM killer acts, so it counts as room (as docker stats)."""
    if limit is None or usage is None or limit >= 2**60:  # "max", or v1's near-2**63 "none"
        return None
    return max(0.0, (limit - usage + inactive_file) / 2**20)


def _cgroup_memory() -> tuple[int | None, int | None, int]:
    found = _cgroup_limit()
    if found is None:
        return None, None, 0
    (limit_path, usage_path, stat_path, inactive_key), limit = found
    inactive = 0
    try:
        with open(stat_path, "rb") as handle:
            for line in handle:
                if line.startswith(inactive_key + b" "):
                    inactive = int(line.split()[1])
                    break
    except (OSError, ValueError):
        pass
    return limit, _read_int(usage_path), inactive


@functools.cache
def _cgroup_limit() -> tuple[tuple[str, str, str, bytes], int] | None:
    """This process's cgroup memory limit and its files, read once (limits are set when a
    container starts); None when there is none, so the 10 Hz monitor reads nothing more."""
    for files in _CGROUP_FILES:
        limit = _read_int(files[0])
        if limit is not None and limit < 2**60:
            return files, limit
    return None


def _read_int(path: str) -> int | None:
    """An integer file of the cgroup fs; None when missing or "max"."""
    try:
        with open(path, "rb") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None
