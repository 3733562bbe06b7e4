"""cgroup v2 for trials, where the machine delegates a writable subtree to us.

Each trial then runs in a cgroup of its own (``<our cgroup>/gpusweep-<sweep>-<run>``), born
in it by its launcher (``clone3(CLONE_INTO_CGROUP)``, or moved there before its exec); the
launcher stays outside, so its memory is not the trial's. ``cgroup.kill`` (Linux 5.14+) ends
every process in it at once, fork races included; with the memory controller, ``memory.peak``
is the tree's true peak (shared pages counted once) and ``memory.max`` makes
``isolation.limits.rss_mb`` a kernel limit whose OOM victim is always the trial, never the
orchestrator (``memory.events`` counts its kills).

Detected once, at the first trial, from ``/proc/mounts``, ``/proc/self/cgroup`` and a test
write; never required. Without it the subreaper launcher contains the tree alone.
Kernel interface: https://docs.kernel.org/admin-guide/cgroup-v2.html
"""

from __future__ import annotations

import errno
import functools
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

PREFIX = "gpusweep-"
_MB = 2**20


@dataclass(frozen=True)
class Containment:
    """How this machine lets us hold a trial's processes: ``cgroup`` or ``subreaper``."""

    kind: str  # "cgroup" | "subreaper"
    base: str | None = None  # the cgroup v2 directory trial cgroups are made in
    memory: bool = False  # trial cgroups have memory.peak / memory.max
    note: str | None = None  # why cgroup (or its memory files) is not used


def cgroup2_mount(mounts: str) -> str | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or ``.../unified`` on a
    hybrid v1/v2 machine), from the text of ``/proc/mounts``."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return fields[1].replace("\\040", " ")
    return None


def own_cgroup(self_cgroup: str) -> str | None:
    """This process's cgroup v2 path (the ``0::/path`` line of ``/proc/self/cgroup``)."""
    for line in self_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or None
    return None


@functools.cache
def detect() -> Containment:
    """What this machine allows, decided once per process (the first trial asks)."""
    try:
        mount = cgroup2_mount(_read("/proc/mounts"))
        own = own_cgroup(_read("/proc/self/cgroup"))
    except OSError as exc:
        return Containment("subreaper", note=f"cannot read the cgroups: {exc.strerror}")
    if mount is None:
        return Containment("subreaper", note="no cgroup v2 hierarchy is mounted")
    if own is None:
        return Containment("subreaper", note="this process is in no cgroup v2")
    base = os.path.normpath(mount + own)
    problem = probe(base)
    if problem:
        return Containment("subreaper", note=problem)
    memory_problem = enable_memory(base)
    return Containment("cgroup", base, memory_problem is None, memory_problem)


