"""The memory model: predict a trial's peak memory from its params, before it runs.

A sweep cannot keep a trial that will not fit off a GPU unless it knows how much memory the
trial will take (README, "Background: the incident"). Memory of a training run is close to a
product of powers of its size params (activations ~ batch x hidden x layers x window), so the
model is a power law fitted by least squares on logs::

    log peak_mb = b0 + sum_i b_i * log x_i        i.e.   peak_mb = e^b0 * prod x_i^b_i

Each exponent reads directly ("peak grows like batch_size^0.98"). The fit is ridge-regularised
on the exponents, so with fewer trials than features it picks the smallest exponents that
explain the data instead of blowing up, and with a single trial it is a constant.

Everything here is pure: plain records in, numbers out, numpy only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpusweep import params as params_
from gpusweep.records import TrialRecord
from gpusweep.status import TrialStatus

# Statuses whose peak is a real peak. A failed trial's peak is where it died (an OOM's peak
# is a lower bound of what it needed); a killed one was interrupted at an arbitrary point.
FIT_STATUSES = frozenset({TrialStatus.FINISHED, TrialStatus.STOPPED_EARLY, TrialStatus.TIMEOUT})
DEFAULT_RIDGE = 1e-3
_FLAT = 1e-9  # a feature whose log varies less than this is not varied at all
MIN_FIT_TRIALS = 3  # fewer usable trials than this and predicted vs actual means nothing


@dataclass(frozen=True)
class Observation:
    """One ended trial as the fit sees it: its params and its peak memory in MB."""

    run: str
    params: Mapping[str, Any]
    peak_mb: float


@dataclass(frozen=True)
class MemoryModel:
    """A fitted power law over a base:
    ``peak_mb = base_mb + exp(intercept) * prod(params[f] ** exponent)``.

    The base is what every trial holds whatever its size (the CUDA context, the interpreter,
    the weights of a fixed model): without it the exponents come out too small and a model
    fitted on small trials under-predicts the big ones, exactly the ones that matter.
    """

    features: tuple[str, ...]  # the varied features the exponents belong to
    exponents: tuple[float, ...]
    intercept: float  # log MB
    n: int  # trials fitted on
    source: str  # "gpu" or "host": which peak was fitted
    fixed: tuple[tuple[str, float], ...] = ()  # declared but not varied: in the constant
    base_mb: float = 0.0

    def predict(self, params: Mapping[str, Any]) -> float | None:
        """Predicted peak in MB, or None when a feature is missing or not positive."""
        total = self.intercept
        for name, exponent in zip(self.features, self.exponents, strict=True):
            value = params_.number(params, name)
            if value is None or value <= 0:
                return None
            total += exponent * math.log(value)
        return self.base_mb + math.exp(total)

    def describe(self) -> str:
        """The model as one readable line, e.g. ``peak GPU MB ~ 1.2 x batch^0.98 x hidden^1``."""
        terms = [f"{math.exp(self.intercept):.4g}"]
        terms += [f"{name}^{exponent:.2f}" for name, exponent
                  in zip(self.features, self.exponents, strict=True)]
        base = f"{self.base_mb:.0f} + " if self.base_mb > 0 else ""
        text = f"peak {self.source} MB ~ {base}" + " x ".join(terms)
        text += f"  (fit on {self.n} trial{'s' if self.n != 1 else ''})"
        if self.fixed:
            held = ", ".join(f"{name}={value:g}" for name, value in self.fixed)
            text += f"; not varied, in the constant: {held}"
        return text


def peak_of(record: TrialRecord, source: str) -> float | None:
    """The peak the model fits: the trial's own GPU memory, or the host RSS of its tree
    without wandb's service (whose RSS swings with what it buffers, not with the trial's size).

    For the GPU, the tree's own NVML usage (CUDA context included, which is what a device's
    free memory must hold) comes first, then what torch reserved, then the device's rise
    over its baseline.
    """
    if source == "host":
        host = record.host
        return _positive(host.peak_rss_trial_mb if host.peak_rss_trial_mb is not None
                         else host.peak_rss_mb)
    gpu = record.gpu
    for value in (gpu.peak_tree_mb, gpu.torch_peak_reserved_mb):
        if _positive(value) is not None:
            return float(value)
    if gpu.peak_used_mb is not None and gpu.baseline_mb is not None:
        return _positive(gpu.peak_used_mb - gpu.baseline_mb)
    return None


def _positive(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def choose_source(records: Iterable[TrialRecord]) -> str:
    """``gpu`` when any usable trial has a GPU peak, else ``host``."""
    usable = [r for r in records if r.status in FIT_STATUSES]
    return "gpu" if any(peak_of(r, "gpu") is not None for r in usable) else "host"


def observations(records: Iterable[TrialRecord], source: str | None = None
                 ) -> tuple[list[Observation], str]:
    """The trials the model can learn from (a real peak of ``source``), and that source."""
    records = list(records)
    source = source or choose_source(records)
    found = []
    for record in records:
        peak = peak_of(record, source) if record.status in FIT_STATUSES else None
        if peak is not None:
            found.append(Observation(record.run, record.params, peak))
    return found, source


def fit(observed: Sequence[Observation], features: Sequence[str], source: str = "gpu",
        ridge: float = DEFAULT_RIDGE) -> MemoryModel | None:
    """Least squares of log peak on log features; None when no trial can be used.

    Trials missing a feature (or with a non-positive value) are left out. A feature that
    takes one value in every trial cannot be told from the constant, so it goes there
    (``fixed``). The ridge term ``ridge * n`` on the exponents keeps the solution small and
    unique when there are fewer trials than features.
    """
    rows, peaks = [], []
    for obs in observed:
        values = [params_.number(obs.params, name) for name in features]
        if all(v is not None and v > 0 for v in values):
            rows.append([math.log(v) for v in values])
            peaks.append(math.log(obs.peak_mb))
    if not rows:
        return None
    x = np.array(rows, dtype=float).reshape(len(rows), len(features))
    y = np.array(peaks, dtype=float)
    varied = [i for i in range(len(features)) if np.ptp(x[:, i]) > _FLAT]
    fixed = tuple((features[i], float(math.exp(x[0, i]))) for i in range(len(features))
                  if i not in varied)
    xv = x[:, varied]
    best = (math.inf, 0.0, np.zeros(len(varied)), float(y.mean()))
    for base in _base_candidates(np.exp(y), len(varied)):
        beta, intercept = _power_law(xv, np.log(np.exp(y) - base), ridge)
        predicted = np.log(base + np.exp(intercept + xv @ beta))
        error = float(np.sum((predicted - y) ** 2))
        if error < best[0] - 1e-12:
            best = (error, base, beta, intercept)
    _, base, beta, intercept = best
    return MemoryModel(features=tuple(features[i] for i in varied),
                       exponents=tuple(float(b) for b in beta), intercept=intercept,
                       n=len(y), source=source, fixed=fixed, base_mb=float(base))


def _base_candidates(peaks_mb: np.ndarray, n_features: int) -> list[float]:
    """Bases to try: none, and fractions of the smallest peak once there are enough trials
    to tell a base from an exponent (one more than the power law's own parameters)."""
    if n_features == 0 or len(peaks_mb) < n_features + 2:
        return [0.0]
    smallest = float(peaks_mb.min())
    return [0.0] + [smallest * f for f in np.linspace(0.05, 0.95, 19)]


def _power_law(x: np.ndarray, log_y: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Ridge least squares of ``log_y`` on the columns of ``x`` (logs of the features)."""
    if x.shape[1] == 0:
        return np.zeros(0), float(log_y.mean())
    mean_x, mean_y = x.mean(axis=0), log_y.mean()
    xc, yc = x - mean_x, log_y - mean_y
    gram = xc.T @ xc + ridge * len(log_y) * np.eye(x.shape[1])
    beta = np.linalg.solve(gram, xc.T @ yc)
    return beta, float(mean_y - mean_x @ beta)


def fit_records(records: Iterable[TrialRecord], features: Sequence[str],
                source: str | None = None, ridge: float = DEFAULT_RIDGE) -> MemoryModel | None:
    """:func:`fit` over ended trial records (the peak source chosen as in :func:`observations`)."""
    observed, source = observations(records, source)
    return fit(observed, features, source, ridge)


def relative_error(predicted_mb: float | None, actual_mb: float | None) -> float | None:
    """(predicted - actual) / actual: +0.1 means the model said 10% too much."""
    if predicted_mb is None or actual_mb is None or actual_mb <= 0:
        return None
    return (predicted_mb - actual_mb) / actual_mb


def before_launch(observed: Sequence[Observation], features: Sequence[str],
                  source: str = "gpu", min_trials: int = 2,
                  ridge: float = DEFAULT_RIDGE) -> list[float | None]:
    """For each trial in order, what a model fit on the trials before it predicted.

    This is the honest error of the model as the runner uses it (it only knows ended
    trials); None while fewer than ``min_trials`` trials had ended.
    """
    predictions: list[float | None] = []
    for i, obs in enumerate(observed):
        model = fit(observed[:i], features, source, ridge) if i >= min_trials else None
        predictions.append(None if model is None or model.n < min_trials
                           else model.predict(obs.params))
    return predictions


def fits(predicted_mb: float | None, margin: float, free_mb: float | None) -> bool:
    """Whether a trial predicted to peak at ``predicted_mb`` fits in ``free_mb``.

    ``margin`` is a fraction of the prediction kept in reserve (0.2: need 1.2x the
    prediction). Without a prediction (no model yet) or without a free figure (no device),
    there is nothing to decide on, so it fits.
    """
    if predicted_mb is None or free_mb is None:
        return True
    return predicted_mb * (1.0 + margin) <= free_mb


def shrink_to_fit(params: Mapping[str, Any], key: str,
                  predicted_fn: Callable[[Mapping[str, Any]], float | None],
                  free_mb: float | None, margin: float, min_value: float
                  ) -> dict[str, Any] | None:
    """The params with ``key`` (the batch size) halved until the trial fits; None if not even
    ``min_value`` fits.

    Values keep their type (an int batch stays an int). The last candidate is ``min_value``
    itself, so halving past it (100 -> 50 -> 25 -> 16 with min 16) still tries the minimum.
    """
    value = params_.number(params, key)
    if value is None:
        return dict(params) if fits(predicted_fn(params), margin, free_mb) else None
    is_int = isinstance(params_.get(params, key), int)
    candidate = params
    while True:
        if fits(predicted_fn(candidate), margin, free_mb):
            return dict(candidate)
        if value <= min_value:
            return None
        value = max(value / 2, min_value)
        value = int(value) if is_int else value
        candidate = params_.replace(params, key, value)


@dataclass(frozen=True)
class Fit:
    """The model fitted on a sweep's trials with each trial's predictions, or why there is none
    (what the report shows)."""

    features: tuple[str, ...]
    model: MemoryModel | None = None
    observed: tuple[Observation, ...] = ()
    fitted: tuple[float | None, ...] = ()  # by the model fit on all trials
    before: tuple[float | None, ...] = ()  # by a model fit on the trials before each one
    note: str | None = None  # why there is no plot


def memory_fit(records: Sequence[TrialRecord], features: Sequence[str]) -> Fit:
    """The model on all trials, plus each trial's prediction before it was launched."""
    if not features:
        return Fit((), note="no features to fit: pass `--features a,b` or declare "
                   "`isolation.fit.features` in the sweep file")
    observed, source = observations(records)
    model = fit(observed, features, source)
    if model is None or model.n < MIN_FIT_TRIALS:
        count = 0 if model is None else model.n
        return Fit(tuple(features), note=f"too few trials with a {source} peak and every "
                   f"feature ({count}, need {MIN_FIT_TRIALS}) to check a memory model")
    fitted = tuple(model.predict(o.params) for o in observed)
    before = tuple(before_launch(observed, features, source))
    return Fit(tuple(features), model, tuple(observed), fitted, before)


def median_abs_error(predicted: Sequence[float | None],
                     observed: Sequence[Observation]) -> float | None:
    """The median of |relative error| over the trials that have a prediction."""
    errors = [abs(e) for p, o in zip(predicted, observed, strict=True)
              if (e := relative_error(p, o.peak_mb)) is not None]
    return statistics.median(errors) if errors else None
