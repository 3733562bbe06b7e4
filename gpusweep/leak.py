"""Leak detection: the slope of memory against report steps, past the warm-up.

A typical training-loop leak (a tensor or list kept alive per step) grows RSS by MiBs per step;
a least-squares slope separates that from allocator noise of hundredths of a MiB. Tensors do
not show in tracemalloc, so the torch side uses the trial's own ``memory_allocated`` at each
report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpusweep.isolation import LeakConfig


@dataclass(frozen=True)
class LeakVerdict:
    rss_mb_per_step: float | None
    gpu_mb_per_step: float | None
    suspected: bool


def slope(values: Sequence[float | None], warmup: int, min_points: int) -> float | None:
    """MB per step of ``values`` (one per report) after ``warmup`` reports, or None."""
    points = [(i, v) for i, v in enumerate(values) if i >= warmup and v is not None]
    if len(points) < min_points:
        return None
    steps, mb = zip(*points, strict=True)
    return float(np.polyfit(np.asarray(steps, float), np.asarray(mb, float), 1)[0])


def leak_verdict(
    rss_mb: Sequence[float | None], gpu_mb: Sequence[float | None], config: LeakConfig
) -> LeakVerdict:
    """Slopes of the trial's RSS and torch allocated memory, and whether either leaks."""
    rss = slope(rss_mb, config.warmup_steps, config.min_points)
    gpu = slope(gpu_mb, config.warmup_steps, config.min_points)
    suspected = (rss is not None and rss > config.rss_mb_per_step) or \
        (gpu is not None and gpu > config.gpu_mb_per_step)
    return LeakVerdict(_round(rss), _round(gpu), suspected)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
