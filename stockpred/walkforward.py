"""Train/validation split: walk-forward by date with an embargo, or shuffle to show the leak.

Walk-forward: validation is every window whose first day is on or after ``val_start`` (the
date that leaves ``val_fraction`` of windows after it). A training window ends on day t (its
last input row) and its target looks to t + horizon; it is kept only when
``t + embargo < i_v`` where i_v is the ticker's first validation row. With embargo >=
horizon + window, the gap between a training target's last day and the first validation
input day is at least ``window`` rows: no window, input or target, overlaps the other side.

Shuffle (``random.shuffle`` over the windows) puts neighbouring, overlapping windows of the
same days on both sides, so validation scores what the model memorised; it exists only to
measure by how much it flatters and always warns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stockpred.cache import WindowCache
from stockpred.data import DataError

if TYPE_CHECKING:
    from stockpred.config import Config

SHUFFLE_WARNING = ("warning: split.mode=shuffle puts overlapping windows of the same days in "
                   "train and validation; val_mae is flattered (use walk_forward)")


@dataclass(frozen=True)
class TrainValSplit:
    train: np.ndarray  # window ids, sorted
    val: np.ndarray
    mode: str
    embargo: int | None = None
    val_start: str | None = None  # first validation date (walk-forward)

    def summary(self) -> dict:
        return {"mode": self.mode, "train": int(len(self.train)), "val": int(len(self.val)),
                "embargo": self.embargo, "val_start": self.val_start}


def walk_forward(cache: WindowCache, val_fraction: float, embargo: int) -> TrainValSplit:
    """Validation after ``val_start``; training windows end ``embargo`` rows before it."""
    starts = cache.starts
    start_days = cache.dates[starts]
    cut = int(np.sort(start_days)[min(int((1 - val_fraction) * len(starts)), len(starts) - 1)])
    first_val_row = np.empty(len(cache.offsets) - 1, dtype=np.int64)
    for k in range(len(first_val_row)):
        lo, hi = int(cache.offsets[k]), int(cache.offsets[k + 1])
        first_val_row[k] = lo + np.searchsorted(cache.dates[lo:hi], cut, side="left")
    ticker = np.searchsorted(cache.offsets, starts, side="right") - 1
    bound = first_val_row[ticker]
    val = np.flatnonzero(starts >= bound)
    train = np.flatnonzero(starts + cache.window - 1 + embargo < bound)
    if len(train) == 0 or len(val) == 0:
        raise DataError(cache.path, None, f"walk-forward split left {len(train)} train and "
                        f"{len(val)} validation windows; need more days or another val_fraction")
    day = np.datetime64(cut, "D")
    return TrainValSplit(train, val, "walk_forward", embargo, str(day))


def shuffled(n_windows: int, val_fraction: float, seed: int) -> TrainValSplit:
    """A random split of window ids (flattering: see the module docstring)."""
    order = np.random.default_rng(seed).permutation(n_windows)
    n_val = max(1, int(round(val_fraction * n_windows)))
    return TrainValSplit(np.sort(order[n_val:]), np.sort(order[:n_val]), "shuffle")


def train_val_split(cache: WindowCache, config: Config,
               warn: Callable[[str], None] = print) -> TrainValSplit:
    """The split the config asks for."""
    if config.split.mode == "shuffle":
        warn(SHUFFLE_WARNING)
        return shuffled(len(cache), config.split.val_fraction, config.split.seed)
    return walk_forward(cache, config.split.val_fraction, config.embargo)
