"""What a sweep records: one :class:`TrialRecord` per trial (its memory.yaml) and the
:class:`SweepHeader` of sweep.yaml, with the enums their strings come from.

Records are read-only dataclasses; :mod:`gpusweep.records.writer` writes them and
:mod:`gpusweep.records.reader` reads them back. GPU fields are None (null) on a machine
without a GPU: never invented.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from gpusweep.status import TrialStatus

if TYPE_CHECKING:
    from gpusweep.config import Metric


class SweepState(str, Enum):
    """How far the sweep got; the string values are what sweep.yaml says."""

    RUNNING = "running"
    FINISHED = "finished"  # the source had nothing more to run
    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM or SIGHUP: the trials were stopped cleanly
    ABORTED = "aborted"  # a guard stopped it (GPU dirty, flapping, records unwritable)
    CRASHED = "crashed"  # a bug of ours; the trials were still ended and recorded


class SummaryState(str, Enum):
    """How far the W&B summary subprocess got (summary-run.yaml's ``state``)."""

    WRITING = "writing"
    WRITTEN = "written"
    FAILED = "failed"  # with the reason as ``error``

    @classmethod
    def parse(cls, value: Any) -> SummaryState | None:
        """The state a summary-run.yaml names; None for none (or an unknown one)."""
        try:
            return cls(value)
        except ValueError:
            return None


class TrialOrigin(str, Enum):
    """Where a trial's params came from (its journal start line); None: the engine."""

    RERUN = "rerun"  # a trial the orchestrator's death (or a preemption) cut short
    OOM_RETRY = "oom-retry"  # an OOM trial's params with a smaller batch
    RUN = "run"  # the W&B server's ``run`` command
    RESUME = "resume"  # the W&B server's ``resume`` command

    @classmethod
    def parse(cls, value: Any) -> TrialOrigin | None:
        """The origin a journal line names; None for the engine's own (or an unknown)."""
        try:
            return cls(value)
        except ValueError:
            return None


@dataclass(frozen=True)
class MetricSummary:
    name: str | None = None
    last: float | None = None
    best: float | None = None
    reports: int = 0


@dataclass(frozen=True)
class GpuRecord:
    device: str = "cpu"
    index: int | None = None  # NVML index (PCI bus order); None without a GPU
    baseline_mb: float | None = None
    peak_used_mb: float | None = None
    peak_tree_mb: float | None = None  # the trial's processes; null where not attributable
    torch_peak_allocated_mb: float | None = None
    torch_peak_reserved_mb: float | None = None
    residual_mb: float | None = None
    uuid: str | None = None  # what the trial got in CUDA_VISIBLE_DEVICES (GPU- or MIG-)
    mig_index: int | None = None  # the MIG instance on GPU ``index``
    attribution: str | None = None  # pid | device_files | none: how its processes were found
    foreign_start_mb: float | None = None  # processes outside the sweep, at the trial's start
    foreign_end_mb: float | None = None  # ... and at the end of the wait
    energy_j: float | None = None  # the device's energy counter over the trial
    util_mean_pct: float | None = None  # NVML utilization samples while it ran
    util_peak_pct: float | None = None

    @property
    def label(self) -> str:
        """``0: NVIDIA T4``, ``1/0: NVIDIA A100 MIG 1g.10gb`` (MIG instance 0 of GPU 1)."""
        if self.index is None:
            return self.device
        where = str(self.index) if self.mig_index is None else f"{self.index}/{self.mig_index}"
        return f"{where}: {self.device}"


@dataclass(frozen=True)
class HostRecord:
    peak_rss_mb: float | None = None  # summed RSS of the trial's whole process tree
    min_available_mb: float | None = None  # the machine's lowest available memory meanwhile
    peak_rss_trial_mb: float | None = None  # the same without wandb's service processes
    cgroup_peak_mb: float | None = None  # memory.peak of the trial's cgroup (shared pages once)


@dataclass(frozen=True)
class LeakRecord:
    """Slopes of the trial's own memory per report step, past the warm-up."""

    rss_mb_per_step: float | None = None
    gpu_mb_per_step: float | None = None
    suspected: bool = False


@dataclass(frozen=True)
class CleanupRecord:
    processes_killed: int = 0
    escapees_killed: int = 0
    wait_s: float = 0.0
    clean: bool | None = None  # None: not proven back either way (also: never measured)
    reason: str | None = None  # why it is not clean, or unknown


@dataclass(frozen=True)
class Timeline:
    """Unix times (seconds) of a trial's phases, for the sweep's memory timeline."""

    start: float | None = None  # process started
    exit: float | None = None  # main process exited (or was stopped)
    wait_start: float | None = None  # tree ended, the GPU wait began
    wait_end: float | None = None  # the GPU was clean (or max_s passed)


@dataclass(frozen=True)
class TrialRecord:
    """Everything known about one trial once it has ended (memory.yaml)."""

    run: str
    params: dict[str, Any]
    status: TrialStatus
    exit_code: int | None
    signal: str | None
    started: str
    ended: str
    duration_s: float
    retry_of: str | None = None  # the OOM trial whose params this one retried, smaller
    slot: int = 0  # which of the sweep's concurrent slots ran it
    beside: int | None = None  # the most other trials running at once beside it; null: unknown
    reason: str | None = None  # why we stopped it, in words (limit passed, stall, ...)
    oom_line: str | None = None  # the line that showed a CUDA OOM
    predicted_peak_mb: float | None = None  # the memory model's prediction at launch
    prediction_error: float | None = None  # (predicted - actual) / actual, once it ended
    fit_note: str | None = None  # what the memory model did (shrunk the batch, skipped)
    proposed: dict[str, Any] | None = None  # the engine's params, when the model changed them
    metric: MetricSummary = field(default_factory=MetricSummary)
    gpu: GpuRecord = field(default_factory=GpuRecord)
    host: HostRecord = field(default_factory=HostRecord)
    cleanup: CleanupRecord = field(default_factory=CleanupRecord)
    containment: str | None = None  # subreaper | cgroup: what held the trial's processes
    containment_note: str | None = None  # why cgroup (or its memory files) was not used
    leak: LeakRecord = field(default_factory=LeakRecord)
    command: list[str] = field(default_factory=list)
    error: str | None = None  # last lines of output.log when the trial did not finish
    timeline: Timeline = field(default_factory=Timeline)
    wandb_run: dict[str, Any] | None = None  # {id, dir}: where the trial's W&B run was written

    def row(self) -> dict[str, Any]:
        """The trial's one-line summary in sweep.yaml."""
        row = {
            "run": self.run,
            "params": self.params,
            "status": self.status.value,
            "metric": self.metric.best,
            "duration_s": _round(self.duration_s),
            "gpu_peak_mb": _round(self.gpu.peak_tree_mb),
            "host_peak_mb": _round(self.host.peak_rss_mb),
            "wait_s": _round(self.cleanup.wait_s),
            "slot": self.slot,
            "beside": self.beside,
            "device": self.gpu.label,
        }
        if self.gpu.index is not None:  # a GPU: its energy and utilization
            row.update(energy_j=_round(self.gpu.energy_j, 1),
                       util_mean_pct=_round(self.gpu.util_mean_pct, 1),
                       util_peak_pct=_round(self.gpu.util_peak_pct, 1),
                       clean=self.cleanup.clean)
        if self.retry_of:
            row["retry_of"] = self.retry_of
        return row

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        """Rebuild a record from its memory.yaml / journal form (for --resume)."""
        values = known_fields(cls, data)
        values["status"] = TrialStatus(values["status"])
        for name, sub in (("metric", MetricSummary), ("gpu", GpuRecord),
                          ("host", HostRecord), ("cleanup", CleanupRecord),
                          ("leak", LeakRecord), ("timeline", Timeline)):
            if isinstance(values.get(name), dict):
                values[name] = sub(**values[name])
        return cls(**values)


@dataclass(frozen=True)
class SweepHeader:
    id: str
    name: str | None
    config: dict[str, Any]
    method: str
    metric: dict[str, Any] | None
    started: str
    ended: str | None = None
    state: SweepState = SweepState.RUNNING
    wall_s: float | None = None  # the orchestrator's loop, first trial's launch to the end
    config_file: str | None = None  # tools/sweep.py --config_file, reused by --resume
    project: str | None = None  # the W&B project and entity of the sweep's runs (for sync)
    entity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepHeader:
        """sweep.yaml's ``sweep:`` block; keys it does not know are ignored."""
        values = known_fields(cls, data)
        values["id"] = str(values.get("id") or "")
        values.setdefault("name", None)
        values["config"] = values.get("config") if isinstance(values.get("config"), dict) \
            else {}
        values["method"] = str(values.get("method") or "")
        values.setdefault("metric", None)
        values["started"] = str(values.get("started") or "")
        values["state"] = SweepState(values.get("state") or SweepState.RUNNING.value)
        return cls(**values)


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The items of ``data`` that are fields of the dataclass ``cls`` (newer keys ignored)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in known}


def best_trial(records: list[TrialRecord], metric: Metric | None) -> TrialRecord | None:
    """The trial with the best metric value (W&B's extremum over its history)."""
    if metric is None:
        return None
    best = None
    for record in records:
        value = record.metric.best
        if value is None or not math.isfinite(value):
            continue
        if best is None or metric.better(value, best.metric.best):
            best = record
    return best


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def plain(value: Any) -> Any:
    """Plain YAML-safe data: enums to values, tuples to lists, NaN/inf to null."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
