"""The window cache: a hit is reused, any config or data change misses, batches are exact."""

import os
import pickle

import numpy as np
import pytest

from stockpred import cache as cache_mod
from stockpred import features
from stockpred.cache import WindowDataset, cache_key, load_or_build, make_loader
from stockpred.config import Config, replace
from stockpred.synthetic import write_csvs


def tiny(tmp_path, **data):
    config = Config()
    config = replace(config, data={"tickers": 4, "days": 200, "cache_dir": str(tmp_path / "c"),
                                   **data}, features={"window": 10})
    return config


def test_second_load_is_a_hit_on_the_same_files(tmp_path, monkeypatch):
    config = tiny(tmp_path)
    first, hit1 = load_or_build(config, log=lambda m: None)
    calls = []
    monkeypatch.setattr(cache_mod, "build", lambda *a, **k: calls.append(a))
    second, hit2 = load_or_build(config, log=lambda m: None)
    assert (hit1, hit2) == (False, True) and calls == []
    assert second.path == first.path
    assert isinstance(second.features, np.memmap) and isinstance(second.starts, np.memmap)
    np.testing.assert_array_equal(first.targets, second.targets)
    assert os.listdir(tmp_path / "c") == [os.path.basename(first.path)]  # no temp dir left


@pytest.mark.parametrize("section, change", [
    ("features", {"window": 12}),
    ("features", {"names": ["close", "ma_5"]}),
    ("features", {"clip": {"close": [-0.1, 0.1]}}),
    ("target", {"horizon": 3}),
    ("target", {"vol_window": 30}),
    ("data", {"seed": 1}),
    ("data", {"adjust_splits": False}),
])
def test_a_config_change_misses(tmp_path, section, change):
    config = tiny(tmp_path)
    base, _ = load_or_build(config, log=lambda m: None)
    changed = replace(config, **{section: change})
    other, hit = load_or_build(changed, log=lambda m: None)
    assert not hit and other.path != base.path


def test_key_ignores_where_the_cache_lives_and_is_stable(tmp_path):
    a = tiny(tmp_path)
    b = replace(a, data={"cache_dir": "/elsewhere"})
    assert cache_key(a) == cache_key(b) == cache_key(tiny(tmp_path))
    assert len(cache_key(a)) == 64


def test_csv_content_change_misses(tmp_path):
    write_csvs(str(tmp_path / "csv"), 3, 150, seed=0)
    config = replace(tiny(tmp_path), data={"source": "csv", "dir": str(tmp_path / "csv")})
    key = cache_key(config)
    path = tmp_path / "csv" / "SYN0001.csv"
    text = path.read_text()
    path.write_text(text)  # rewritten: new mtime, same bytes
    assert cache_key(config) == key
    lines = text.splitlines()
    lines[50] = lines[50].replace(lines[50].split(",")[4], "99.0", 1)
    path.write_text("\n".join(lines) + "\n")
    assert cache_key(config) != key


