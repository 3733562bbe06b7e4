"""Per-ticker daily prices: read the CSV layouts people have, clean them loudly, find splits.

Every cleaning step is counted and reported, never silent. A file that cannot be used raises
:class:`DataError` naming the file and the row (the line number in the file, header = 1), which
``tools/train.py`` turns into one line and exit 2. Unadjusted stock splits poison features
scaled to the previous close (a 2:1 split looks like a -50% day), so :func:`detect_splits`
finds overnight jumps close to a split ratio that the day's own trading range does not bridge,
and :func:`adjust_splits` back-adjusts them.

Its command line (``python -m stockpred.data inspect DIR``) is :mod:`stockpred.datacli`; the
optional downloader is :mod:`stockpred.download`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stockpred.csvfile import DataError, read_prices

if TYPE_CHECKING:
    from stockpred.config import DataConfig

PRICES = ("open", "high", "low", "close")
OPTIONAL = ("open", "high", "low", "volume")
SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 1.5, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 10, 1 / 20,
                2 / 3)


@dataclass
class CleanReport:
    """What cleaning changed in one file; every count is rows."""

    unsorted: int = 0
    duplicates: int = 0
    nan: int = 0
    nonpositive: int = 0
    high_below_low: int = 0
    zero_volume: int = 0
    clamped: int = 0  # open/close outside [low, high]: high/low widened

    def __str__(self) -> str:
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in dataclasses.asdict(self).items() if v]
        return ", ".join(parts) if parts else "clean"

    def total(self) -> int:
        return sum(dataclasses.asdict(self).values())


@dataclass(frozen=True)
class StockSplit:
    """An overnight price jump by ``ratio`` (old shares per new: 2.0 is a 2:1 split)."""

    date: str
    ratio: float

    @property
    def label(self) -> str:
        frac = Fraction(self.ratio).limit_denominator(20)
        return f"{frac.numerator}:{frac.denominator}"


@dataclass
class Ticker:
    name: str
    frame: pd.DataFrame  # columns: date (datetime64) and close, plus any of OPTIONAL
    report: CleanReport = field(default_factory=CleanReport)
    splits: list[StockSplit] = field(default_factory=list)
    source: str = ""  # the file's name, for notes; empty for the synthetic market


# -- reading -------------------------------------------------------------------------------
def read_csv(path: str) -> tuple[pd.DataFrame, CleanReport]:
    """One ticker's file, any of the usual layouts, as a cleaned frame and its report."""
    frame, blank = read_prices(path, ("close", *OPTIONAL))
    frame, report = clean(frame[~blank])
    report.nan += int(blank.sum())  # a blank line is a row with every value missing
    return frame, report


def clean(frame: pd.DataFrame) -> tuple[pd.DataFrame, CleanReport]:
    """Sort, dedupe, drop unusable rows and widen inconsistent ranges, counting each."""
    report = CleanReport()
    dates = frame["date"].to_numpy()
    report.unsorted = int(np.sum(dates[1:] < dates[:-1]))
    frame = frame.sort_values("date", kind="stable")
    before = len(frame)
    frame = frame.drop_duplicates("date", keep="last")
    report.duplicates = before - len(frame)
    keep = frame.notna().all(axis=1)
    report.nan = int((~keep).sum())
    frame = frame[keep]
    prices = [c for c in PRICES if c in frame]
    keep = (frame[prices] > 0).all(axis=1)
    if "volume" in frame:
        keep &= frame["volume"] >= 0
    report.nonpositive = int((~keep).sum())
    frame = frame[keep]
    if "high" in frame and "low" in frame:
        keep = frame["high"] >= frame["low"]
        report.high_below_low = int((~keep).sum())
        frame = frame[keep].copy()
        inside = [c for c in ("open", "close") if c in frame]
        top, bottom = frame[inside].max(axis=1), frame[inside].min(axis=1)
        report.clamped = int(((frame["high"] < top) | (frame["low"] > bottom)).sum())
        frame["high"] = np.maximum(frame["high"], top)
        frame["low"] = np.minimum(frame["low"], bottom)
    if "volume" in frame:
        keep = frame["volume"] > 0
        report.zero_volume = int((~keep).sum())
        frame = frame[keep]
    return frame.reset_index(drop=True), report


