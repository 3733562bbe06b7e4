"""Windows built once, kept on disk as memory-mapped arrays, read by the DataLoader in place.

An in-process cache (a dict of raw data per key) grows until the OOM killer comes, and
DataLoader workers each copy the Python objects they touch, since reading a Python object
writes its reference count (pytorch issue 13246). Here nothing is held per window: one float32
matrix of every ticker's features (rows x features) plus, per window, its first row (int64) and
its target (float32), all ``.npy`` files opened with ``mmap_mode="r"``. A batch is one
fancy-index into the memmap, so workers share the page cache and host memory stays flat at any
size.

The directory name is the sha256 of everything the arrays depend on (the data files'
content, or the synthetic market's parameters, and the feature, window and target config),
never Python's ``hash()``. It is written to a temporary directory and renamed, so a reader
never sees half a cache and two trials building the same key at once both end up correct.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from stockpred import features as feats
from stockpred import target as tgt
from stockpred.data import DataError, common_columns, csv_files, ignored_note, load_market

if TYPE_CHECKING:
    from stockpred.config import Config, DataConfig

CACHE_VERSION = 2  # bump when features, target or cleaning code changes what is cached
ARRAYS = ("features", "dates", "offsets", "starts", "targets")


@dataclass(frozen=True)
class WindowCache:
    path: str
    features: np.ndarray  # (rows, F) float32 in [-1, 1], every ticker concatenated
    dates: np.ndarray  # (rows,) int32 days since 1970-01-01
    offsets: np.ndarray  # (tickers + 1,) int64: ticker k owns rows offsets[k]:offsets[k+1]
    starts: np.ndarray  # (windows,) int64 first row of each window
    targets: np.ndarray  # (windows,) float32 target of the window's last day
    meta: dict[str, Any]

    @property
    def window(self) -> int:
        return int(self.meta["window"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    def __len__(self) -> int:
        return len(self.starts)


def source_identity(data: DataConfig) -> dict[str, Any]:
    """What the raw data is: the synthetic market's parameters or each file's sha256."""
    if data.source == "synthetic":
        return {"synthetic": [data.tickers, data.days, data.seed, data.signal]}
    files = []
    for path in csv_files(data.dir):
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:  # a directory named X.csv, no permission
            raise DataError(path, None, f"cannot read: {exc.strerror or exc}") from None
        files.append([os.path.basename(path), os.path.getsize(path), digest.hexdigest()])
    return {"csv": files}


def cache_key(config: Config) -> str:
    """sha256 over the data's identity and the feature, window and target config."""
    payload = {
        "version": CACHE_VERSION,
        "source": source_identity(config.data),
        "adjust_splits": config.data.adjust_splits,
        "features": {"names": list(config.features.names),
                     "clip": {k: list(v) for k, v in sorted(config.features.clip.items())}},
        "window": config.features.window,
        "target": dataclasses.asdict(config.target),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def load_or_build(config: Config,
                  log: Callable[[str], None] = print) -> tuple[WindowCache, bool]:
    """The cache for ``config``: opened if it exists (hit), else built first (miss)."""
    key = cache_key(config)
    path = os.path.join(config.data.cache_dir, key[:24])
    if os.path.exists(os.path.join(path, "meta.json")):
        cache = open_cache(path)
        if cache.meta.get("key") == key:
            return cache, True
    os.makedirs(config.data.cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=config.data.cache_dir)
    try:
        build(config, tmp, key, log)
        try:
            os.rename(tmp, path)
        except OSError:  # another process finished the same key first: theirs is as good
            if not os.path.exists(os.path.join(path, "meta.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return open_cache(path), False


def open_cache(path: str) -> WindowCache:
    with open(os.path.join(path, "meta.json"), encoding="utf-8") as handle:
        meta = json.load(handle)
    arrays = {name: np.load(os.path.join(path, f"{name}.npy"), mmap_mode="r") for name in ARRAYS}
    return WindowCache(path=path, meta=meta, **arrays)


def build(config: Config, out: str, key: str, log: Callable[[str], None]) -> None:
    """Load and clean the data, compute features and targets, write the arrays to ``out``."""
    started = time.monotonic()
    tickers = load_market(config.data)
    notes = _describe(tickers, config.data.adjust_splits)
    ignored = ignored_note(config.data.dir) if config.data.source == "csv" else None
    if ignored:
        notes.append(ignored)
    names, dropped, skip, usable = choose(tickers, config)
    kept = {id(t) for t in usable}
    short = [t for t in tickers if id(t) not in kept]
    if short:
        notes.append(f"{len(short)} tickers skipped, fewer than "
                     f"{skip + config.features.window + config.target.horizon} usable rows: "
                     f"{_first(t.source or t.name for t in short)}")
    if dropped:
        missing = "; ".join(f"{n} (needs {', '.join(c)})" for n, c in dropped.items())
        lacking = [t.source or t.name for t in usable
                   if any(c not in t.frame for cols in dropped.values() for c in cols)]
        notes.append(f"features dropped, columns missing in some files: {missing}; "
                     f"files: {_first(lacking)}")
    window = config.features.window
    sizes = [len(t.frame) - skip for t in usable]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    matrix = np.lib.format.open_memmap(os.path.join(out, "features.npy"), mode="w+",
                                       dtype=np.float32, shape=(int(offsets[-1]), len(names)))
    dates = np.empty(int(offsets[-1]), dtype=np.int32)
    starts, targets, filled = [], [], 0
    for k, ticker in enumerate(usable):
        lo, hi = int(offsets[k]), int(offsets[k + 1])
        x = feats.compute(ticker.frame, names, config.features.clip)[skip:]
        filled += int(np.isnan(x).sum())
        matrix[lo:hi] = np.nan_to_num(x, nan=0.0)
        dates[lo:hi] = ticker.frame["date"].to_numpy("datetime64[D]").astype(np.int64)[skip:]
        c = config.target
        y = tgt.compute(ticker.frame["close"], c.horizon, c.vol_window, c.min_vol)[skip:]
        last = np.arange(window - 1, hi - lo)  # a window's last row, local to the ticker
        ok = np.isfinite(y[last])
        starts.append(lo + last[ok] - (window - 1))
        targets.append(y[last[ok]])
    matrix.flush()
    del matrix
    if filled:
        notes.append(f"{filled} undefined feature values after warm-up set to 0 (flat prices)")
    arrays = {"dates": dates, "offsets": offsets, "starts": np.concatenate(starts),
              "targets": np.concatenate(targets).astype(np.float32)}
    for name, array in arrays.items():
        np.save(os.path.join(out, f"{name}.npy"), array)
    meta = {"key": key, "window": window, "feature_names": names, "dropped": dropped,
            "tickers": [t.name for t in usable], "rows": int(offsets[-1]),
            "windows": int(len(arrays["starts"])), "notes": notes,
            "build_seconds": round(time.monotonic() - started, 2)}
    with open(os.path.join(out, "meta.json"), "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=1)


def choose(tickers: list, config: Config) -> tuple[list[str], dict, int, list]:
    """Features, dropped features, warm-up rows and the tickers long enough to use.

    Only usable tickers decide which columns are common, so a short or empty file does not
    remove features from every other ticker. Dropping a ticker can only add columns, hence
    features and warm-up, hence drop more tickers: repeat until nothing changes.
    """
    need = config.features.window + config.target.horizon
    usable = [t for t in tickers if len(t.frame)]
    while True:
        names, dropped = feats.select(config.features.names, common_columns(usable))
        if not names:
            raise DataError(config.data.dir or "data", None, "no feature can be computed")
        skip = max(feats.warmup(names), config.target.vol_window)
        keep = [t for t in usable if len(t.frame) - skip >= need]
        if not keep:
            raise DataError(config.data.dir or "data", None, "no ticker has enough rows "
                            f"({skip + need} needed after cleaning)")
        if len(keep) == len(usable):
            return names, dropped, skip, usable
        usable = keep


def _first(names, shown: int = 5) -> str:
    """At most ``shown`` names, then how many more."""
    names = list(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _describe(tickers: list, adjusted: bool) -> list[str]:
    """Cleaning counts and split findings, one line each, so nothing is silent."""
    notes = []
    changed = [t for t in tickers if t.report.total()]
    if changed:
        shown = "; ".join(f"{t.name}: {t.report}" for t in changed[:8])
        more = f"; and {len(changed) - 8} more" if len(changed) > 8 else ""
        notes.append(f"cleaning changed {len(changed)} of {len(tickers)} files: {shown}{more}")
    found = [(t.name, s) for t in tickers for s in t.splits]
    if found:
        shown = ", ".join(f"{n} {s.date} {s.label}" for n, s in found[:8])
        more = f" and {len(found) - 8} more" if len(found) > 8 else ""
        action = "back-adjusted" if adjusted else "NOT adjusted (data.adjust_splits: false)"
        notes.append(f"suspected splits {action}: {shown}{more}")
        blind = sorted({n for n, _ in found} & {t.name for t in tickers
                                                 if "high" not in t.frame or "low" not in t.frame})
        if blind:  # without the day's range a crash to half looks exactly like a 2:1 split
            notes.append(f"split detection without High/Low cannot tell a crash from a split "
                         f"in {_first(blind)}: check them with inspect, or set "
                         "data.adjust_splits: false")
    return notes


class WindowDataset(Dataset):
    """Batches of windows read straight from the memmap; index with a list of window ids.

    Holds only numpy arrays (no Python object per window), so forked workers never copy it;
    pickled (spawn or forkserver workers) it carries the memmap's path, not its contents.
    """

    def __init__(self, cache: WindowCache, windows: np.ndarray) -> None:
        self.path = os.path.join(cache.path, "features.npy")
        self.features = cache.features
        self.starts = np.ascontiguousarray(cache.starts[windows])
        self.targets = np.ascontiguousarray(cache.targets[windows])
        self.steps = np.arange(cache.window, dtype=np.int64)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "features"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.features = np.load(self.path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.asarray(batch, dtype=np.int64)
        rows = self.starts[index][:, None] + self.steps  # (B, window) row numbers
        return torch.from_numpy(self.features[rows]), torch.from_numpy(self.targets[index])


def make_loader(dataset: WindowDataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                seed: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader that fetches whole batches with one memmap read each."""
    if shuffle:
        order = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        order = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(order, batch_size, False),
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=False)
