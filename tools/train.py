#!/usr/bin/env python
"""Train the stock model: ``python tools/train.py --config_file FILE --output_dir DIR [--a.b=v]``.

Reads top to bottom: config, device, data (cached windows), split, loaders, model, loop
(train, evaluate, report, checkpoint, early stop), result. ``--section.key=value`` overrides
are W&B's ``${args}`` form, so sweeps set any config key. ``--output_dir`` defaults to the
trial directory the sweep orchestrator gives (``$GPUSWEEP_TRIAL_DIR``), else ``out/``.

Exit 2 with one line on stderr for a bad config, override or data file; no traceback.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gpusweep import trial  # noqa: E402
from gpusweep.records.atomic import write_yaml  # noqa: E402
from stockpred import devicebatches, engine  # noqa: E402
from stockpred.cache import WindowDataset, load_or_build, make_loader  # noqa: E402
from stockpred.config import (  # noqa: E402
    Config,
    ConfigError,
    load_config,
    parse_overrides,
    to_dict,
)
from stockpred.data import DataError  # noqa: E402
from stockpred.models import build_model  # noqa: E402
from stockpred.walkforward import train_val_split  # noqa: E402

EXIT_BAD_INPUT = 2


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="tools/train.py", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("--config_file", required=True, metavar="FILE")
    parser.add_argument("--output_dir", metavar="DIR",
                        default=os.environ.get(trial.TRIAL_DIR_ENV) or "out")
    return parser.parse_known_args(argv)


def say(message: str) -> None:
    print(message, flush=True)


def train(config: Config, output_dir: str) -> dict:
    # -- device ------------------------------------------------------------------------------
    device = engine.pick_device(config.train.device)
    torch.set_num_threads(engine.cpu_threads(config.train.threads, config.train.num_workers))
    torch.manual_seed(config.train.seed)
    precision = engine.Precision(device, config.train.amp)
    say(f"device {device}, {torch.get_num_threads()} threads"
        + (f", amp {precision.dtype}" if precision.enabled else ""))

    # -- data: windows built once, cached as memmaps ---------------------------------------
    started = time.monotonic()
    cache, hit = load_or_build(config, say)
    for note in cache.meta["notes"]:
        say(note)
    say(f"data: {len(cache.meta['tickers'])} tickers, {cache.meta['rows']} rows, "
        f"{len(cache)} windows of {cache.window} days x {len(cache.feature_names)} features; "
        f"cache {'hit' if hit else 'built'} in {time.monotonic() - started:.2f}s "
        f"({cache.path})")

    # -- split and loaders ---------------------------------------------------------------------
    split = train_val_split(cache, config, warn=lambda m: print(m, file=sys.stderr, flush=True))
    say(f"split: {split.summary()}")
    baseline = float(np.median(cache.targets[split.train]))
    baseline_mae = float(np.mean(np.abs(cache.targets[split.val] - baseline)))
    on_device = devicebatches.wanted(config.train.data_on_device, device,
                                     cache.features.nbytes)
    if on_device:  # the whole feature matrix on the device once; batches gathered there
        matrix = devicebatches.to_device(cache.features, device)
        train_loader = devicebatches.DeviceBatches(
            matrix, cache.starts[split.train], cache.targets[split.train], cache.window,
            config.train.batch_size, True, config.train.seed)
        val_loader = devicebatches.DeviceBatches(
            matrix, cache.starts[split.val], cache.targets[split.val], cache.window,
            config.train.batch_size * 4, False)
    else:  # batches read from the memmap (host memory stays flat at any size)
        pin = device.type == "cuda"
        workers = config.train.num_workers
        train_loader = make_loader(WindowDataset(cache, split.train), config.train.batch_size,
                                   True, workers, config.train.seed, pin)
        val_loader = make_loader(WindowDataset(cache, split.val), config.train.batch_size * 4,
                                 False, workers, pin_memory=pin)
    say(f"batches: {'gathered on ' + str(device) if on_device else 'memmap loader'} "
        f"(feature matrix {cache.features.nbytes / 2**20:.1f} MB)")

    # -- model and optimizer ---------------------------------------------------------------
    model = build_model(config.model, len(cache.feature_names)).to(device)
    optimizer = engine.make_optimizer(model, config.train)
    total_steps = config.train.epochs * len(train_loader)
    scheduler = engine.make_scheduler(optimizer, config.train, total_steps)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"model {config.model.arch}: {n_params} parameters, {total_steps} steps")

    # -- the loop: one report per epoch (Hyperband's unit) ------------------------------------
    # result.yaml is rewritten (atomically) every epoch, so a trial that Hyperband stops
    # still leaves its record; "finished" says whether the loop ran to its end.
    os.makedirs(output_dir, exist_ok=True)
    checkpoint = os.path.join(output_dir, "best.pt")
    result_path = os.path.join(output_dir, "result.yaml")
    result = {
        "val_mae": None, "baseline_mae": baseline_mae, "best_epoch": None, "epochs": 0,
        "train_seconds": 0.0, "peak_gpu_mb": None, "peak_rss_mb": None, "finished": False,
        "device": str(device), "data_on_device": on_device,
        "data": {"tickers": len(cache.meta["tickers"]), "rows": cache.meta["rows"],
                 "windows": len(cache), "features": cache.feature_names,
                 "cache": {"path": cache.path, "hit": hit}, "split": split.summary()},
        "config": to_dict(config),
    }
    stopper = engine.EarlyStopping(config.train.patience)
    peak_gpu, train_start = None, time.monotonic()
    for epoch in range(config.train.epochs):
        engine.reset_gpu_peak(device)
        t0 = time.monotonic()
        train_mae = engine.train_epoch(model, train_loader, optimizer, scheduler, precision,
                                       config.train.grad_clip)
        val_mae = engine.evaluate(model, val_loader, precision)
        lr = scheduler.get_last_lr()[0]
        epoch_gpu = engine.gpu_peak_mb(device)
        if epoch_gpu is not None:
            peak_gpu = max(peak_gpu or 0.0, epoch_gpu)
        trial.report(step=epoch, val_mae=val_mae, train_mae=train_mae,
                     baseline_mae=baseline_mae, lr=lr)
        if stopper.update(epoch, val_mae):
            engine.save_checkpoint(checkpoint, {
                "model": model.state_dict(), "epoch": epoch, "val_mae": val_mae,
                "feature_names": cache.feature_names, "config": to_dict(config)})
        result.update({
            "val_mae": stopper.best, "best_epoch": stopper.best_epoch, "epochs": epoch + 1,
            "train_seconds": round(time.monotonic() - train_start, 2),
            "peak_gpu_mb": None if peak_gpu is None else round(peak_gpu, 1),
            "peak_rss_mb": round(engine.peak_rss_mb(), 1)})
        write_yaml(result_path, result)
        say(f"epoch {epoch} ({epoch + 1}/{config.train.epochs}) train_mae {train_mae:.4f} "
            f"val_mae {val_mae:.4f} baseline_mae {baseline_mae:.4f} lr {lr:.2e} "
            f"{time.monotonic() - t0:.1f}s rss {engine.rss_mb():.0f}MB"
            + (f" gpu_peak {epoch_gpu:.0f}MB" if epoch_gpu is not None else ""))
        if stopper.should_stop:
            say(f"early stop: no better val_mae for {config.train.patience} epochs")
            break

    # -- result -----------------------------------------------------------------------------
    result["finished"] = True
    write_yaml(result_path, result)
    say(f"result: val_mae {result['val_mae']:.4f} baseline_mae {baseline_mae:.4f} "
        f"best_epoch {result['best_epoch']} epochs {result['epochs']} -> {result_path}")
    return result


def main(argv: list[str] | None = None) -> int:
    args, rest = parse_args(argv)
    try:
        config = load_config(args.config_file, parse_overrides(rest))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with trial.session():
            train(config, args.output_dir)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