# -- splits ----------------------------------------------------------------------------------
def detect_splits(frame: pd.DataFrame, tolerance: float = 0.06) -> list[StockSplit]:
    """Overnight jumps within ``tolerance`` (log) of a split ratio, far outside normal moves.

    A split moves the whole day to the new level, so with High/Low present the previous close
    must also lie outside the day's range by at least half the ratio (in log terms); a crash
    that trades down through the day is not a split.
    """
    close = frame["close"].to_numpy()
    if len(close) < 3:
        return []
    now = frame["open"].to_numpy() if "open" in frame else close
    jump = np.log(close[:-1] / now[1:])  # log(previous close / today's first price)
    moves = np.abs(np.diff(np.log(close)))
    sigma = 1.4826 * float(np.median(moves)) if len(moves) else 0.0
    events = []
    for i in np.flatnonzero(np.abs(jump) > max(6 * sigma, 0.25)):
        ratio = min(SPLIT_RATIOS, key=lambda r: abs(jump[i] - math.log(r)))
        if abs(jump[i] - math.log(ratio)) > tolerance:
            continue
        if "high" in frame and "low" in frame:
            row = frame.iloc[i + 1]
            bound = row["high"] if ratio > 1 else row["low"]
            if math.log(close[i] / bound) / math.log(ratio) < 0.5:
                continue
        events.append(StockSplit(str(frame["date"].iloc[i + 1].date()), float(ratio)))
    return events


def adjust_splits(frame: pd.DataFrame, events: list[StockSplit]) -> pd.DataFrame:
    """Back-adjust: prices before each split divided by its ratio, volumes multiplied."""
    frame = frame.copy()
    for event in events:
        before = frame["date"] < pd.Timestamp(event.date)
        for column in PRICES:
            if column in frame:
                frame.loc[before, column] /= event.ratio
        if "volume" in frame:
            frame.loc[before, "volume"] *= event.ratio
    return frame


# -- a directory of files ---------------------------------------------------------------------
DATA_SUFFIXES = (".csv", ".tsv")  # any letter case


def csv_files(directory: str) -> list[str]:
    """The data files of ``directory`` (``*.csv``, ``*.tsv``, any case), sorted."""
    files, _ = scan(directory)
    if not files:
        raise DataError(directory, None, "no .csv or .tsv files")
    return files


def scan(directory: str) -> tuple[list[str], list[str]]:
    """Data files and the other files (README.txt, ...), which are ignored but counted.

    Hidden files (``.DS_Store``) and sub-directories not named like data are left out of both.
    """
    if not os.path.isdir(directory):
        raise DataError(directory, None, "not a directory")
    files, others = [], []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.lower().endswith(DATA_SUFFIXES):
            files.append(path)
        elif not name.startswith(".") and os.path.isfile(path):
            others.append(path)
    return files, others


def ignored_note(directory: str) -> str | None:
    """One line saying how many non-data files were ignored, naming the first few."""
    _, others = scan(directory)
    if not others:
        return None
    shown = ", ".join(os.path.basename(p) for p in others[:5])
    more = f" and {len(others) - 5} more" if len(others) > 5 else ""
    return f"{len(others)} files ignored (not .csv or .tsv): {shown}{more}"


def load_dir(directory: str, adjust: bool) -> list[Ticker]:
    """Every file of ``directory`` as a cleaned (and, if asked, split-adjusted) ticker."""
    tickers = []
    for path in csv_files(directory):
        frame, report = read_csv(path)
        name = os.path.splitext(os.path.basename(path))[0]
        tickers.append(_finish(Ticker(name, frame, report, source=os.path.basename(path)),
                               adjust))
    return tickers


def _finish(ticker: Ticker, adjust: bool) -> Ticker:
    ticker.splits = detect_splits(ticker.frame)
    if adjust and ticker.splits:
        ticker.frame = adjust_splits(ticker.frame, ticker.splits)
    return ticker


def load_market(data_config: DataConfig) -> list[Ticker]:
    """The tickers a ``DataConfig`` names: the synthetic market or a CSV directory."""
    if data_config.source == "csv":
        return load_dir(data_config.dir, data_config.adjust_splits)
    from stockpred.synthetic import synthetic_market

    frames = synthetic_market(data_config.tickers, data_config.days, data_config.seed,
                              data_config.signal)
    return [_finish(Ticker(name, frame), data_config.adjust_splits) for name, frame in frames]


def common_columns(tickers: list[Ticker]) -> set[str]:
    """The optional columns every ticker has (features need them in all files)."""
    return {c for c in OPTIONAL if all(c in t.frame for t in tickers)}


# ``python -m stockpred.data``, the documented command, runs the CLI. Only then: this file is
# ``__main__`` there, and datacli imports ``stockpred.data`` as another module, never this one,
# so no import cycle forms (a static reading, farm-studio's, still draws one).
if __name__ == "__main__":
    from stockpred.datacli import main

    sys.exit(main())
