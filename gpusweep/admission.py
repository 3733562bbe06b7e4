"""Before a launch: does the trial's predicted peak fit in what its device has free?

Peak memory is predicted, not guessed: a power law fitted on the sweep's ended
trials (:mod:`gpusweep.memfit`) predicts the next trial's peak; the policy then runs it,
shrinks its batch until it fits, or skips it; with several slots on one device (``pack``) a
trial that does not fit beside its running neighbours waits for one of them to end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from gpusweep import memfit
from gpusweep import params as params_
from gpusweep.gpu.device import Device
from gpusweep.hostmemory import available_mb
from gpusweep.isolation import FitConfig, IsolationConfig
from gpusweep.records import TrialRecord


class Action(Enum):
    RUN = "run"  # start it (perhaps shrunk)
    WAIT = "wait"  # pack: not beside its running neighbours; let one of them end first
    SKIP = "skip"  # predicted not to fit even alone: recorded, never started


@dataclass(frozen=True)
class Admission:
    action: Action
    params: dict[str, Any]
    predicted_mb: float | None
    free_mb: float | None
    reason: str | None = None


def free_for(total_free_mb: float | None, neighbours_growth_mb: Sequence[float]) -> float | None:
    """Free memory for a new trial: what the device has free now, less what its running
    neighbours are still predicted to grow by."""
    if total_free_mb is None:
        return None
    return total_free_mb - sum(max(0.0, g) for g in neighbours_growth_mb)


def decide(
    params: Mapping[str, Any],
    model: memfit.MemoryModel | None,
    free_mb: float | None,
    config: FitConfig,
    shrink_key: str,
    has_neighbours: bool,
    pack: bool,
) -> Admission:
    """Run, wait or skip this trial, and with which params (``shrink`` may change them)."""
    trusted = model is not None and model.n >= config.min_trials
    predicted = model.predict(params) if model is not None else None
    if not trusted or memfit.fits(predicted, config.margin, free_mb):
        return Admission(Action.RUN, dict(params), predicted, free_mb)
    why = (f"predicted peak {predicted:.0f} MB + {config.margin:.0%} margin > "
           f"{free_mb:.0f} MB free")
    if pack and has_neighbours:
        return Admission(Action.WAIT, dict(params), predicted, free_mb, why)
    if config.policy == "shrink":
        smaller = memfit.shrink_to_fit(params, shrink_key, model.predict, free_mb,
                                       config.margin, config.min)
        if smaller is not None:
            return Admission(Action.RUN, smaller, model.predict(smaller), free_mb,
                             f"{why}: {shrink_key} shrunk to "
                             f"{params_.number(smaller, shrink_key):g}")
        return Admission(Action.SKIP, dict(params), predicted, free_mb,
                         f"{why}, even with {shrink_key} at {config.min}")
    if config.policy == "skip":
        return Admission(Action.SKIP, dict(params), predicted, free_mb, why)
    return Admission(Action.RUN, dict(params), predicted, free_mb, why)


def admit(params: Mapping[str, Any], isolation: IsolationConfig, records: Sequence[TrialRecord],
          device: Device, neighbours: Sequence[Any], pack: bool | None = None) -> Admission:
    """Fit the model on the ended trials and decide for a trial about to start on ``device``,
    beside the ``neighbours`` (running trials) already there. ``pack`` (default
    ``isolation.pack``; ``--slots auto`` always packs) makes a trial that does not fit beside
    them wait."""
    fit = isolation.fit
    if not fit.features:
        return Admission(Action.RUN, dict(params), None, None)
    model = memfit.fit_records(records, fit.features)
    gpu = device.is_gpu and (model is None or model.source == "gpu")
    growth, in_use = [], 0.0
    for trial in neighbours:
        peaks = trial.monitor.peaks if trial.monitor else None
        host = peaks and (peaks.rss_trial_mb if peaks.rss_trial_mb is not None else peaks.rss_mb)
        now = ((peaks.gpu_tree_mb if gpu else host) if peaks else None) or 0.0
        in_use += now
        if trial.predicted_peak_mb is not None:
            growth.append(trial.predicted_peak_mb - now)
    if fit.budget_mb is not None:
        free: float | None = fit.budget_mb - in_use
    elif gpu:
        free = device.free_mb()  # memory info v2: total - used would count reserved memory
    else:
        free = available_mb()
    key = fit.key or isolation.oom.key
    return decide(params, model, free_for(free, growth), fit, key, bool(neighbours),
                  isolation.pack if pack is None else pack)


def with_prediction_error(record: TrialRecord) -> TrialRecord:
    """The record with the memory model's error, now that the actual peak is known."""
    if record.predicted_peak_mb is None:
        return record
    source = "gpu" if record.gpu.peak_tree_mb is not None else "host"
    error = memfit.relative_error(record.predicted_peak_mb, memfit.peak_of(record, source))
    if error is None:
        return record
    return dataclasses.replace(record, prediction_error=round(error, 4))
