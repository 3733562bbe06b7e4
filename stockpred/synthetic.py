"""A seeded synthetic market, so that training and ``make sweep`` need no download.

Each ticker: a market factor with calm/turbulent regimes times a beta, its own volatility
regime (three levels, Markov switching), a small drift, volume that rises with volatility
and with the size of the day's move, OHLC bars with an overnight gap, and in about one ticker
of five an unadjusted split (prices divided, volumes multiplied, as raw data shows them).

``signal`` plants a weak persistent drift (a latent AR(1) momentum, in units of the
ticker's volatility) so a model has something to find; 0 makes every ticker a random walk
that no model can beat. Real markets are closer to 0 than to the default 0.15.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

MARKET_VOL = np.array([0.007, 0.018])  # daily, calm / turbulent
MARKET_SWITCH = np.array([0.01, 0.04])  # chance per day of leaving each regime
TICKER_VOL = np.array([0.01, 0.018, 0.032])
TICKER_SWITCH = np.array([0.01, 0.02, 0.05])
MOMENTUM_PERSISTENCE = 0.97
SPLIT_PROBABILITY = 0.2
SPLIT_CHOICES = (2.0, 3.0, 0.5, 10.0, 1.5)
START = "2012-01-02"


def _regimes(rng: np.random.Generator, days: int, n: int, switch: np.ndarray) -> np.ndarray:
    """Markov regime indices (days, n): leave the current state with ``switch[state]``."""
    states = len(switch)
    index = rng.integers(0, states, n)
    leave = rng.random((days, n))
    step = rng.integers(1, states, (days, n))
    out = np.empty((days, n), dtype=np.int64)
    for day in range(days):
        index = np.where(leave[day] < switch[index], (index + step[day]) % states, index)
        out[day] = index
    return out


def _momentum(rng: np.random.Generator, days: int, n: int) -> np.ndarray:
    """A unit-variance AR(1) per ticker: the latent drift that ``signal`` scales."""
    rho = MOMENTUM_PERSISTENCE
    shocks = rng.standard_normal((days, n)) * np.sqrt(1 - rho * rho)
    out = np.empty((days, n))
    level = rng.standard_normal(n)
    for day in range(days):
        level = rho * level + shocks[day]
        out[day] = level
    return out


def synthetic_market(tickers: int, days: int, seed: int = 0,
                     signal: float = 0.15) -> list[tuple[str, pd.DataFrame]]:
    """``tickers`` frames of ``days`` business days each: date, open, high, low, close, volume."""
    rng = np.random.default_rng(seed)
    market = MARKET_VOL[_regimes(rng, days, 1, MARKET_SWITCH)[:, 0]] * rng.standard_normal(days)
    vol = TICKER_VOL[_regimes(rng, days, tickers, TICKER_SWITCH)]
    beta = rng.uniform(0.5, 1.5, tickers)
    drift = rng.normal(0.0002, 0.0003, tickers)
    noise = rng.standard_normal((days, tickers))
    ret = drift + beta * market[:, None] + vol * (signal * _momentum(rng, days, tickers) + noise)
    gap = 0.4 * ret + 0.2 * vol * rng.standard_normal((days, tickers))  # overnight part
    close = rng.uniform(np.log(5), np.log(300), tickers) + np.cumsum(ret, axis=0)
    prev = np.vstack([close[:1] - ret[:1], close[:-1]])
    open_ = prev + gap
    wick = 0.4 * vol * np.abs(rng.standard_normal((2, days, tickers)))
    high = np.maximum(open_, close) + wick[0]
    low = np.minimum(open_, close) - wick[1]
    base = rng.uniform(np.log(1e5), np.log(1e7), tickers)
    volume = np.exp(base + 0.5 * np.log(vol / TICKER_VOL[0]) + 0.3 * np.abs(noise)
                    + 0.2 * rng.standard_normal((days, tickers)))
    dates = pd.bdate_range(START, periods=days)
    frames = []
    for k in range(tickers):
        frame = pd.DataFrame({"date": dates, "open": np.exp(open_[:, k]),
                              "high": np.exp(high[:, k]), "low": np.exp(low[:, k]),
                              "close": np.exp(close[:, k]), "volume": np.round(volume[:, k])})
        if rng.random() < SPLIT_PROBABILITY:
            day = int(rng.integers(days // 10, days - days // 10))
            ratio = SPLIT_CHOICES[int(rng.integers(len(SPLIT_CHOICES)))]
            frame.loc[day:, ["open", "high", "low", "close"]] /= ratio
            frame.loc[day:, "volume"] *= ratio
        frames.append((f"SYN{k:04d}", frame))
    return frames


def write_csvs(directory: str, tickers: int, days: int, seed: int = 0,
               signal: float = 0.15) -> list[str]:
    """Write the market as Yahoo-style CSVs (``Date,Open,High,Low,Close,Adj Close,Volume``)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, frame in synthetic_market(tickers, days, seed, signal):
        out = frame.rename(columns=str.title).assign(**{"Adj Close": frame["close"]})
        out = out[["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]]
        path = os.path.join(directory, f"{name}.csv")
        out.to_csv(path, index=False, date_format="%Y-%m-%d", float_format="%.6f")
        paths.append(path)
    return paths
