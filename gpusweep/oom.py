"""CUDA out-of-memory: telling it from other failures, and the batch-size back-off.

The trial API reports the exception type before the trial dies (the reliable way); for
scripts that do not use it, the output is searched for the messages PyTorch and CUDA print.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from gpusweep import params as params_
from gpusweep.isolation import OomConfig
from gpusweep.records import TrialRecord

OOM_TYPES = frozenset({"OutOfMemoryError"})
# What PyTorch raises when a device allocation fails: its caching allocator's "CUDA out of
# memory. Tried to allocate ..." (HIP and XPU builds name their device), a failed CUDA
# runtime call's "CUDA error: out of memory", cuBLAS failing to allocate its workspace. Not
# CUDNN_STATUS_NOT_SUPPORTED: it is often an unsupported shape, and a retry would not help.
OOM_PATTERN = re.compile(
    r"(CUDA|HIP|XPU) out of memory|CUDA error: out of memory|OutOfMemoryError"
    r"|CUBLAS_STATUS_ALLOC_FAILED"
)


def oom_line(error_events: Iterable[dict[str, Any]], output: str | None) -> str | None:
    """The line that shows the trial ran out of GPU memory, or None if it did not."""
    for event in error_events:
        if event.get("type") in OOM_TYPES or OOM_PATTERN.search(str(event.get("message"))):
            return f"{event.get('type')}: {event.get('message', '')}".splitlines()[0][:500]
    for line in reversed((output or "").splitlines()):
        if OOM_PATTERN.search(line):
            return line.strip()[:500]
    return None


def backoff_params(params: dict[str, Any], config: OomConfig) -> dict[str, Any] | None:
    """The params of the retry after an OOM: ``key`` times ``factor``, rounded, >= ``min``.

    None when there is nothing smaller to try (the key is missing, not a number, or already
    at its minimum).
    """
    current = params_.number(params, config.key)
    if current is None:
        return None
    smaller = max(config.min, round(current * config.factor))
    if smaller >= current:
        return None
    return params_.replace(params, config.key, smaller)


def retry_depth(record: TrialRecord, records: list[TrialRecord]) -> int:
    """How many OOM retries led to ``record`` (its chain of ``retry_of`` links)."""
    by_run = {r.run: r for r in records}
    depth, current = 0, record
    while current.retry_of and current.retry_of in by_run and depth <= len(records):
        depth, current = depth + 1, by_run[current.retry_of]
    return depth
