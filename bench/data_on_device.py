"""The stock model's two batch paths: the memmap loader vs the matrix moved to the device.

For each batch size: samples/s of the batches alone (fetching them, on the device) and of
whole training steps (the engine's own step, default GRU), on the memmap loader
(``train.data_on_device: never``) and on batches gathered from the feature matrix moved to
the device once (``always``). On a CPU the device path is an in-memory tensor; on a GPU it
is the GPU's memory (``auto`` picks it there when the matrix fits). Medians over repeats.

    python bench/data_on_device.py [--quick] [--json]
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, emit, median, stock_data  # noqa: E402


def batches(cache, split, device, path: str, batch: int):  # noqa: ANN001, ANN201
    from stockpred import devicebatches
    from stockpred.cache import WindowDataset, make_loader

    if path == "device":
        matrix = devicebatches.to_device(cache.features, device)
        return devicebatches.DeviceBatches(matrix, cache.starts[split.train],
                                           cache.targets[split.train], cache.window, batch,
                                           True, 0)
    return make_loader(WindowDataset(cache, split.train), batch, True, 0, 0,
                       pin_memory=device.type == "cuda")


def fetch_rate(loader, device, steps: int, batch: int) -> float:  # noqa: ANN001
    """Samples/s of the batches alone, landed on the device."""
    import torch

    started = time.perf_counter()
    for x, y in itertools.islice(iter(loader), steps):
        x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def train_rate(cache, config, loader, device, steps: int, batch: int) -> float:  # noqa: ANN001
    """Samples/s of whole training steps (forward, backward, AdamW)."""
    import torch

    from stockpred import engine
    from stockpred.models import build_model

    model = build_model(config.model, len(cache.feature_names)).to(device)
    optimizer = engine.make_optimizer(model, config.train)
    scheduler = engine.make_scheduler(optimizer, config.train, steps * 10)
    precision = engine.Precision(device, config.train.amp)
    engine.train_epoch(model, itertools.islice(iter(loader), 3), optimizer, scheduler,
                       precision, 1.0)  # warm-up
    started = time.perf_counter()
    engine.train_epoch(model, itertools.islice(iter(loader), steps), optimizer, scheduler,
                       precision, 1.0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    import torch

    sizes = (256, 1024) if args.quick else (256, 1024, 4096)
    samples = 8_000 if args.quick else 40_000
    repeats = 3 if args.quick else 5
    with stock_data("gpusweep-ondevice-") as (device, config, cache, split):
        result: dict = {
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "threads": torch.get_num_threads(), "repeats": repeats,
            "feature_matrix_mb": round(cache.features.nbytes / 2**20, 1),
            "windows": len(split.train)}
        table: dict = {}
        for batch in sizes:
            steps = max(5, samples // batch)
            row: dict = {}
            for path in ("memmap", "device"):
                loader = batches(cache, split, device, path, batch)
                row[f"fetch_{path}"] = round(median(
                    [fetch_rate(loader, device, steps, batch) for _ in range(repeats)]))
                row[f"train_{path}"] = round(median(
                    [train_rate(cache, config, loader, device, steps, batch)
                     for _ in range(repeats)]))
            row["fetch_ratio"] = round(row["fetch_device"] / row["fetch_memmap"], 2)
            row["train_ratio"] = round(row["train_device"] / row["train_memmap"], 2)
            table[f"batch {batch}"] = row
        result["samples_per_s"] = table
    emit(result, args.json)


if __name__ == "__main__":
    main()
