"""The data pipeline at a real market's scale: cache cold vs warm start, DataLoader workers.

1. Cold: build the memmap window cache of the synthetic market from scratch (1.6 million
   windows in the full run); warm: open it again. Each in its own process, so its peak RSS
   (ru_maxrss) is its own. Medians over repeats.
2. One epoch of the training loader with 0 and 2 workers: the growth of private memory
   (USS: pages no other process shares) of each worker, and of the main process, from the
   first batches to the last. Workers that copy the dataset (the copy-on-read leak, pytorch#13246)
   grow by its size; workers that read a memmap do not.

    python bench/data_pipeline.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bench_parser, emit, median  # noqa: E402

SIZES = {"quick": (200, 1500), "full": (1000, 1750)}  # tickers, days


def config_for(cache_dir: str, tickers: int, days: int):  # noqa: ANN201 - stockpred types
    from stockpred.config import load_config

    return load_config(str(ROOT / "configs" / "stock_gru.yml"), [
        ("data.cache_dir", cache_dir), ("data.tickers", str(tickers)),
        ("data.days", str(days))])


def phase_open(cache_dir: str, tickers: int, days: int) -> dict:
    """Open (or build) the cache once; runs in its own process."""
    from stockpred.cache import load_or_build

    started = time.perf_counter()
    cache, hit = load_or_build(config_for(cache_dir, tickers, days), log=lambda _: None)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "hit": hit, "windows": len(cache),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def phase_loader(cache_dir: str, tickers: int, days: int, workers: int) -> dict:
    """One epoch of the training loader; USS of the main process and of each worker."""
    import psutil
    import torch

    from stockpred.cache import WindowDataset, load_or_build, make_loader
    from stockpred.walkforward import train_val_split

    torch.set_num_threads(1)
    config = config_for(cache_dir, tickers, days)
    cache, _ = load_or_build(config, log=lambda _: None)
    split = train_val_split(cache, config, warn=lambda _: None)
    loader = make_loader(WindowDataset(cache, split.train), config.train.batch_size, True,
                         workers, seed=0)
    me = psutil.Process()

    def uss() -> dict[int, float]:
        procs = [me] + me.children()
        out = {}
        for proc in procs:
            try:
                out[proc.pid] = proc.memory_full_info().uss / 2**20
            except psutil.Error:
                pass
        return out

    batches = len(loader)
    first, last = {}, {}
    started = time.perf_counter()
    for i, (x, _y) in enumerate(loader):
        x.sum()  # touch the batch as training would
        if i == min(10, batches - 1):
            first = uss()
        if i == batches - 2:
            last = uss()
    seconds = time.perf_counter() - started
    growth = {pid: last.get(pid, first[pid]) - first[pid] for pid in first}
    main = growth.pop(me.pid, 0.0)
    return {"workers": workers, "batches": batches, "epoch_s": seconds,
            "main_uss_growth_mb": main,
            "worker_uss_growth_mb_max": max(growth.values()) if growth else None,
            "worker_uss_mb_end": max((last.get(p, 0.0) for p in growth), default=None)}


def run_phase(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--phase", *args], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, cache_dir, tickers, days, *rest = args.phase
        if name == "open":
            result = phase_open(cache_dir, int(tickers), int(days))
        else:
            result = phase_loader(cache_dir, int(tickers), int(days), int(rest[0]))
        print(json.dumps(result))
        return
    tickers, days = SIZES["quick" if args.quick else "full"]
    repeats = 2 if args.quick else 3
    cold, warm = [], []
    for _ in range(repeats):
        cache_dir = tempfile.mkdtemp(prefix="gpusweep-cache-")
        try:
            cold.append(run_phase("open", cache_dir, str(tickers), str(days)))
            warm.append(run_phase("open", cache_dir, str(tickers), str(days)))
            if len(cold) == 1:
                loaders = [run_phase("loader", cache_dir, str(tickers), str(days), str(w))
                           for w in (0, 2)]
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    assert not any(c["hit"] for c in cold) and all(w["hit"] for w in warm)
    cold_s, warm_s = median([c["seconds"] for c in cold]), median([w["seconds"] for w in warm])
    result = {
        "windows": cold[0]["windows"], "tickers": tickers, "days": days, "repeats": repeats,
        "cold_s": round(cold_s, 3), "warm_s": round(warm_s, 4),
        "warm_speedup": round(cold_s / warm_s, 1),
        "cold_peak_rss_mb": round(median([c["peak_rss_mb"] for c in cold]), 1),
        "warm_peak_rss_mb": round(median([w["peak_rss_mb"] for w in warm]), 1),
        "epoch_s_0_workers": round(loaders[0]["epoch_s"], 2),
        "epoch_s_2_workers": round(loaders[1]["epoch_s"], 2),
        "main_private_growth_mb_per_epoch_0_workers": round(loaders[0]["main_uss_growth_mb"], 1),
        "worker_private_growth_mb_per_epoch": round(loaders[1]["worker_uss_growth_mb_max"], 1),
        "worker_private_mb_end": round(loaders[1]["worker_uss_mb_end"], 1),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
