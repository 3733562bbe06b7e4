"""scipy.stats' ppf for the distributions W&B's random search samples, without scipy.stats.

``sweeps.params`` samples a random sweep's params as ``stats.<dist>.ppf(random.uniform(0, 1),
...)``; importing scipy.stats for that costs about half a second before the first trial. This
module stands in for ``stats`` there (:func:`gpusweep.engine.search`) and gives the same
values, bit for bit: the same numpy operations in the same order as scipy's generic
``rv_continuous.ppf`` / ``rv_discrete.ppf`` (support bounds at q = 0 and 1, ``nan`` for bad
arguments, a numpy float64 scalar for a scalar q), with the distributions' ``_ppf`` of scipy
1.x (``uniform``: q; ``randint``: ceil and the cdf check; ``norm``: ``special.ndtri``;
``lognorm``: ``exp(s * ndtri(q))``). ``norm`` and ``lognorm`` load scipy.special alone (a
seventh of scipy.stats), only when a sweep has such a param. Everything else (``beta``, every
``cdf``, whatever Bayesian search asks) is the real scipy.stats, imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np


def _stats() -> Any:
    return importlib.import_module("scipy.stats")


def _ndtri(q: Any) -> Any:
    from scipy.special import ndtri

    return ndtri(q)


def _pick(cond: Any, value: Any) -> Any:
    """``value`` where ``cond`` holds, as scipy's ``argsreduce`` gives it (one element
    stays as it is, in its own dtype)."""
    value = np.atleast_1d(value)
    return value if value.size == 1 else np.extract(cond, np.broadcast_to(value, cond.shape))


class _Distribution:
    """One distribution: our ``ppf``; any other attribute is scipy.stats' own."""

    name = ""

    def __getattr__(self, attr: str) -> Any:
        return getattr(getattr(_stats(), self.name), attr)


def _continuous(q: Any, loc: Any, scale: Any, valid: Any, lower: float, upper: float,
                ppf: Any) -> Any:
    """``rv_continuous.ppf``: ``_ppf(q) * scale + loc`` inside (0, 1), the support's bounds
    at 0 and 1, nan where the arguments are bad."""
    q, loc, scale = map(np.asarray, (q, loc, scale))
    cond0 = valid & (scale > 0) & (loc == loc)
    inside = cond0 & (q > 0) & (q < 1)
    output = np.full(np.shape(inside), fill_value=np.nan)
    np.place(output, cond0 & (q == 0), _pick(cond0 & (q == 0), lower * scale + loc))
    np.place(output, cond0 & (q == 1), _pick(cond0 & (q == 1), upper * scale + loc))
    if np.any(inside):
        good = _pick(inside, q)
        np.place(output, inside, ppf(good) * _pick(inside, scale)
                 + _pick(inside, loc))
    return output[()] if output.ndim == 0 else output


class _Uniform(_Distribution):
    name = "uniform"

    def ppf(self, q: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
        return _continuous(q, loc, scale, np.True_, 0.0, 1.0, lambda good: good)


class _Norm(_Distribution):
    name = "norm"

    def ppf(self, q: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
        return _continuous(q, loc, scale, np.True_, -np.inf, np.inf, _ndtri)


class _Lognorm(_Distribution):
    name = "lognorm"

    def ppf(self, q: Any, s: Any, loc: Any = 0.0, scale: Any = 1.0) -> Any:
        s = np.asarray(s)
        valid = s > 0
        return _continuous(q, loc, scale, valid, 0.0, np.inf,
                           lambda good: np.exp(s * _ndtri(good)))


class _Randint(_Distribution):
    name = "randint"

    def ppf(self, q: Any, low: Any, high: Any, loc: Any = 0) -> Any:
        """``rv_discrete.ppf`` with randint's ``_ppf``: the least k whose cdf reaches q;
        ``low - 1`` at q = 0, ``high - 1`` at q = 1."""
        q, loc, low, high = map(np.asarray, (q, loc, low, high))
        integral = (low == np.floor(low)) & (high == np.floor(high))
        cond0 = (high > low) & integral & (loc == loc)
        inside = cond0 & (q > 0) & (q < 1)
        output = np.full(np.shape(inside), fill_value=np.nan, dtype="d")
        np.place(output, (q == 0) & cond0, _pick((q == 0) & cond0, low - 1 + loc))
        np.place(output, (q == 1) & cond0, _pick((q == 1) & cond0, high - 1 + loc))
        if np.any(inside):
            good = _pick(inside, q)
            lo = _pick(inside, low)
            hi = _pick(inside, high)
            vals = np.ceil(good * (hi - lo) + lo) - 1
            vals1 = (vals - 1).clip(lo, hi)
            cdf = (np.floor(vals1) - lo + 1.0) / (hi - lo)
            np.place(output, inside, np.where(cdf >= good, vals1, vals)
                     + _pick(inside, loc))
        return output[()] if output.ndim == 0 else output


uniform = _Uniform()
norm = _Norm()
lognorm = _Lognorm()
randint = _Randint()


def __getattr__(name: str) -> Any:  # beta and the rest: scipy.stats itself
    return getattr(_stats(), name)
