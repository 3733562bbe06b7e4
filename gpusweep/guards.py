"""Decisions taken while a trial runs, from the monitor's numbers: host memory and stalls.

Pure functions of numbers, so they are tested without processes; the runner asks them on
every tick and stops the tree when one answers with a reason.
"""

from __future__ import annotations

import functools
import signal

from gpusweep.isolation import LimitsConfig

# A SIGKILL we did not send, with this little of the machine's memory left, was the kernel.
OOM_KILLER_AVAILABLE_FRACTION = 0.05
OOM_KILLER_RSS_FRACTION = 0.8


def host_memory_reason(
    tree_rss_mb: float, available_mb: float | None, limits: LimitsConfig
) -> str | None:
    """Why the trial must stop now for host memory, or None.

    Two guards: the tree's own limit (``limits.rss_mb``), and the machine's margin
    (``limits.min_available_mb``), so the kernel never has to choose a victim, which could be
    the orchestrator itself.
    """
    if limits.rss_mb is not None and tree_rss_mb > limits.rss_mb:
        return (f"the trial's processes used {tree_rss_mb:.0f} MB of RAM, over "
                f"isolation.limits.rss_mb {limits.rss_mb:.0f}")
    if available_mb is not None and available_mb < limits.min_available_mb:
        return (f"the machine had only {available_mb:.0f} MB of RAM available, under "
                f"isolation.limits.min_available_mb {limits.min_available_mb:.0f}")
    return None


def oom_killer_suspected(
    returncode: int | None,
    we_signalled: bool,
    peak_rss_mb: float | None,
    min_available_mb: float | None,
    machine_mb: float | None,
) -> bool:
    """Whether a SIGKILL that we did not send came from the kernel's OOM killer.

    The kernel kills with SIGKILL when memory runs out; the monitor saw either the tree's RSS
    near the machine's limit or the machine's available memory nearly gone.
    """
    if returncode != -signal.SIGKILL or we_signalled or not machine_mb:
        return False
    near_limit = peak_rss_mb is not None and peak_rss_mb >= OOM_KILLER_RSS_FRACTION * machine_mb
    exhausted = (min_available_mb is not None
                 and min_available_mb <= OOM_KILLER_AVAILABLE_FRACTION * machine_mb)
    return near_limit or exhausted


def stalled_for(
    now: float, last_activity: float, cpu_used_in_window_s: float, stall_s: float,
    cpu_fraction: float = 0.02,
) -> bool:
    """Whether a trial is stalled: no report for ``stall_s`` and (almost) no CPU in that time.

    ``last_activity`` is the latest of the trial's start and its last report; the CPU used in
    the last ``stall_s`` seconds must stay under ``cpu_fraction`` of one core.
    """
    return now - last_activity >= stall_s and cpu_used_in_window_s < cpu_fraction * stall_s


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
