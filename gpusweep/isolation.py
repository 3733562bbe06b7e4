"""Our ``isolation:`` block: typed, validated dataclasses, one per concern.

Stripped from the sweep file before W&B's engine sees it (:mod:`gpusweep.config`); every key
is checked, so a typo is an error instead of a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gpusweep.typedconfig import ConfigError


def _positive(key: str, value: float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass(frozen=True)
class StopConfig:
    """How a trial's process tree is ended: SIGTERM to the group, then SIGKILL."""

    grace_s: float = 10.0

    def __post_init__(self) -> None:
        _positive("grace_s", self.grace_s, allow_zero=True)


@dataclass(frozen=True)
class WaitConfig:
    """The wait after each trial until the GPU is back to its baseline.

    ``mode: fixed`` sleeps ``fixed_s`` like the incident's fix (5 s; README, "Background") and
    ``mode: none`` does not wait at all, like W&B's agent; both exist only so the benchmarks
    can compare. ``fixed_large_s`` is the incident's proposed refinement (10 s when the trial's
    peak passed 1000 MB); null keeps the fix as it shipped, ``fixed_s`` whatever the trial
    used.
    """

    tolerance_mb: float = 256.0
    min_s: float = 0.0
    max_s: float = 60.0
    poll_s: float = 0.1
    mode: Literal["adaptive", "fixed", "none"] = "adaptive"
    fixed_s: float = 5.0
    fixed_large_s: float | None = None
    fixed_large_above_mb: float = 1000.0

    def __post_init__(self) -> None:
        _positive("tolerance_mb", self.tolerance_mb, allow_zero=True)
        _positive("min_s", self.min_s, allow_zero=True)
        _positive("max_s", self.max_s, allow_zero=True)
        _positive("poll_s", self.poll_s)
        _positive("fixed_s", self.fixed_s, allow_zero=True)
        _positive("fixed_large_s", self.fixed_large_s, allow_zero=True)
        _positive("fixed_large_above_mb", self.fixed_large_above_mb, allow_zero=True)
        if self.min_s > self.max_s:
            raise ConfigError("min_s", f"{self.min_s} is greater than max_s {self.max_s}")


@dataclass(frozen=True)
class MonitorConfig:
    """How often the monitor samples the trial's process tree."""

    hz: float = 10.0

    def __post_init__(self) -> None:
        _positive("hz", self.hz)


@dataclass(frozen=True)
class OomConfig:
    """CUDA OOM back-off: run the same params again with ``key`` times ``factor``."""

    retry: bool = False
    key: str = "batch_size"  # may be dotted (train.batch_size)
    factor: float = 0.5
    min: int = 1
    max_retries: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.factor < 1:
            raise ConfigError("factor", f"must be between 0 and 1, got {self.factor}")
        _positive("min", self.min)
        _positive("max_retries", self.max_retries, allow_zero=True)


@dataclass(frozen=True)
class LimitsConfig:
    """Host-memory guards that stop a trial before the kernel's OOM killer picks a victim."""

    rss_mb: float | None = None  # the trial tree's summed RSS
    min_available_mb: float = 512.0  # the machine's available memory

    def __post_init__(self) -> None:
        _positive("rss_mb", self.rss_mb)
        _positive("min_available_mb", self.min_available_mb, allow_zero=True)


@dataclass(frozen=True)
class LeakConfig:
    """Slope of memory per report step above which a leak is suspected."""

    warmup_steps: int = 2
    min_points: int = 4
    rss_mb_per_step: float = 1.0
    gpu_mb_per_step: float = 1.0

    def __post_init__(self) -> None:
        _positive("warmup_steps", self.warmup_steps, allow_zero=True)
        if self.min_points < 2:
            raise ConfigError("min_points", f"must be at least 2, got {self.min_points}")
        _positive("rss_mb_per_step", self.rss_mb_per_step)
        _positive("gpu_mb_per_step", self.gpu_mb_per_step)


@dataclass(frozen=True)
class FlappingConfig:
    """Stop the sweep when its first trials all fail fast (a broken environment)."""

    enabled: bool = True
    max_failures: int = 5
    window_s: float = 60.0

    def __post_init__(self) -> None:
        _positive("max_failures", self.max_failures)
        _positive("window_s", self.window_s)


@dataclass(frozen=True)
class FitConfig:
    """The memory model: predict each trial's peak from its params, and act on it."""

    features: list[str] = field(default_factory=list)  # numeric params, dotted names
    policy: Literal["off", "shrink", "skip"] = "off"
    margin: float = 0.1  # keep this fraction of the prediction in reserve
    key: str | None = None  # the param shrink halves (default: isolation.oom.key)
    min: int = 1  # never shrink it below this
    min_trials: int = 3  # ended trials needed before a prediction is acted on
    budget_mb: float | None = None  # memory trials may use per device (default: its free)

    def __post_init__(self) -> None:
        _positive("margin", self.margin, allow_zero=True)
        _positive("budget_mb", self.budget_mb)
        _positive("min", self.min)
        _positive("min_trials", self.min_trials)
        if self.policy != "off" and not self.features:
            raise ConfigError("features", f"policy {self.policy} needs the params to fit on")


# No report, no CPU and no GPU activity in the whole tree for this long: stalled. Half an hour
# is longer than any silence of a trial that works (an epoch computes, a download or a data
# build uses CPU) and short beside the hours a dead trial would otherwise hold its slot.
STALL_S_DEFAULT = 1800.0


@dataclass(frozen=True)
class IsolationConfig:
    """Our ``isolation:`` block; stripped before W&B's engine sees the sweep."""

    timeout_s: float | None = None
    # null or off turns the stall rule off (YAML 1.1 reads a bare off as false)
    stall_s: float | Literal["off"] | None = STALL_S_DEFAULT
    stop: StopConfig = field(default_factory=StopConfig)
    wait: WaitConfig = field(default_factory=WaitConfig)
    on_dirty: Literal["continue", "abort"] = "continue"
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    oom: OomConfig = field(default_factory=OomConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    leak: LeakConfig = field(default_factory=LeakConfig)
    flapping: FlappingConfig = field(default_factory=FlappingConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    pack: bool = False  # several slots on one device: admit a trial only when it fits
    # trials at once: N, or auto (as many per device as memory, utilization and the host
    # allow, up to max_slots; gpusweep.autoslots); null: one per device. --slots wins.
    slots: int | Literal["auto"] | None = None
    max_slots: int = 8  # auto: never more trials than this per device
    max_utilization_pct: float = 85.0  # auto: add a trial only while the GPU is under this
    utilization_window_s: float = 5.0  # auto: over this window, the newest trial this old
    # auto: a cgroup v2 per trial where the machine delegates one, else the subreaper alone
    containment: Literal["auto", "subreaper"] = "auto"

    def __post_init__(self) -> None:
        _positive("timeout_s", self.timeout_s)
        if self.stall_s == "off":  # one spelling for the rest of the code: None
            object.__setattr__(self, "stall_s", None)
        _positive("stall_s", self.stall_s)
        if isinstance(self.slots, int) and self.slots < 1:
            raise ConfigError("slots", f"must be at least 1 or auto, got {self.slots}")
        _positive("max_slots", self.max_slots)
        if not 0 < self.max_utilization_pct <= 100:
            raise ConfigError("max_utilization_pct", "must be a percentage in (0, 100], got "
                              f"{self.max_utilization_pct}")
        _positive("utilization_window_s", self.utilization_window_s)
        if self.pack and not self.fit.features:
            raise ConfigError("pack", "needs isolation.fit.features: packing admits a trial "
                              "by its predicted peak")
