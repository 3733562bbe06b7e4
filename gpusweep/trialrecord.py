"""A trial's record from what was observed: pure pieces, tested with plain data.

The outcome (status and reason) is decided in :func:`outcome`; the record's GPU, host and
cleanup parts are built from the monitor's peaks, the trial's own reports and the endings of
its tree. :class:`~gpusweep.trialrun.RunningTrial` gathers the inputs and assembles them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

from gpusweep import guards, hostmemory
from gpusweep.bootstrap._gpusweep_secrets import redact
from gpusweep.cleanup import EndResult, WaitResult
from gpusweep.events import TrialEvents
from gpusweep.gpu.device import DeviceInfo
from gpusweep.gpu.track import GpuSummary
from gpusweep.oom import oom_line
from gpusweep.process.monitor import Peaks
from gpusweep.records import CleanupRecord, GpuRecord, HostRecord
from gpusweep.status import StopReason, TrialStatus, classify


def outcome(returncode: int | None, stop_reason: StopReason | None, reason_text: str | None,
            *, events: TrialEvents, output_tail: str | None, oom_kills: int | None,
            peaks: Peaks, rss_limit_mb: float | None,
            machine_mb: float | None) -> tuple[TrialStatus, str | None, str | None]:
    """The trial's status, the record's reason and its CUDA OOM line (None: not an OOM).

    Only a failure we did not cause is looked at closer: a CUDA OOM (its error event or its
    output), the kernel's OOM killer in its cgroup, or a SIGKILL we did not send while host
    memory was nearly gone.
    """
    failed = returncode != 0 and stop_reason is None
    oom = oom_line(events.errors, output_tail) if failed else None
    cgroup_oom = failed and bool(oom_kills)
    killer = cgroup_oom or failed and guards.oom_killer_suspected(
        returncode, False, peaks.rss_mb, peaks.min_available_mb, machine_mb)
    status = classify(returncode, stop_reason, cuda_oom=oom is not None, oom_killer=killer,
                      preempting=events.preempting)
    reason = reason_text
    if cgroup_oom:
        reason = guards.cgroup_oom_reason(oom_kills or 0, rss_limit_mb)
    elif killer:
        reason = ("SIGKILL that gpusweep did not send, with host memory nearly exhausted: "
                  "the kernel's OOM killer")
    return status, reason, oom


def gpu_record(info: DeviceInfo, baseline_mb: float | None, peaks: Peaks, gpu: GpuSummary,
               events: TrialEvents, waited: WaitResult) -> GpuRecord:
    return GpuRecord(
        device=info.name,
        index=info.index,
        baseline_mb=rounded(baseline_mb),
        peak_used_mb=rounded(peaks.gpu_used_mb),
        peak_tree_mb=rounded(gpu.peak_tree_mb),
        torch_peak_allocated_mb=rounded(events.torch_peak_allocated_mb),
        torch_peak_reserved_mb=rounded(events.torch_peak_reserved_mb),
        residual_mb=rounded(waited.residual_mb),
        uuid=info.uuid,
        mig_index=info.mig_index,
        attribution=gpu.attribution,
        foreign_start_mb=rounded(gpu.foreign_start_mb),
        foreign_end_mb=rounded(gpu.foreign_end_mb),
        energy_j=rounded(gpu.energy_j),
        util_mean_pct=rounded(gpu.util_mean_pct),
        util_peak_pct=rounded(gpu.util_peak_pct),
    )


def host_record(peaks: Peaks, report_memory: list[Mapping[str, Any]],
                cgroup_peak_mb: float | None) -> HostRecord:
    return HostRecord(peak_rss_mb=rounded(host_peak_mb(peaks.rss_mb, report_memory)),
                      min_available_mb=rounded(peaks.min_available_mb),
                      peak_rss_trial_mb=rounded(host_peak_mb(peaks.rss_trial_mb, report_memory)),
                      cgroup_peak_mb=rounded(cgroup_peak_mb))


def cleanup_record(ends: list[EndResult], waited: WaitResult) -> CleanupRecord:
    clean, why = cleanup_verdict(waited, ends)
    return CleanupRecord(
        processes_killed=sum(e.processes_killed for e in ends),
        escapees_killed=sum(e.escapees_killed for e in ends),
        wait_s=round(waited.wait_s, 3),
        clean=clean,
        reason=why,
    )


def cleanup_verdict(waited: WaitResult, ends: list[EndResult]) -> tuple[bool | None, str | None]:
    """``cleanup.clean`` and its reason: a process that survived SIGKILL is dirty whatever
    the GPU says; otherwise the wait's verdict (None: not proven either way)."""
    leftover = sorted({pid for end in ends for pid in end.leftover})
    if leftover:
        return False, f"processes survived SIGKILL: {', '.join(map(str, leftover))}"
    return waited.clean, waited.reason


def host_peak_mb(sampled: float | None,
                 report_memory: Iterable[Mapping[str, Any]]) -> float | None:
    """The tree's sampled peak, or what the trial reported of its own RSS if that was
    higher (a trial shorter than the monitor's interval is sampled only at its start)."""
    reported = [m["rss_mb"] for m in report_memory if isinstance(m.get("rss_mb"), (int, float))]
    peaks = [v for v in [sampled, *reported] if v is not None]
    return max(peaks) if peaks else None


def fixed_wait_peak_mb(on_gpu: bool, events: TrialEvents, peaks: Peaks) -> float | None:
    """The trial's peak for ``mode: fixed``: torch's reserved peak (what its size rule was
    set on), else its processes' NVML peak; the host peak on a machine with no GPU."""
    if on_gpu:
        reserved = events.torch_peak_reserved_mb
        return reserved if reserved is not None else peaks.gpu_tree_mb
    return host_peak_mb(peaks.rss_mb, events.report_memory)


def best_metric(values: list[float], minimize: bool | None) -> float | None:
    """The best of the metric's values; None without values or without a sweep metric."""
    if not values or minimize is None:
        return None
    return (min if minimize else max)(values)


def output_tail(path: str, lines: int = 15) -> str | None:
    """The last lines of a trial's output.log (secrets masked), for records and messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return redact(error_tail(text, lines)) or None


def error_tail(text: str, lines: int) -> str:
    """The last ``lines`` lines of a trial's output that say something about it: wandb's
    footer (``wandb:`` lines: run history, summary, sync hint) and blank lines are dropped
    first, or they push the traceback out."""
    kept = [line for line in text.splitlines()
            if line.strip() and not line.startswith("wandb:")]
    return "\n".join(kept[-lines:])


@functools.cache
def machine_mb() -> float | None:
    return hostmemory.machine_memory_mb()


def rounded(value: float | None) -> float | None:
    """A record's figure: one decimal; None stays None (unknown)."""
    return None if value is None else round(value, 1)
