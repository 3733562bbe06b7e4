"""The walk-forward split leaves an embargo no window crosses; shuffle warns."""

import numpy as np
import pytest

from stockpred.cache import load_or_build
from stockpred.config import Config, ConfigError, apply_overrides, replace
from stockpred.walkforward import SHUFFLE_WARNING, shuffled, train_val_split, walk_forward


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    config = replace(Config(), data={"tickers": 6, "days": 400,
                                     "cache_dir": str(tmp_path_factory.mktemp("c"))},
                     features={"window": 20}, target={"horizon": 5})
    return load_or_build(config, log=lambda m: None)[0]


def ticker_of(cache, rows):
    return np.searchsorted(cache.offsets, rows, side="right") - 1


@pytest.mark.parametrize("embargo", [25, 40])
def test_embargo_holds_between_every_train_and_validation_window(cache, embargo):
    horizon, window = 5, cache.window
    split = walk_forward(cache, 0.25, embargo)
    assert len(split.train) and len(split.val)
    assert not set(split.train) & set(split.val)
    starts = cache.starts
    for k in range(len(cache.offsets) - 1):
        train = starts[split.train][ticker_of(cache, starts[split.train]) == k]
        val = starts[split.val][ticker_of(cache, starts[split.val]) == k]
        if len(train) == 0 or len(val) == 0:
            continue
        last_train_day = train.max() + window - 1  # last input row of the latest train window
        assert val.min() - last_train_day > embargo
        assert last_train_day + horizon < val.min() - window + 1  # target ends before: gap
    # across tickers too: every train target ends before the first validation input day
    last_target_day = cache.dates[starts[split.train] + window - 1 + horizon].max()
    assert last_target_day < cache.dates[starts[split.val]].min()
    assert str(np.datetime64(int(cache.dates[starts[split.val]].min()), "D")) == split.val_start


def test_validation_is_about_the_asked_fraction(cache):
    split = walk_forward(cache, 0.25, 25)
    assert 0.2 < len(split.val) / len(cache) < 0.3
    lost = len(cache) - len(split.train) - len(split.val)
    # per ticker, the windows ending inside the embargo and those straddling the cut
    assert lost == 6 * (25 + cache.window - 1)


def test_embargo_shorter_than_horizon_plus_window_is_refused():
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), [("split.embargo", "10")])
    assert "split.embargo: must be at least" in str(info.value)
    assert Config().embargo == Config().target.horizon + Config().features.window


def test_shuffle_mixes_days_and_warns(cache):
    warnings = []
    config = replace(Config(), split={"mode": "shuffle", "val_fraction": 0.25})
    split = train_val_split(cache, config, warn=warnings.append)
    assert warnings == [SHUFFLE_WARNING]
    assert split.mode == "shuffle" and len(split.train) + len(split.val) == len(cache)
    days = cache.dates[cache.starts]
    assert days[split.val].min() < days[split.train].max()
    again = shuffled(len(cache), 0.25, seed=0)
    np.testing.assert_array_equal(again.val, split.val)