def test_batches_are_the_windows_features_and_targets(tmp_path):
    config = tiny(tmp_path)
    cache, _ = load_or_build(config, log=lambda m: None)
    ids = np.arange(0, len(cache), 7)
    dataset = WindowDataset(cache, ids)
    loader = make_loader(dataset, batch_size=5, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == (5, 10, len(features.FEATURES)) and x.dtype.is_floating_point
    for b in range(5):
        start = int(cache.starts[ids[b]])
        np.testing.assert_array_equal(x[b].numpy(), cache.features[start:start + 10])
        assert y[b].item() == cache.targets[ids[b]]
    assert sum(len(bx) for bx, _ in loader) == len(ids)


def test_windows_never_cross_tickers_and_targets_are_finite(tmp_path):
    cache, _ = load_or_build(tiny(tmp_path), log=lambda m: None)
    ticker_first = np.searchsorted(cache.offsets, cache.starts, side="right") - 1
    ticker_last = np.searchsorted(cache.offsets, cache.starts + cache.window - 1, "right") - 1
    assert (ticker_first == ticker_last).all()
    assert np.isfinite(cache.targets).all()
    assert ((cache.targets > 0) & (cache.targets < 1)).all()


def test_close_only_csvs_train_without_open_high_low_volume(tmp_path):
    write_csvs(str(tmp_path / "csv"), 3, 150, seed=0)
    for name in os.listdir(tmp_path / "csv"):
        path = tmp_path / "csv" / name
        rows = [line.split(",") for line in path.read_text().splitlines()]
        path.write_text("\n".join(f"{r[0]},{r[4]}" for r in rows) + "\n")
    notes = []
    config = replace(tiny(tmp_path), data={"source": "csv", "dir": str(tmp_path / "csv")})
    cache, _ = load_or_build(config, log=notes.append)
    assert "open" not in cache.feature_names and "close" in cache.feature_names
    dropped = [n for n in cache.meta["notes"] if n.startswith("features dropped")]
    assert dropped and "atr_14 (needs high, low)" in dropped[0]


def test_a_pickled_dataset_carries_the_memmap_path_not_its_contents(tmp_path):
    cache, _ = load_or_build(tiny(tmp_path), log=lambda m: None)
    dataset = WindowDataset(cache, np.arange(len(cache)))
    blob = pickle.dumps(dataset)
    assert len(blob) < cache.features.nbytes / 4
    copy = pickle.loads(blob)
    assert isinstance(copy.features, np.memmap)
    for a, b in zip(dataset[[0, 5, 9]], copy[[0, 5, 9]], strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_loader_workers_read_the_same_batches(tmp_path):
    cache, _ = load_or_build(tiny(tmp_path), log=lambda m: None)
    dataset = WindowDataset(cache, np.arange(len(cache)))
    plain = [y for _, y in make_loader(dataset, 64, shuffle=False)]
    workers = [y for _, y in make_loader(dataset, 64, shuffle=False, num_workers=2)]
    assert len(plain) == len(workers)
    for a, b in zip(plain, workers, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_skipped_short_file_removes_no_feature_from_the_others(tmp_path):
    csv = tmp_path / "csv"
    write_csvs(str(csv), 3, 150, seed=0)
    (csv / "TINY.csv").write_text("Date,Close\n2020-01-02,5\n2020-01-03,6\n")
    (csv / "EMPTY.csv").write_text("Date,Close\n")
    (csv / "README.txt").write_text("where these prices come from\n")
    config = replace(tiny(tmp_path), data={"source": "csv", "dir": str(csv)})
    cache, _ = load_or_build(config, log=lambda m: None)
    assert cache.feature_names == list(features.FEATURES)  # atr_14, volume... all kept
    assert cache.meta["tickers"] == ["SYN0000", "SYN0001", "SYN0002"]
    (skipped,) = [n for n in cache.meta["notes"] if "tickers skipped" in n]
    assert skipped.startswith("2 tickers skipped") and "EMPTY.csv, TINY.csv" in skipped
    assert not [n for n in cache.meta["notes"] if n.startswith("features dropped")]
    assert "1 files ignored (not .csv or .tsv): README.txt" in cache.meta["notes"]


def test_dropped_features_name_the_files_missing_columns(tmp_path):
    csv = tmp_path / "csv"
    write_csvs(str(csv), 8, 150, seed=0)
    for k in range(7):  # seven files lose everything but Date and Close
        path = csv / f"SYN{k:04d}.csv"
        rows = [line.split(",") for line in path.read_text().splitlines()]
        path.write_text("\n".join(f"{r[0]},{r[4]}" for r in rows) + "\n")
    config = replace(tiny(tmp_path), data={"source": "csv", "dir": str(csv)})
    cache, _ = load_or_build(config, log=lambda m: None)
    (dropped,) = [n for n in cache.meta["notes"] if n.startswith("features dropped")]
    assert dropped.endswith("files: SYN0000.csv, SYN0001.csv, SYN0002.csv, SYN0003.csv, "
                            "SYN0004.csv and 2 more")


def test_splits_found_in_close_only_files_come_with_a_warning(tmp_path):
    csv = tmp_path / "csv"
    write_csvs(str(csv), 2, 150, seed=0)
    path = csv / "SYN0000.csv"
    rows = [line.split(",") for line in path.read_text().splitlines()]
    body = [[r[0], str(float(r[4]) / (2.0 if i >= 100 else 1.0))] for i, r in enumerate(rows[1:])]
    path.write_text("Date,Close\n" + "".join(f"{d},{c}\n" for d, c in body))  # a -50% day
    config = replace(tiny(tmp_path), data={"source": "csv", "dir": str(csv)})
    cache, _ = load_or_build(config, log=lambda m: None)
    (warning,) = [n for n in cache.meta["notes"] if "cannot tell a crash" in n]
    assert "in SYN0000:" in warning and "data.adjust_splits: false" in warning
