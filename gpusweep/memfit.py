"""The memory model: predict a trial's peak memory from its params, before it runs.

Seed 003's sweep died because nobody knew how much memory a trial would take. Memory of a
training run is close to a product of powers of its size params (activations ~ batch x
hidden x layers x window), so the model is a power law fitted by least squares on logs::

    log peak_mb = b0 + sum_i b_i * log x_i        i.e.   peak_mb = e^b0 * prod x_i^b_i

Each exponent reads directly ("peak grows like batch_size^0.98"). The fit is ridge-regularised
on the exponents, so with fewer trials than features it picks the smallest exponents that
explain the data instead of blowing up, and with a single trial it is a constant.

Everything here is pure: plain records in, numbers out, numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpusweep.records import TrialRecord
from gpusweep.status import TrialStatus

# Statuses whose peak is a real peak. A failed trial's peak is where it died (an OOM's peak
# is a lower bound of what it needed); a killed one was interrupted at an arbitrary point.
FIT_STATUSES = frozenset({TrialStatus.FINISHED, TrialStatus.STOPPED_EARLY, TrialStatus.TIMEOUT})
DEFAULT_RIDGE = 1e-3
_FLAT = 1e-9  # a feature whose log varies less than this is not varied at all


@dataclass(frozen=True)
class Observation:
    """One ended trial as the fit sees it: its params and its peak memory in MB."""

    run: str
    params: Mapping[str, Any]
    peak_mb: float


@dataclass(frozen=True)
class MemoryModel:
    """A fitted power law: ``peak_mb = exp(intercept) * prod(params[f] ** exponent)``."""

    features: tuple[str, ...]  # the varied features the exponents belong to
    exponents: tuple[float, ...]
    intercept: float  # log MB
    n: int  # trials fitted on
    source: str  # "gpu" or "host": which peak was fitted
    fixed: tuple[tuple[str, float], ...] = ()  # declared but not varied: in the constant

    def predict(self, params: Mapping[str, Any]) -> float | None:
        """Predicted peak in MB, or None when a feature is missing or not positive."""
        total = self.intercept
        for name, exponent in zip(self.features, self.exponents, strict=True):
            value = param_value(params, name)
            if value is None or value <= 0:
                return None
            total += exponent * math.log(value)
        return math.exp(total)

    def describe(self) -> str:
        """The model as one readable line, e.g. ``peak GPU MB ~ 1.2 x batch^0.98 x hidden^1``."""
        terms = [f"{math.exp(self.intercept):.4g}"]
        terms += [f"{name}^{exponent:.2f}" for name, exponent
                  in zip(self.features, self.exponents, strict=True)]
        text = f"peak {self.source} MB ~ " + " x ".join(terms)
        text += f"  (fit on {self.n} trial{'s' if self.n != 1 else ''})"
        if self.fixed:
            held = ", ".join(f"{name}={value:g}" for name, value in self.fixed)
            text += f"; not varied, in the constant: {held}"
        return text


def param_value(params: Mapping[str, Any], name: str) -> float | None:
    """A numeric param by dotted name: a literal ``"a.b"`` key, else nested ``{a: {b: v}}``."""
    value: Any = params.get(name) if name in params else _nested(params, name.split("."))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _nested(params: Mapping[str, Any], parts: list[str]) -> Any:
    node: Any = params
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def with_param(params: Mapping[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of ``params`` with one (dotted) param replaced, in the form it was found in."""
    copy = dict(params)
    if name in copy or "." not in name:
        copy[name] = value
        return copy
    head, rest = name.split(".", 1)
    inner = copy.get(head)
    copy[head] = with_param(inner if isinstance(inner, Mapping) else {}, rest, value)
    return copy


def peak_of(record: TrialRecord, source: str) -> float | None:
    """The peak the model fits: the trial's own GPU memory, or the host RSS of its tree.

    For the GPU, the tree's own NVML usage (CUDA context included, which is what a device's
    free memory must hold) comes first, then what torch reserved, then the device's rise
    over its baseline.
    """
    if source == "host":
        return _positive(record.host.peak_rss_mb)
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
        values = [param_value(obs.params, name) for name in features]
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
    mean_x, mean_y = xv.mean(axis=0), y.mean()
    xc, yc = xv - mean_x, y - mean_y
    gram = xc.T @ xc + ridge * len(y) * np.eye(len(varied))
    beta = np.linalg.solve(gram, xc.T @ yc) if varied else np.zeros(0)
    intercept = float(mean_y - mean_x @ beta)
    return MemoryModel(features=tuple(features[i] for i in varied),
                       exponents=tuple(float(b) for b in beta), intercept=intercept,
                       n=len(y), source=source, fixed=fixed)


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
    value = param_value(params, key)
    if value is None:
        return dict(params) if fits(predicted_fn(params), margin, free_mb) else None
    is_int = isinstance(_raw(params, key), int)
    candidate = params
    while True:
        if fits(predicted_fn(candidate), margin, free_mb):
            return dict(candidate)
        if value <= min_value:
            return None
        value = max(value / 2, min_value)
        value = int(value) if is_int else value
        candidate = with_param(params, key, value)


def _raw(params: Mapping[str, Any], name: str) -> Any:
    return params[name] if name in params else _nested(params, name.split("."))
