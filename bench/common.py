"""Shared by the benchmarks: the command line, medians, the machine, running a sweep, the JSON
line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from gpusweep.records import TrialRecord
from gpusweep.records.reader import load_sweep_dir, read_header

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r" in [0-9.]+ s; records in (?P<dir>\S+)")


def bench_parser(doc: str | None, quick_help: str | None = None,
                 counts: bool = False) -> argparse.ArgumentParser:
    """Every benchmark's ``--quick`` and ``--json`` (and ``--trials``/``--repeats`` with
    ``counts``), described by the first line of its docstring."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", action="store_true")
    if counts:
        parser.add_argument("--trials", type=int)
        parser.add_argument("--repeats", type=int)
    return parser


class StockData(NamedTuple):
    device: Any  # torch.device
    config: Any  # stockpred.config.Config
    cache: Any
    split: Any


@contextlib.contextmanager
def stock_data(prefix: str) -> Iterator[StockData]:
    """The stock model's device (every core on CPU) and its default config's data, built in a
    temporary cache directory that is removed afterwards."""
    import torch

    from stockpred import engine
    from stockpred.cache import load_or_build
    from stockpred.config import load_config
    from stockpred.walkforward import train_val_split

    device = engine.pick_device("auto")
    if device.type == "cpu":
        torch.set_num_threads(engine.cpu_threads(0, 0))
    cache_dir = tempfile.mkdtemp(prefix=prefix)
    try:
        config = load_config(str(ROOT / "configs" / "stock_gru.yml"),
                             [("data.cache_dir", cache_dir)])
        cache, _ = load_or_build(config, log=lambda _: None)
        yield StockData(device, config, cache, train_val_split(cache, config, warn=lambda _: None))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def machine() -> dict[str, Any]:
    """CPU, cores, RAM and the GPU (through NVML, as the orchestrator sees it)."""
    import psutil

    from gpusweep.gpu.scan import open_devices

    gpus = [d.info.name for d in open_devices()]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(
        psutil.virtual_memory().total / 2**30, 1), "gpu": ", ".join(gpus) or None,
        "python": platform.python_version()}


class Sweep(NamedTuple):
    wall_s: float  # the orchestrator's loop, from the first trial's launch to its end
    sweep_dir: Path
    command_s: float  # the whole command, start-up (imports, engine) and exit included
    launched: float  # unix time the command was started (start-up = first trial's start - it)


def first_gpu() -> str | None:
    """The name of the GPU a sweep uses by default (the first one), or None on a CPU machine."""
    from gpusweep.gpu.scan import open_devices

    devices = open_devices()
    return devices[0].info.name if devices else None


def run_sweep(config: dict[str, Any], log_dir: str | None = None,
              extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Sweep:
    """Run one sweep through tools/sweep.py; its loop's wall time and the whole command's.

    The loop's wall time (sweep.yaml's ``wall_s``) leaves out the CLI's start-up, which is
    paid once per sweep and is no trial's cost; ``command_s`` is timed around the subprocess.
    """
    log_dir = log_dir or tempfile.mkdtemp(prefix="gpusweep-bench-")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    launched, started = time.time(), time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "sweep.py"), "--sweep-config",
                           handle.name, "--log-dir", log_dir, "--quiet", *extra],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    command_s = time.perf_counter() - started
    os.unlink(handle.name)
    match = SUMMARY.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"sweep failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    sweep_dir = Path(match["dir"])
    header = read_header(str(sweep_dir))
    if header is None or header.wall_s is None:
        raise RuntimeError(f"{sweep_dir}: sweep.yaml has no wall_s")
    return Sweep(float(header.wall_s), sweep_dir, command_s, launched)


def trial_records(sweep_dir: Path) -> list[TrialRecord]:
    """Every trial's memory.yaml, in sweep.yaml's order, through the records' reader; one
    that is missing or unreadable is an error, never a shorter list."""
    data = load_sweep_dir(str(sweep_dir), samples=False, command="bench")
    problems = [f"{row.run}: {row.record_problem}" for row in data.rows if row.record is None]
    if problems:
        raise RuntimeError(f"{sweep_dir}: {'; '.join(problems)}")
    return data.records


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print a readable summary, and with --json one JSON object as the last line."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
