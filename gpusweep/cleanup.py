"""Ending a trial's whole process tree and waiting until its GPU memory is really back.

``end_tree`` is the one function every path that ends a trial uses (exit, crash, timeout,
Hyperband, Ctrl-C): SIGTERM to the process group, a grace period, SIGKILL, then the escapees
(processes outside the group, e.g. daemons that left with ``setsid``) get the same within
what is left of the grace period. The group goes first because some processes outside it
serve it: wandb's service runs in its own session and must outlive the trial's ``finally``
(``run.finish()``) to write the run; it leaves on its own with the trial, and is only an
escapee if it is still there afterwards.

A trial started through its launcher (:class:`~gpusweep.process.trialprocess.TrialProcess`) is
stopped by the launcher, which does exactly that over its own subtree: being a subreaper, it
holds every orphan of the trial however it detached. Then the scan here is the second net:
processes that carry the trial's token in their environment, were seen in its tree, or are
still in its cgroup (what a killed launcher left behind).

The GPU wait that follows (``wait_until_clean``) lives in :mod:`gpusweep.gpu.wait`; it is
re-exported here for the callers that end a trial and then wait.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from gpusweep.bootstrap._gpusweep_contract import TOKEN_ENV
from gpusweep.gpu.wait import WaitResult, fixed_wait_s, wait_until_clean  # noqa: F401
from gpusweep.process.trialprocess import TrialProcess

ProcessKey = tuple[int, float]  # (pid, create_time): a pid alone may be reused


@dataclass(frozen=True)
class EndResult:
    processes_killed: int  # processes of the trial we had to signal
    escapees_killed: int  # of those, the ones outside the trial's process group
    leftover: tuple[int, ...]  # pids that survived even SIGKILL (should be empty)
    ended_pids: tuple[int, ...] = ()


def end_tree(
    pgid: int | None,
    token: str | None,
    seen: Iterable[ProcessKey] = (),
    grace_s: float = 10.0,
    kill_wait_s: float = 5.0,
    launcher: TrialProcess | None = None,
    members: Callable[[], Iterable[int]] | None = None,
) -> EndResult:
    """Stop every process of a trial: the group (polite signal, grace period, SIGKILL),
    then what is left outside it (the same, within the rest of the grace period).

    With its ``launcher``, the launcher does that over the trial's subtree first; ``members``
    gives the pids still in the trial's cgroup. Both are counted like the scan's finds.
    """
    deadline = time.monotonic() + grace_s
    first = EndResult(processes_killed=0, escapees_killed=0, leftover=())
    if launcher is not None:
        launcher.stop(grace_s)
        first = EndResult(
            processes_killed=len(launcher.signalled),
            escapees_killed=sum(1 for where in launcher.signalled.values() if where != "group"),
            leftover=tuple(launcher.leftover), ended_pids=tuple(launcher.signalled))
    if members is not None:
        seen = [*seen, *_keys(members())]
    rest = _scan_and_end(pgid, token, seen, max(0.0, deadline - time.monotonic()),
                         kill_wait_s)
    leftover = set(rest.leftover) | {pid for pid in first.leftover if _pid_alive(pid)}
    return EndResult(processes_killed=first.processes_killed + rest.processes_killed,
                     escapees_killed=first.escapees_killed + rest.escapees_killed,
                     leftover=tuple(sorted(leftover)),
                     ended_pids=tuple(sorted({*first.ended_pids, *rest.ended_pids})))


def _keys(pids: Iterable[int]) -> list[ProcessKey]:
    """(pid, create_time) of processes alive now."""
    keys = []
    for pid in pids:
        try:
            keys.append((pid, psutil.Process(pid).create_time()))
        except psutil.Error:
            continue
    return keys


def _scan_and_end(pgid: int | None, token: str | None, seen: Iterable[ProcessKey],
                  grace_s: float, kill_wait_s: float) -> EndResult:
    """The group, then the rest of what :func:`find_trial_processes` finds."""
    deadline = time.monotonic() + grace_s
    targets = find_trial_processes(pgid, token, seen)
    if not targets:  # the common case: the trial exited and left nothing behind
        return EndResult(processes_killed=0, escapees_killed=0, leftover=())
    group = [p for p in targets if _pgid(p.pid) == pgid]
    outside = [p for p in targets if _pgid(p.pid) != pgid]
    _escalate(group, pgid, grace_s, kill_wait_s)
    escaped = [p for p in outside if _alive(p)]
    _escalate(escaped, None, max(0.0, deadline - time.monotonic()), kill_wait_s)
    escapees = {p.pid for p in escaped}
    killed = {p.pid for p in group} | escapees
    # Anything that forked during the grace period, or that we could not see before.
    ended = {p.pid for p in targets}
    for _ in range(3):
        late = [p for p in find_trial_processes(pgid, token, seen) if p.pid not in ended]
        if not late:
            break
        escapees.update(p.pid for p in late)
        killed.update(p.pid for p in late)
        ended.update(p.pid for p in late)
        _signal_all(late, None, signal.SIGKILL)
        _wait_gone(late, kill_wait_s)
    leftover = tuple(p.pid for p in find_trial_processes(pgid, token, seen))
    return EndResult(processes_killed=len(killed), escapees_killed=len(escapees),
                     leftover=leftover, ended_pids=tuple(sorted(ended)))


def _escalate(procs: list[psutil.Process], pgid: int | None, grace_s: float,
              kill_wait_s: float) -> None:
    """SIGTERM, up to ``grace_s`` to leave, then SIGKILL for the survivors."""
    if not procs:
        return
    _signal_all(procs, pgid, signal.SIGTERM)
    survivors = _wait_gone(procs, grace_s)
    if survivors:
        _signal_all(survivors, pgid, signal.SIGKILL)
        _wait_gone(survivors, kill_wait_s)


def find_trial_processes(
    pgid: int | None, token: str | None, seen: Iterable[ProcessKey] = ()
) -> list[psutil.Process]:
    """Live processes in the trial's group, carrying its token, or seen in its tree.

    Scans every process, so it is written for speed: cheap checks (process group, known pid)
    first, then the raw environment bytes, and the liveness check only for matches.
    """
    seen_map = dict(seen)
    marker = f"\0{TOKEN_ENV}={token}\0".encode() if token else None
    me = os.getpid()
    found = []
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            proc = psutil.Process(pid)
            if _belongs(proc, pgid, marker, seen_map) and _alive(proc):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _belongs(proc: psutil.Process, pgid: int | None, marker: bytes | None,
             seen: dict[int, float]) -> bool:
    if pgid is not None and _pgid(proc.pid) == pgid:
        return True
    if proc.pid in seen and abs(proc.create_time() - seen[proc.pid]) < 0.01:
        return True
    return marker is not None and marker in _environ_bytes(proc)


def _environ_bytes(proc: psutil.Process) -> bytes:
    """The process's environment as NUL-separated bytes (raw /proc read on Linux)."""
    try:
        with open(f"/proc/{proc.pid}/environ", "rb") as handle:
            return b"\0" + handle.read() + b"\0"
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return b""  # the process is gone
    except PermissionError:
        return b""
    try:  # no /proc: ask psutil
        return b"\0" + b"\0".join(f"{k}={v}".encode() for k, v in proc.environ().items()) \
            + b"\0"
    except (psutil.Error, OSError):
        return b""


def _signal_all(procs: Iterable[psutil.Process], pgid: int | None, sig: int) -> None:
    """One signal to each process: the group at once, then each process outside it.

    Exactly one: a second SIGTERM would arrive while the first one's ``finally`` (the
    trial's own cleanup, W&B's ``run.finish``) runs, and cut it short.
    """
    procs = list(procs)
    signalled_group = False
    if pgid is not None and any(_pgid(p.pid) == pgid for p in procs):
        try:
            os.killpg(pgid, sig)
            signalled_group = True
        except (ProcessLookupError, PermissionError):
            pass
    for proc in procs:
        try:
            if signalled_group and _pgid(proc.pid) == pgid:
                continue
            if _alive(proc):
                proc.send_signal(sig)
        except (psutil.Error, OSError):
            pass


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until none is alive (zombies count as gone); return the survivors."""
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if _alive(p)]
    delay = 0.005
    while alive and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
        alive = [p for p in alive if _alive(p)]
    return alive


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        return _alive(psutil.Process(pid))
    except psutil.Error:
        return False


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
