"""Per-day features that use data up to that day only, clipped and scaled to [-1, 1].

Prices are scaled to the previous close (scaled to the window's last close instead, the price
level gets through and trains worse), volume to its trailing mean (log), and the indicators are
ratios, so every feature is free of the price level and of split back-adjustment. Outliers are
clipped rather than dropped (dropping them drops whole days, and the windows around them), then
mapped linearly to [-1, 1]. Every rolling and exponential statistic here is causal (pandas
``rolling`` / ``ewm(adjust=False)``); ``tests/test_stockpred_features.py`` proves it by
perturbing the future.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Feature:
    needs: tuple[str, ...]  # optional columns besides close
    lookback: int  # rows before the first trustworthy value
    low: float  # clip range, before scaling to [-1, 1]
    high: float
    compute: Callable[[pd.DataFrame], pd.Series]


def _log_ratio(a: pd.Series, b: pd.Series) -> pd.Series:
    return np.log(a / b)


def _prev(frame: pd.DataFrame) -> pd.Series:
    return frame["close"].shift(1)


def _ma(n: int) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda f: _log_ratio(f["close"], f["close"].rolling(n).mean())


def _ret(n: int) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda f: _log_ratio(f["close"], f["close"].shift(n))


def _rsi(frame: pd.DataFrame, n: int = 14) -> pd.Series:
    change = frame["close"].diff()
    gain = change.clip(lower=0).ewm(alpha=1 / n, adjust=False).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / n, adjust=False).mean()
    return gain / (gain + loss).replace(0, np.nan) - 0.5


def _macd_line(frame: pd.DataFrame) -> pd.Series:
    close = frame["close"]
    fast = close.ewm(span=12, adjust=False).mean()
    slow = close.ewm(span=26, adjust=False).mean()
    return (fast - slow) / close


def _macd_hist(frame: pd.DataFrame) -> pd.Series:
    line = _macd_line(frame)
    return line - line.ewm(span=9, adjust=False).mean()


def _bollinger(frame: pd.DataFrame, n: int = 20) -> pd.Series:
    close = frame["close"]
    mean, std = close.rolling(n).mean(), close.rolling(n).std()
    return (close - (mean - 2 * std)) / (4 * std).replace(0, np.nan)


def _atr(frame: pd.DataFrame, n: int = 14) -> pd.Series:
    prev = _prev(frame)
    true_range = pd.concat([frame["high"] - frame["low"], (frame["high"] - prev).abs(),
                            (frame["low"] - prev).abs()], axis=1).max(axis=1)
    return true_range.ewm(alpha=1 / n, adjust=False).mean() / frame["close"]


def _volume(frame: pd.DataFrame, n: int = 20) -> pd.Series:
    return _log_ratio(frame["volume"], frame["volume"].rolling(n).mean())


def _realised_vol(frame: pd.DataFrame, n: int = 20) -> pd.Series:
    return np.log(frame["close"]).diff().rolling(n).std()


FEATURES: dict[str, Feature] = {
    "open": Feature(("open",), 1, -0.15, 0.15, lambda f: _log_ratio(f["open"], _prev(f))),
    "high": Feature(("high",), 1, -0.15, 0.15, lambda f: _log_ratio(f["high"], _prev(f))),
    "low": Feature(("low",), 1, -0.15, 0.15, lambda f: _log_ratio(f["low"], _prev(f))),
    "close": Feature((), 1, -0.15, 0.15, lambda f: _log_ratio(f["close"], _prev(f))),
    "volume": Feature(("volume",), 20, -3.0, 3.0, _volume),
    "ma_5": Feature((), 5, -0.15, 0.15, _ma(5)),
    "ma_20": Feature((), 20, -0.3, 0.3, _ma(20)),
    "ma_60": Feature((), 60, -0.5, 0.5, _ma(60)),
    "ret_5": Feature((), 5, -0.3, 0.3, _ret(5)),
    "ret_20": Feature((), 20, -0.6, 0.6, _ret(20)),
    "rsi_14": Feature((), 42, -0.5, 0.5, _rsi),
    "macd": Feature((), 52, -0.1, 0.1, _macd_line),
    "macd_hist": Feature((), 60, -0.05, 0.05, _macd_hist),
    "bb_pctb": Feature((), 20, -0.5, 1.5, _bollinger),
    "atr_14": Feature(("high", "low"), 42, 0.0, 0.15, _atr),
    "vol_20": Feature((), 21, 0.0, 0.08, _realised_vol),
}


def select(requested: list[str], columns: set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The features to use (all when ``requested`` is empty) and those dropped for lack of
    columns, each with the columns it misses."""
    names = list(requested) or list(FEATURES)
    kept, dropped = [], {}
    for name in names:
        missing = [c for c in FEATURES[name].needs if c not in columns]
        if missing:
            dropped[name] = missing
        else:
            kept.append(name)
    return kept, dropped


def warmup(names: list[str]) -> int:
    """Rows at the start of each ticker whose features are not yet trustworthy."""
    return max(FEATURES[name].lookback for name in names)


def compute(frame: pd.DataFrame, names: list[str],
            clip: dict | None = None) -> np.ndarray:
    """Feature matrix (rows, len(names)) as float32 in [-1, 1]; NaN where undefined.

    Row t depends on rows 0..t of ``frame`` only.
    """
    clip = clip or {}
    out = np.empty((len(frame), len(names)), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, name in enumerate(names):
            feature = FEATURES[name]
            low, high = clip.get(name, (feature.low, feature.high))
            values = feature.compute(frame).to_numpy(dtype=np.float64)
            values = np.where(np.isfinite(values), values, np.nan)
            out[:, j] = 2.0 * (np.clip(values, low, high) - low) / (high - low) - 1.0
    return out
