"""Why the W&B server stopped a run: its early termination, or something else.

The server's ``stop`` command carries only the run id. It relays Hyperband's decisions and
also stops that a person gave (the run's Stop button, ``wandb sweep --cancel``). What it does
tell us decides: W&B's Hyperband (the ``sweeps`` engine, ``hyperband_stopping.py``) stops a
run only when the sweep has ``early_terminate: {type: hyperband}`` and the run has reported
the metric at least as often as the smallest band (``min_iter``, or ``max_iter / eta**s``).
A stop that arrives before that cannot be Hyperband's: it is ``stopped``. A person's stop
of a run past its first band still looks like Hyperband's and is recorded ``stopped_early``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpusweep.status import StopReason

DEFAULT_ETA = 3  # the sweeps engine's default


def smallest_band(early_terminate: Mapping[str, Any] | None) -> int | None:
    """The first Hyperband band (metric reports a run needs before it can be stopped), or
    None when the sweep has no Hyperband (or a form the engine would reject)."""
    if not early_terminate or early_terminate.get("type") != "hyperband":
        return None
    eta = early_terminate.get("eta", DEFAULT_ETA)
    if not isinstance(eta, (int, float)) or eta <= 1:
        return None
    if "max_iter" in early_terminate:
        band, bands = float(early_terminate["max_iter"]), []
        for _ in range(int(early_terminate.get("s", 0))):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        return min(bands) if bands else None
    if "min_iter" in early_terminate:
        return int(early_terminate["min_iter"])
    return None


def server_stop_reason(early_terminate: Mapping[str, Any] | None,
                       metric_reports: int) -> StopReason:
    """HYPERBAND when the sweep's early termination could have stopped a run with this many
    reports of the metric, else SERVER (a stop for another reason)."""
    band = smallest_band(early_terminate)
    if band is not None and metric_reports >= band:
        return StopReason.HYPERBAND
    return StopReason.SERVER
