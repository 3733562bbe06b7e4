"""The start-failure guard: a broken environment must not burn through the whole sweep.

Like W&B's agent, which gives up when its first runs fail fast, or fail in a row: here, when
the sweep has no successful trial yet and either ``max_failures`` trials failed within
``window_s`` of its start, or its first ``max_failures`` trials all failed, however slowly
(a trial that takes 15 s to import torch and crash must not burn through the sweep either).
"""

from __future__ import annotations

from collections.abc import Sequence

from gpusweep.isolation import FlappingConfig
from gpusweep.status import TrialStatus

FAILURES = frozenset({TrialStatus.FAILED})
SUCCESSES = frozenset({TrialStatus.FINISHED, TrialStatus.STOPPED_EARLY, TrialStatus.STOPPED})


def is_flapping(
    ended: Sequence[tuple[TrialStatus, float]], config: FlappingConfig
) -> bool:
    """``ended``: (status, seconds since the sweep started) of the trials ended so far."""
    if not config.enabled or any(status in SUCCESSES for status, _ in ended):
        return False
    fast = [t for status, t in ended if status in FAILURES and t <= config.window_s]
    all_failed = all(status in FAILURES for status, _ in ended)
    return len(fast) >= config.max_failures or (all_failed and len(ended) >= config.max_failures)
