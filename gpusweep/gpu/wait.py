"""After a trial: wait until its GPU memory is really back, and say so only when proven.

``wait_until_clean`` replaces the incident's fixed ``sleep(5)``: it polls NVML until the
device is back within tolerance of its baseline (neighbours and the change in foreign memory
taken out, :func:`gpusweep.gpu.view.judge`) and no process of the trial holds memory there,
so it waits exactly as long as the driver needs, and not more. A reading that fails is
retried until ``max_s``; what cannot be proven either way ends as ``clean: None`` with the
reason. Where the excess cannot be attributed at all (a container's foreign PIDs), more
waiting decides nothing: once no process of the trial is left and the device's memory has
stopped falling for :data:`SETTLE_S`, the wait ends, unknown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from gpusweep.gpu import devfiles
from gpusweep.gpu.device import Device, Namespace
from gpusweep.gpu.view import Baseline, Verdict, judge, split_usage
from gpusweep.isolation import WaitConfig

SETTLE_S = 1.0  # unattributable excess: stop once memory stopped falling for this long
SETTLE_MB = 1.0


@dataclass(frozen=True)
class WaitResult:
    wait_s: float
    clean: bool | None
    used_mb: float | None
    residual_mb: float | None  # above the baseline at the end (neighbours, foreign change out)
    holders: tuple[int, ...]  # trial pids still holding GPU memory at the end
    reason: str | None = None  # why it is not clean, or unknown
    foreign_mb: float | None = None  # memory of processes outside the sweep at the end


def fixed_wait_s(config: WaitConfig, peak_mb: float | None) -> float:
    """The length of ``mode: fixed``'s sleep: ``fixed_large_s`` past ``fixed_large_above_mb``.

    The incident's fix (README, "Background: the incident") slept 5 s after every trial; its
    proposed refinement waits longer after a trial that used more than 1000 MB. ``peak_mb`` is
    the trial's peak (GPU if any, else host).
    """
    if config.fixed_large_s is not None and peak_mb is not None \
            and peak_mb > config.fixed_large_above_mb:
        return config.fixed_large_s
    return config.fixed_s


def trial_holders(trial_pids: set[int], listed: dict | None,
                  namespace: Namespace = Namespace.UNKNOWN) -> set[int] | None:
    """The trial's processes still on the GPU: listed by NVML (a process that exited stays
    listed until the driver freed its memory; not where NVML's PIDs are another namespace's),
    or alive with a CUDA context open. None when neither can be read for a process that is
    still alive."""
    named = set() if namespace is Namespace.FOREIGN else trial_pids & set(listed or ())
    alive = {pid for pid in trial_pids - named if _alive(pid)}
    holders, unreadable = devfiles.context_holders(alive)
    if unreadable and listed is None:
        return None
    return named | holders


@dataclass(frozen=True)
class Poll:
    verdict: Verdict
    used_mb: float | None
    foreign_mb: float | None  # memory of processes outside the sweep now
    holders: tuple[int, ...]


def read_verdict(device: Device, baseline: Baseline, trial_pids: set[int],
                 neighbours: set[int], tolerance_mb: float) -> Poll:
    """One poll of the device, judged."""
    used = device.used_mb()
    listed = device.process_memory_mb()
    usage = split_usage(listed, trial_pids, neighbours, device.namespace)
    holders = trial_holders(trial_pids, listed, device.namespace)
    lists_error = device.lists_error if listed is None else None
    verdict = judge(used, baseline, usage, holders, tolerance_mb, device.last_error,
                    lists_error)
    return Poll(verdict, used, usage.foreign_mb, tuple(sorted(holders or ())))


def wait_until_clean(
    device: Device,
    baseline: Baseline | float | None,
    trial_pids: Iterable[int],
    config: WaitConfig,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    neighbour_pids: Callable[[], set[int]] | None = None,
    peak_mb: float | None = None,
) -> WaitResult:
    """Poll the device until it is proven clean (adaptive), or as ``config.mode`` says.

    Returns at once on a machine with no GPU. ``mode: fixed`` sleeps :func:`fixed_wait_s`
    first (the incident's fix; ``peak_mb`` is the trial's peak) and ``mode: none`` only reads
    once (W&B's agent); both are kept for the benchmarks that compare them.
    ``neighbour_pids`` gives the processes of other trials of the sweep on this device now:
    their memory is not this trial's residual (read at every poll: a neighbour may start
    while this trial is still being cleaned up).
    """
    if not isinstance(baseline, Baseline):
        baseline = Baseline(baseline)
    pids = set(trial_pids)
    start = clock()
    if config.mode == "fixed":  # the incident's fix sleeps whether or not there is a GPU
        sleep(fixed_wait_s(config, peak_mb))
    if not device.is_gpu:
        return WaitResult(clock() - start, True, None, None, ())
    falling_since: float | None = None
    last_used: float | None = None
    while True:
        neighbours = neighbour_pids() - pids if neighbour_pids else set()
        poll = read_verdict(device, baseline, pids, neighbours, config.tolerance_mb)
        verdict, used = poll.verdict, poll.used_mb
        elapsed = clock() - start
        now = clock()
        if used is None or last_used is None or used < last_used - SETTLE_MB:
            falling_since = now
        last_used = used
        settled = verdict.unattributable and now - (falling_since or now) >= SETTLE_S
        proven = verdict.clean is True and elapsed >= config.min_s
        if config.mode != "adaptive" or proven or settled or elapsed >= config.max_s:
            reason = verdict.reason
            if verdict.clean is not True and elapsed >= config.max_s and config.max_s > 0:
                reason = f"{reason} (after {config.max_s:g} s, isolation.wait.max_s)"
            return WaitResult(elapsed, verdict.clean, used, verdict.residual_mb, poll.holders,
                              reason, poll.foreign_mb)
        sleep(max(0.0, min(config.poll_s, config.max_s - elapsed)))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False
