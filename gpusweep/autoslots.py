"""``--slots auto``: whether one more trial may start beside the ones running on a device.

A small model leaves most of a big GPU idle, and the right number of trials side by side is
not known before the sweep runs: it depends on each trial's memory and compute. So the
orchestrator measures. Per device it starts one trial; it adds one more beside the running
ones only while all of these hold, each decided here from numbers, without processes:

* memory: the next trial's predicted peak (the memory model's, else the largest peak a
  trial of this sweep reached on the device) fits in what the device has free, less what
  the running trials are still predicted to grow by, with ``fit.margin`` to spare (the
  admission of :mod:`gpusweep.admission` then decides for the trial's own params);
* compute: the device's utilization, averaged over the last ``window_s``, is under
  ``max_utilization_pct`` (the newest trial must have run that long: a trial that has not
  started computing yet says nothing);
* the host: its available memory keeps ``limits.min_available_mb`` after one more trial's
  RSS, and the CPU the trials use, plus one more trial's share, stays within the cores;
* never more than ``max_slots``; after a CUDA OOM never again as many on that device as ran
  there when it happened, and after a host OOM never again as many on the host, every
  device's trials together (host memory is shared: backing off one device would let the
  others fill it again).

Without a GPU only the host's cores and memory bound it. A reading that could not be taken
(None) never lets the count grow: unknown is not room to spare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from gpusweep import memfit


class Verdict(Enum):
    ADD = "add"  # one more trial may start beside the running ones
    HOLD = "hold"  # not now: the reason says which bound holds


@dataclass(frozen=True)
class DeviceReading:
    """What the orchestrator measured on one device, now."""

    running: int  # trials running on it (not being cleaned up)
    is_gpu: bool
    settled: bool  # the newest trial has run for the utilization window
    free_mb: float | None = None  # free memory, less the running trials' predicted growth
    next_peak_mb: float | None = None  # the next trial's predicted peak on the device
    utilization_pct: float | None = None  # mean over the window; None: not measured


@dataclass(frozen=True)
class HostReading:
    """What the orchestrator measured on the host, now (every device's trials together)."""

    available_mb: float | None  # the machine's available memory
    next_rss_mb: float | None  # one more trial's RSS (the largest a trial reached so far)
    cores: int  # cores this process may run on
    trials_cores: float | None  # cores the running trials use (mean over the window)
    per_trial_cores: float | None  # one trial's share of them (their mean)
    running: int = 0  # trials running on the host, on every device


@dataclass(frozen=True)
class Limits:
    max_slots: int = 8
    max_utilization_pct: float = 85.0
    margin: float = 0.1  # fit.margin
    min_available_mb: float = 512.0  # limits.min_available_mb


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str


def memory_allows(free_mb: float | None, next_peak_mb: float | None,
                  margin: float) -> str | None:
    """None when the next trial fits with ``margin`` to spare; else why not."""
    if free_mb is None or next_peak_mb is None:
        return "device memory unknown"  # memfit.fits would call it a fit: not room to grow
    if not memfit.fits(next_peak_mb, margin, free_mb):  # the admission's own test
        return f"memory: next trial {next_peak_mb:.0f} MB + {margin:.0%} > {free_mb:.0f} MB free"
    return None


def host_allows(host: HostReading, min_available_mb: float) -> str | None:
    """None when the host has the memory and the cores for one more trial; else why not."""
    if host.available_mb is None or host.next_rss_mb is None:
        return "host memory unknown"
    if host.available_mb - host.next_rss_mb < min_available_mb:
        return (f"host memory: {host.available_mb:.0f} MB available, next trial "
                f"{host.next_rss_mb:.0f} MB, {min_available_mb:.0f} MB kept")
    if host.trials_cores is None or host.per_trial_cores is None:
        return "trials' CPU use unknown"
    if host.trials_cores + host.per_trial_cores > host.cores:
        return (f"cores: trials use {host.trials_cores:.1f} of {host.cores}, one more "
                f"{host.per_trial_cores:.1f}")
    return None


def decide(device: DeviceReading, host: HostReading, limits: Limits,
           ceiling: int | None = None, host_ceiling: int | None = None) -> Decision:
    """May one more trial start on this device now? ``ceiling``: the device's bound after a
    CUDA OOM; ``host_ceiling``: the host's (all devices together) after a host OOM.

    The first trial on a device always may (the admission still has its say on it), unless
    the host is at its ceiling: that is at least one, so the sweep goes on elsewhere.
    """
    if host_ceiling is not None and host.running >= host_ceiling:
        return Decision(Verdict.HOLD, f"{host.running} running on the host, backed off after "
                                      f"a host OOM {host_ceiling}")
    if device.running == 0:
        return Decision(Verdict.ADD, "first trial on the device")
    bound = min(limits.max_slots, ceiling or limits.max_slots)
    if device.running >= bound:
        why = "max_slots" if bound == limits.max_slots else "backed off after an OOM"
        return Decision(Verdict.HOLD, f"{device.running} running, {why} {bound}")
    if not device.settled:
        return Decision(Verdict.HOLD, "newest trial not settled yet")
    checks = [host_allows(host, limits.min_available_mb)]
    if device.is_gpu:
        checks.insert(0, memory_allows(device.free_mb, device.next_peak_mb, limits.margin))
        if device.utilization_pct is None:
            checks.append("utilization unknown")
        elif device.utilization_pct >= limits.max_utilization_pct:
            checks.append(f"utilization {device.utilization_pct:.0f} % >= "
                          f"{limits.max_utilization_pct:g} %")
    for why in checks:
        if why is not None:
            return Decision(Verdict.HOLD, why)
    return Decision(Verdict.ADD, f"{device.running} running, room for one more")


def after_oom(running_at_oom: int) -> int:
    """The ceiling after an OOM: one fewer than ran when it happened, at least one."""
    return max(1, running_at_oom - 1)


def window_mean(samples: Sequence[tuple[float, float | None]], now: float,
                window_s: float) -> float | None:
    """Mean of the ``(t, value)`` samples of the last ``window_s``; None when the samples do
    not cover the window (too young) or one in it is unknown."""
    inside = [value for t, value in samples if t >= now - window_s]
    covered = any(t <= now - window_s * 0.9 for t, _ in samples)
    if not inside or not covered or any(value is None for value in inside):
        return None
    return sum(inside) / len(inside)  # type: ignore[arg-type]


def cpu_rate(samples: Sequence[tuple[float, float]], now: float,
             window_s: float) -> float | None:
    """Cores used over the last ``window_s`` from cumulative ``(t, cpu_s)`` readings."""
    old = [(t, c) for t, c in samples if t <= now - window_s * 0.9]
    if not old or not samples:
        return None
    t0, c0 = old[-1]
    t1, c1 = samples[-1]
    return None if t1 <= t0 else max(0.0, (c1 - c0) / (t1 - t0))
