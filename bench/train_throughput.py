"""Training throughput of the stock model: samples/s per architecture and batch size.

The real pipeline: windows from the memmap cache through the training loader, the engine's
own train step (AdamW, grad clipping, L1). On a GPU also the GPU's busy percentage (NVML,
sampled while training) and AMP on vs off.

    python bench/train_throughput.py [--quick] [--json]
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, emit, median, stock_data  # noqa: E402


class UtilSampler:
    """The GPU's busy % every 100 ms while training runs (NVML, through gpusweep.gpu.device)."""

    def __init__(self) -> None:
        from gpusweep.gpu.visible import default_device

        self.device = default_device()
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            value = self.device.utilization()
            if value is not None:
                self.values.append(value)

    def __enter__(self) -> UtilSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(cache, split, config, arch: str, batch: int, amp: bool, steps: int,  # noqa: ANN001
            device) -> tuple[float, float | None]:  # noqa: ANN001
    import torch

    from stockpred import engine
    from stockpred.cache import WindowDataset, make_loader
    from stockpred.models import build_model

    model_config = config.model.__class__(**{**config.model.__dict__, "arch": arch})
    model = build_model(model_config, len(cache.feature_names)).to(device)
    optimizer = engine.make_optimizer(model, config.train)
    scheduler = engine.make_scheduler(optimizer, config.train, steps * 10)
    precision = engine.Precision(device, amp)
    loader = make_loader(WindowDataset(cache, split.train), batch, True, 0,
                         pin_memory=device.type == "cuda")
    warmup = list(itertools.islice(iter(loader), 3))
    engine.train_epoch(model, warmup, optimizer, scheduler, precision, 1.0)
    sampler = UtilSampler() if device.type == "cuda" else None
    started = time.perf_counter()
    if sampler:
        with sampler:
            engine.train_epoch(model, itertools.islice(iter(loader), steps), optimizer,
                               scheduler, precision, 1.0)
            torch.cuda.synchronize()
    else:
        engine.train_epoch(model, itertools.islice(iter(loader), steps), optimizer, scheduler,
                           precision, 1.0)
    seconds = time.perf_counter() - started
    util = median(sampler.values) if sampler and sampler.values else None
    return steps * batch / seconds, util


def main() -> None:
    parser = bench_parser(__doc__)
    args = parser.parse_args()
    import torch

    batches = (256, 1024) if args.quick else (128, 256, 1024, 4096)
    samples = 5_000 if args.quick else 20_000  # per measurement, whatever the batch size
    repeats = 2 if args.quick else 3
    with stock_data("gpusweep-train-") as (device, config, cache, split):
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        result: dict = {"device": str(device), "gpu": gpu, "threads": torch.get_num_threads(),
                        "samples_per_measurement": samples, "repeats": repeats}
        amps = (False, True) if device.type == "cuda" else (False,)
        for arch in ("gru", "lstm", "cnn_rnn"):
            for batch in batches:
                for amp in amps:
                    steps = max(5, samples // batch)
                    runs = [measure(cache, split, config, arch, batch, amp, steps, device)
                            for _ in range(repeats)]
                    name = f"{arch}_{batch}" + ("_amp" if amp else "")
                    result[f"samples_per_s_{name}"] = round(median([r[0] for r in runs]))
                    utils = [r[1] for r in runs if r[1] is not None]
                    if utils:
                        result[f"gpu_util_percent_{name}"] = round(median(utils), 1)
    emit(result, args.json)


if __name__ == "__main__":
    main()
