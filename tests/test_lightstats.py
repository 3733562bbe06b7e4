"""gpusweep.lightstats gives what scipy.stats gives, bit for bit, for every W&B distribution."""

import random

import numpy as np
import pytest
import scipy.stats
import sweeps.params

from gpusweep import lightstats

# Every distribution the sweep schema allows (sweeps/config/schema.json), as a param.
PARAMS = {
    "constant": {"value": 3},
    "categorical": {"values": ["a", "b", "c", 4]},
    "categorical_w_probabilities": {"values": [1, 2, 3], "probabilities": [0.2, 0.5, 0.3]},
    "int_uniform": {"distribution": "int_uniform", "min": -3, "max": 17},
    "int_uniform_one": {"distribution": "int_uniform", "min": 5, "max": 6},
    "uniform": {"distribution": "uniform", "min": -2.5, "max": 7.25},
    "uniform_ints": {"min": 1, "max": 9},
    "log_uniform": {"distribution": "log_uniform", "min": -9.2, "max": -2.3},
    "log_uniform_values": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
    "inv_log_uniform": {"distribution": "inv_log_uniform", "min": 0.1, "max": 4.0},
    "inv_log_uniform_values": {"distribution": "inv_log_uniform_values", "min": 2.0,
                               "max": 300.0},
    "q_uniform": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
    "q_uniform_float": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.05},
    "q_log_uniform": {"distribution": "q_log_uniform", "min": 0.0, "max": 6.0, "q": 4},
    "q_log_uniform_values": {"distribution": "q_log_uniform_values", "min": 16, "max": 1024,
                             "q": 8},
    "normal": {"distribution": "normal", "mu": 1.5, "sigma": 0.3},
    "q_normal": {"distribution": "q_normal", "mu": 20, "sigma": 5, "q": 1},
    "log_normal": {"distribution": "log_normal", "mu": -2.0, "sigma": 0.7},
    "q_log_normal": {"distribution": "q_log_normal", "mu": 3.0, "sigma": 0.5, "q": 0.5},
    "beta": {"distribution": "beta", "a": 2.0, "b": 5.0},
    "q_beta": {"distribution": "q_beta", "a": 0.5, "b": 0.5, "q": 0.1},
}
EDGES = [0.0, 1.0, 1e-300, 5e-324, 1 - 2**-53, 0.5, 0.05, 0.95, 1e-12]


def same(a, b):
    """Equal values (nan equal to nan) of the same type."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            same(x, y)
        return
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, (a, b)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), (a, b)
        return
    if isinstance(a, (float, np.floating)) and np.isnan(a):
        assert np.isnan(b)
        return
    assert a == b, (a, b)


def samples(name, config, stats, draws):
    sweeps.params.stats = stats
    try:
        param = sweeps.params.HyperParameter(name, dict(config))
        return [param.ppf(q) for q in draws]
    finally:
        sweeps.params.stats = scipy.stats


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_every_distribution_samples_what_scipy_stats_samples(name):
    """2000 seeded draws and the edges, through sweeps' own HyperParameter.ppf."""
    rng = random.Random(name)
    draws = EDGES + [rng.uniform(0.0, 1.0) for _ in range(2000)]
    ours = samples(name, PARAMS[name], lightstats, draws)
    theirs = samples(name, PARAMS[name], scipy.stats, draws)
    for q, a, b in zip(draws, ours, theirs, strict=True):
        try:
            same(a, b)
        except AssertionError:
            raise AssertionError(f"{name} at q={q!r}: ours {a!r}, scipy.stats {b!r}") from None


@pytest.mark.parametrize("dist,args", [
    ("uniform", (0.0, 1.0)), ("uniform", (3, 4)), ("uniform", (1.0, -1.0)),
    ("uniform", (np.nan, 1.0)), ("norm", (0.0, 1.0)), ("norm", (2.0, 0.0)),
    ("lognorm", (0.5,)), ("lognorm", (-1.0,)), ("lognorm", (0.5, 0.0, 3.0)),
    ("randint", (0, 3)), ("randint", (-4, 100)), ("randint", (3, 3)), ("randint", (0.5, 3)),
])
def test_the_ppf_matches_for_arrays_bounds_and_bad_arguments(dist, args):
    """Arrays as well as scalars (sweeps' bayes search passes arrays), nan where scipy.stats
    gives nan (a bad scale, an empty or non-integral randint)."""
    q = np.array(EDGES + list(np.linspace(0, 1, 101)) + [-0.1, 1.1])
    same(getattr(lightstats, dist).ppf(q, *args), getattr(scipy.stats, dist).ppf(q, *args))
    for x in EDGES:
        same(getattr(lightstats, dist).ppf(x, *args), getattr(scipy.stats, dist).ppf(x, *args))


def test_everything_else_is_scipy_stats_itself():
    assert lightstats.beta is scipy.stats.beta
    assert lightstats.uniform.cdf(0.3, 0, 2) == scipy.stats.uniform.cdf(0.3, 0, 2)
    assert lightstats.randint.cdf is not None
