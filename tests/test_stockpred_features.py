"""Features see no future; the target is the documented formula and near-uniform."""

import math

import numpy as np
import pandas as pd
import pytest

from stockpred import data, features, target
from stockpred.synthetic import synthetic_market

ALL = list(features.FEATURES)


@pytest.fixture(scope="module")
def frame():
    (_, prices), = synthetic_market(1, 300, seed=3)
    return prices


def perturb_after(frame, t, seed=0):
    """Every value after row t replaced by something else entirely."""
    changed = frame.copy()
    rng = np.random.default_rng(seed)
    rest = len(frame) - t - 1
    for column in ("open", "high", "low", "close"):
        changed.loc[t + 1:, column] = frame[column].iloc[t + 1:] * rng.uniform(0.5, 2.0, rest)
    changed.loc[t + 1:, "high"] = changed.loc[t + 1:, ["open", "high", "low", "close"]].max(1)
    changed.loc[t + 1:, "low"] = changed.loc[t + 1:, ["open", "high", "low", "close"]].min(1)
    changed.loc[t + 1:, "volume"] = rng.uniform(1, 1e8, rest)
    return changed


@pytest.mark.parametrize("t", [70, 150, 298])
def test_features_at_t_ignore_everything_after_t(frame, t):
    before = features.compute(frame, ALL)
    after = features.compute(perturb_after(frame, t), ALL)
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])
    assert not np.array_equal(before[t + 1:], after[t + 1:]) or t == len(frame) - 1


def test_back_adjusting_a_future_split_does_not_change_past_features(frame):
    t, day = 150, 200
    raw = frame.copy()
    raw.loc[day:, ["open", "high", "low", "close"]] /= 2.0
    raw.loc[day:, "volume"] *= 2.0
    adjusted = data.adjust_splits(raw, data.detect_splits(raw))
    truncated = raw.iloc[: t + 1]  # what was known at t: no split yet, nothing to adjust
    np.testing.assert_allclose(features.compute(adjusted, ALL)[: t + 1],
                               features.compute(truncated, ALL), atol=1e-5)


def test_trailing_vol_of_the_target_ignores_the_future(frame):
    t = 120
    sigma = target.trailing_vol(frame["close"], 20)
    changed = target.trailing_vol(perturb_after(frame, t)["close"], 20)
    np.testing.assert_array_equal(sigma[: t + 1], changed[: t + 1])


def test_features_are_scaled_into_minus_one_one_after_warmup(frame):
    x = features.compute(frame, ALL)[features.warmup(ALL):]
    assert np.isfinite(x).all()
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert (x.std(axis=0) > 0).all()


def test_clip_override_clips_to_the_given_range(frame):
    x = features.compute(frame, ["close"], clip={"close": [-0.001, 0.001]})[1:]
    assert set(np.unique(np.abs(x))) <= {1.0} or np.mean(np.abs(x) == 1.0) > 0.9


def test_features_needing_missing_columns_are_dropped_and_named():
    kept, dropped = features.select([], {"volume"})
    assert dropped == {"open": ["open"], "high": ["high"], "low": ["low"],
                       "atr_14": ["high", "low"]}
    assert "volume" in kept and "close" in kept and "open" not in kept


def test_target_is_the_documented_formula():
    close = pd.Series([100.0, 101.0, 99.0, 102.0, 103.0, 101.0, 104.0, 105.0])
    horizon, vol_window = 2, 3
    y = target.compute(close, horizon, vol_window, 1e-4)
    t = 4
    logret = np.diff(np.log(close.to_numpy()))
    sigma = np.std(logret[t - vol_window:t], ddof=1)  # returns ending at t
    z = math.log(close[t + horizon] / close[t]) / (sigma * math.sqrt(horizon))
    assert y[t] == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), rel=1e-5)
    assert np.isnan(y[:vol_window]).all() and np.isnan(y[-horizon:]).all()


def test_target_is_near_uniform_on_the_synthetic_market():
    ys = [target.compute(f["close"], 5, 20, 1e-4) for _, f in synthetic_market(40, 600, 1)]
    y = np.concatenate(ys)
    y = y[np.isfinite(y)]
    deciles = np.histogram(y, bins=10, range=(0, 1))[0] / len(y)
    assert deciles.min() > 0.06 and deciles.max() < 0.14, deciles
    assert abs(np.median(y) - 0.5) < 0.03
