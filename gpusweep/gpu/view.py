"""Whose GPU memory is it? The decisions, as pure functions over NVML readings.

Device-level ``used`` memory includes every user's processes. So each reading is split by
PID into the trial's own memory, its neighbours' (other trials of the sweep on the same
device) and foreign memory (processes outside the sweep), and the residual after a trial is
what is left above the baseline once neighbours and the change in foreign memory are taken
out: a colleague's growth is not our leak, and a colleague's release does not hide one.

Where NVML's PIDs are not ours (a container: :class:`~gpusweep.gpu.device.Namespace` FOREIGN),
none of that split is possible; the trial's holders are then found through their device
files (:mod:`gpusweep.gpu.devfiles`), and what cannot be attributed is unknown, never clean and
never dirty: :class:`Verdict` ``clean`` is None with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from gpusweep.gpu.device import Namespace

Listed = Mapping[int, float | None]  # pid -> MB (None: listed, memory unknown)


class Attribution(str, Enum):
    """How a trial's GPU processes were identified."""

    PID = "pid"  # NVML's process lists name them
    DEVICE_FILES = "device_files"  # their open /dev/nvidia-uvm (NVML's PIDs are not ours)
    NONE = "none"  # neither could be read


def namespace_evidence(listed: Listed | None, sweep_pids: set[int],
                       holds_context: Callable[[int], bool | None],
                       trial_holders: set[int]) -> Namespace:
    """What one reading says about NVML's PIDs.

    MATCHED: NVML lists a process of the sweep, or a process here that holds a CUDA context.
    FOREIGN: a trial process holds a context (its device files say so) while NVML lists
    processes and none of them is ours. UNKNOWN otherwise (a single reading may race a
    context being created: the caller wants FOREIGN several times in a row).
    """
    if not listed:
        return Namespace.UNKNOWN
    pids = set(listed)
    if pids & sweep_pids or any(holds_context(pid) for pid in pids - sweep_pids):
        return Namespace.MATCHED
    return Namespace.FOREIGN if trial_holders else Namespace.UNKNOWN


def next_namespace(current: Namespace, evidence: Namespace, votes: int, rose: bool,
                   needed: int) -> tuple[Namespace, int]:
    """The device's namespace after one reading's ``evidence``, and the FOREIGN votes so far.

    FOREIGN needs ``needed`` readings in a row while the device's memory rose above where the
    trial found it (a trial that opened the device files but allocates later, beside another
    user's listed process, is no proof: its memory is not listed yet because there is none).
    A MATCHED reading settles MATCHED, and undoes a FOREIGN that such a case still produced.
    """
    if evidence is Namespace.MATCHED:
        return Namespace.MATCHED, 0
    if current is not Namespace.UNKNOWN:
        return current, 0
    if evidence is Namespace.FOREIGN and rose:
        votes += 1
        return (Namespace.FOREIGN if votes >= needed else Namespace.UNKNOWN), votes
    return Namespace.UNKNOWN, 0


@dataclass(frozen=True)
class Usage:
    """One reading split by owner (MB; None: cannot be told)."""

    tree_mb: float | None  # the trial's own processes
    neighbours_mb: float | None  # other trials of the sweep on this device
    foreign_mb: float | None  # every other process
    matched: bool  # a process of the trial was listed


def split_usage(listed: Listed | None, tree: set[int], neighbours: set[int],
                namespace: Namespace) -> Usage:
    """Split NVML's per-process figures into the trial's, its neighbours' and foreign.

    A listed PID that is nobody's we know is foreign only where PIDs are known to be ours
    (MATCHED): in a container our own processes are listed under PIDs we cannot match.
    """
    if listed is None:
        return Usage(None, None, None, False)
    if not listed:
        return Usage(0.0, 0.0, 0.0, False)
    pids = set(listed)
    ours, theirs = pids & tree, pids & (neighbours - tree)
    others = pids - tree - neighbours
    if namespace is Namespace.FOREIGN:
        return Usage(None, None, None, False)
    known = namespace is Namespace.MATCHED or not others
    return Usage(tree_mb=_sum(listed, ours), neighbours_mb=_sum(listed, theirs),
                 foreign_mb=_sum(listed, others) if known else None, matched=bool(ours))


