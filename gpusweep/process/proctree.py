"""A process tree read cheaply: one ``/proc/<pid>/stat`` read per process on Linux.

The monitor samples the trial's tree ten times a second for the whole sweep, so this is on
the hot path: psutil would scan every process on the machine to find children and read
several files per process. Here, children come from ``/proc/<pid>/task/*/children`` and
state, parent, CPU time, RSS and start time from one ``stat`` read. Elsewhere (no /proc),
psutil does the same job more slowly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from gpusweep.process import reaper

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
_TICKS = os.sysconf("SC_CLK_TCK")
_BOOT_TIME = psutil.boot_time()
_HAS_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    zombie: bool
    cpu_s: float  # user + system
    rss_mb: float
    create_time: float  # seconds since the epoch, as psutil.Process.create_time()
    comm: str = ""  # the kernel's command name (changes on exec)


def read(pid: int) -> ProcStat | None:
    """One process's figures, or None when it is gone."""
    if not _HAS_CHILDREN_FILES:
        return _read_psutil(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2:].split()
    state = fields[0]
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        zombie=state in (b"Z", b"X"),
        cpu_s=(int(fields[11]) + int(fields[12])) / _TICKS,
        rss_mb=int(fields[21]) * _PAGE_MB,
        create_time=_BOOT_TIME + int(fields[19]) / _TICKS,
        comm=data[data.find(b"(") + 1:data.rfind(b")")].decode("utf-8", "replace"),
    )


def cmdline(pid: int) -> list[str]:
    """A process's argv, or [] when it is gone or unreadable."""
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def is_wandb_service(comm: str, argv: list[str]) -> bool:
    """Is this wandb's service process (``wandb-core``, its ``wandb-symon`` monitor, or the
    older Python ``wandb service``)? It serves the trial but its RSS swings by hundreds of MB
    with what it buffers, so it is kept out of the trial's own memory figure."""
    if comm.startswith("wandb-"):
        return True
    names = [os.path.basename(a) for a in argv]
    if names and names[0].startswith(("wandb-core", "wandb-symon")):
        return True
    return any(n == "wandb" and argv[i + 1:i + 2] == ["service"] for i, n in enumerate(names))


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (of all its threads)."""
    if not _HAS_CHILDREN_FILES:
        try:
            return [c.pid for c in psutil.Process(pid).children()]
        except psutil.Error:
            return []
    return reaper.children(pid)


def descendants(roots: list[int]) -> list[int]:
    """``roots`` and every process below them, each once."""
    found: list[int] = []
    known: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in known:
            continue
        known.add(pid)
        found.append(pid)
        stack += children(pid)
    return found


def _read_psutil(pid: int) -> ProcStat | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            return ProcStat(pid, proc.ppid(), proc.status() == psutil.STATUS_ZOMBIE,
                            times.user + times.system, proc.memory_info().rss / 2**20,
                            proc.create_time(), proc.name())
    except psutil.Error:
        return None
