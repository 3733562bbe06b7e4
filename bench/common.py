"""Shared by the benchmarks: medians, the machine, running a sweep, and the JSON line."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r" in [0-9.]+ s; records in (?P<dir>\S+)")


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def machine() -> dict[str, Any]:
    """CPU, cores, RAM and the GPU (through NVML, as the orchestrator sees it)."""
    import psutil

    from gpusweep.device import open_devices

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


def run_sweep(config: dict[str, Any], log_dir: str | None = None,
              extra: tuple[str, ...] = ()) -> tuple[float, Path]:
    """Run one sweep through tools/sweep.py; return (sweep wall seconds, sweep dir).

    The wall time is the orchestrator's own (from the start of its loop to its end: the CLI's
    import time is not part of any trial's cost).
    """
    log_dir = log_dir or tempfile.mkdtemp(prefix="gpusweep-bench-")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "sweep.py"), "--sweep-config",
                           handle.name, "--log-dir", log_dir, "--quiet", *extra],
                          cwd=ROOT, capture_output=True, text=True)
    os.unlink(handle.name)
    match = SUMMARY.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"sweep failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    sweep_dir = Path(match["dir"])
    header = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["sweep"]
    return float(header["wall_s"]), sweep_dir


def trial_records(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every trial's memory.yaml, in the order they ran."""
    sweep = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    return [yaml.load((sweep_dir / row["run"] / "memory.yaml").read_text(),
                      Loader=yaml.CSafeLoader) for row in sweep["trials"]]


def emit(result: dict[str, Any], as_json: bool) -> None:
    """Print a readable summary, and with --json one JSON object as the last line."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