def probe(base: str) -> str | None:
    """Why trial cgroups cannot be made in ``base``, or None: a test cgroup is created,
    checked for ``cgroup.kill`` and writable ``cgroup.procs``, and removed."""
    test = os.path.join(base, f"{PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.mkdir(test)
    except OSError as exc:
        return f"cannot create a cgroup in {base}: {exc.strerror}"
    problem = None
    if not os.path.exists(os.path.join(test, "cgroup.kill")):
        problem = f"cgroup v2 at {base} has no cgroup.kill (Linux 5.14+)"
    for procs in (os.path.join(base, "cgroup.procs"), os.path.join(test, "cgroup.procs")):
        if problem is None and not os.access(procs, os.W_OK):
            problem = f"cannot move processes between cgroups: {procs} is not writable"
    try:
        os.rmdir(test)
    except OSError as exc:  # a cgroup we cannot remove would be left behind by every trial
        problem = problem or f"cannot remove a cgroup in {base}: {exc.strerror}"
    return problem


def enable_memory(base: str, write: Callable[[str, str], None] | None = None) -> str | None:
    """Make sure ``base``'s children get the memory controller; why not, or None.

    cgroup v2 enables a controller for children in ``cgroup.subtree_control``, which fails
    while the cgroup holds processes of its own (the "no internal processes" rule; the root
    cgroup is exempt). We never move processes to make room: a cgroup that holds us
    (``systemd-run --scope``, a container) keeps its memory files to itself.
    """
    write = write or _write
    try:
        if "memory" in _read(os.path.join(base, "cgroup.subtree_control")).split():
            return None
        if "memory" not in _read(os.path.join(base, "cgroup.controllers")).split():
            return (f"cgroup v2 at {base} has no memory controller: memory.peak and memory.max "
                    "are not used")
        write(os.path.join(base, "cgroup.subtree_control"), "+memory")
        return None
    except OSError as exc:
        why = ("it holds processes of its own" if exc.errno == errno.EBUSY
               else exc.strerror or str(exc))
        return (f"cannot enable the memory controller below {base} ({why}): memory.peak and "
                "memory.max are not used")


@dataclass(frozen=True)
class TrialCgroup:
    """One trial's cgroup directory; every method is safe to call when it is gone."""

    path: str
    memory: bool

    @classmethod
    def create(cls, containment: Containment, name: str,
               memory_max_mb: float | None = None) -> TrialCgroup:
        """Make ``<base>/gpusweep-<name>``; with the memory controller and a limit, the
        kernel enforces it (no swap; an OOM ends the whole trial: ``memory.oom.group``)."""
        assert containment.base is not None
        path = os.path.join(containment.base, PREFIX + name)
        os.mkdir(path)
        group = cls(path, containment.memory)
        if group.memory and memory_max_mb is not None:
            try:
                group.set_memory_max(memory_max_mb)
            except OSError:
                group.remove()
                raise
        return group

    @classmethod
    def existing(cls, containment: Containment, name: str) -> TrialCgroup | None:
        """The cgroup ``create`` made under this name, if it is still there."""
        if containment.base is None:
            return None
        path = os.path.join(containment.base, PREFIX + name)
        return cls(path, containment.memory) if os.path.isdir(path) else None

    def set_memory_max(self, limit_mb: float) -> None:
        _write(os.path.join(self.path, "memory.max"), str(int(limit_mb * _MB)))
        for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
            if os.path.exists(os.path.join(self.path, name)):
                _write(os.path.join(self.path, name), value)

    def pids(self) -> list[int]:
        """The processes in it now."""
        try:
            return [int(x) for x in _read(os.path.join(self.path, "cgroup.procs")).split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL to every process in it, at once (the kernel's ``cgroup.kill``)."""
        try:
            _write(os.path.join(self.path, "cgroup.kill"), "1")
        except OSError:
            pass

    def peak_mb(self) -> float | None:
        """``memory.peak``: the most memory the trial's processes held at once; None
        without the memory controller (or a kernel before 5.19)."""
        return _number(os.path.join(self.path, "memory.peak"), _MB) if self.memory else None

    def oom_kills(self) -> int | None:
        """How many of its processes the kernel's OOM killer ended (``memory.events``)."""
        if not self.memory:
            return None
        try:
            for line in _read(os.path.join(self.path, "memory.events")).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None

    def populated(self) -> bool:
        """Whether any process, a zombie not yet reaped included, still holds it."""
        try:
            return "populated 1" in _read(os.path.join(self.path, "cgroup.events"))
        except OSError:
            return False

    def remove(self, timeout_s: float = 5.0) -> list[int]:
        """Kill what is left in it, wait until it is empty and remove it; the pids that
        would not go (then the directory stays)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if not self.populated():
                    os.rmdir(self.path)
                    return []
            except FileNotFoundError:
                return []
            except OSError:  # EBUSY: emptied an instant ago, or a zombie not reaped yet
                pass
            if time.monotonic() > deadline:
                return self.pids()
            self.kill()
            time.sleep(0.01)


def _number(path: str, unit: float) -> float | None:
    try:
        return int(_read(path).strip()) / unit
    except (OSError, ValueError):
        return None


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(text)