def listed_total(listed: Listed | None) -> float | None:
    """Everything NVML lists, or None if any of it is unknown."""
    return None if listed is None else _sum(listed, set(listed))


def _sum(listed: Listed, pids: Iterable[int]) -> float | None:
    total = 0.0
    for pid in pids:
        value = listed[pid]
        if value is None:
            return None
        total += value
    return total


def attribute(matched: bool, holder_seen: bool, files_readable: bool, lists_readable: bool,
              namespace: Namespace, peak_mb: float | None) -> tuple[Attribution, float | None]:
    """How the trial's GPU memory was attributed, and its peak (None where it cannot be).

    A trial that never held a CUDA context (its device files say so) used 0 MB: that 0 is
    true. A trial that held one but that NVML never named has a peak nobody can attribute:
    None, never a false 0.
    """
    if matched:
        return Attribution.PID, peak_mb
    if holder_seen:
        return Attribution.DEVICE_FILES, None
    if files_readable:
        by_pid = lists_readable and namespace is Namespace.MATCHED
        return (Attribution.PID if by_pid else Attribution.DEVICE_FILES), 0.0
    return Attribution.NONE, None


@dataclass(frozen=True)
class Baseline:
    """A device before trials: its used memory and what NVML listed then (all of it
    foreign, since no trial held the device)."""

    used_mb: float | None
    listed_mb: float | None = None  # None: unreadable, or some listed memory unknown
    listed_pids: int = 0


@dataclass(frozen=True)
class Verdict:
    clean: bool | None  # None: could not be proven either way
    residual_mb: float | None  # above the baseline, neighbours and foreign change removed
    reason: str | None = None
    unattributable: bool = False  # settled but unknown: more waiting will not decide it


def judge(used_mb: float | None, baseline: Baseline, usage: Usage,
          holders: set[int] | None, tolerance_mb: float, read_error: str | None = None,
          lists_error: str | None = None) -> Verdict:
    """Is the device back to its baseline, with no process of the trial on it?

    Dirty (False) only when proven: a trial process still holds GPU memory, or memory above
    the baseline is held by no listed process. Unknown (None) when a reading failed
    (``lists_error``: NVML's process lists could not be read now; worth retrying), or the
    excess may belong to processes we cannot tell apart (other users' in a container,
    neighbours whose PIDs do not match), or the device fell below its baseline while the
    change in foreign memory is unknown (a colleague's release may hide our leak).
    """
    if used_mb is None:
        return Verdict(None, None, f"device memory could not be read ({read_error or 'NVML'})")
    if baseline.used_mb is None:
        return Verdict(None, None, "no baseline: the device's memory could not be read before "
                       "the trial", unattributable=holders is not None and not holders)
    foreign_change = None
    if usage.foreign_mb is not None and baseline.listed_mb is not None:
        foreign_change = usage.foreign_mb - baseline.listed_mb
    residual = used_mb - baseline.used_mb - (usage.neighbours_mb or 0.0) - (foreign_change or 0.0)
    if holders:
        return Verdict(False, residual, "processes of the trial still hold GPU memory: "
                       + ", ".join(str(p) for p in sorted(holders)))
    if holders is None:
        return Verdict(None, residual, "cannot tell whether the trial's remaining processes "
                       "hold GPU memory (NVML's process lists and their fds are unreadable)")
    if foreign_change is None and residual < -tolerance_mb:
        return Verdict(None, None, f"the device fell {-residual:.0f} MB below the baseline "
                       "while the change in other processes' memory is unknown (NVML gives "
                       "no per-process figure): a release of theirs may hide memory of ours",
                       unattributable=True)
    if residual <= tolerance_mb:
        return Verdict(True, residual)
    if lists_error:
        return Verdict(None, residual, f"{residual:.0f} MB above the baseline, and NVML's "
                       f"process lists could not be read ({lists_error})")
    known = usage.neighbours_mb is not None and foreign_change is not None
    if known:
        return Verdict(False, residual, f"{residual:.0f} MB above the baseline held by no "
                       "process NVML lists")
    return Verdict(None, residual, f"{residual:.0f} MB above the baseline that cannot be "
                   "attributed: other users' or neighbouring trials' processes whose PIDs do "
                   "not match ours (a container), and no process of the trial holds the GPU",
                   unattributable=True)
