"""SIMULATION: scenarios for the simulated NVML, built from small parts.

    scenario = compose.scenario(tmp_path, gpus=[compose.gpu(0, "Tesla T4")], pid_offset=10**6)
    env = compose.environ(scenario)   # for tools/sweep.py and the trials it starts

Every part is a plain dict (the JSON format is in :mod:`simnvml`'s docstring), so a test
changes any key it needs: ``compose.gpu(1, mig=[compose.mig(1, 0)], processes=[...])``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent


def uuid(index: int, prefix: str = "GPU") -> str:
    """A well-formed, distinct UUID per index (``GPU-5a1e0000-...``)."""
    return f"{prefix}-5a1e{index:04x}-0000-4000-8000-{index:012x}"


def gpu(index: int, name: str = "NVIDIA A100-SXM4-40GB", **keys: Any) -> dict[str, Any]:
    part = {"uuid": uuid(index), "name": name, "total_mb": 40960.0, "reserved_mb": 0.0,
            "base_used_mb": 300.0, "compute_capability": [8, 0], "util_full_mb": 4000.0,
            "idle_w": 50.0, "max_w": 400.0}
    part.update(keys)
    return part


def mig(gpu_index: int, slot: int, **keys: Any) -> dict[str, Any]:
    part = {"uuid": uuid(0x100 * (gpu_index + 1) + slot, "MIG"), "total_mb": 9728.0,
            "base_used_mb": 12.0, "gi": slot + 1, "ci": 0, "profile": "1g.10gb",
            "access": "ok"}
    part.update(keys)
    return part


def scenario(tmp_path: Path, gpus: list[dict[str, Any]], **keys: Any) -> Path:
    """Write the scenario file (and its state directory) under ``tmp_path``."""
    state = (tmp_path / "simgpu").resolve()
    state.mkdir(parents=True, exist_ok=True)
    data = {"state_dir": str(state), "driver": "550.54.15", "gpus": gpus}
    data.update(keys)
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def environ(scenario_path: Path, base: dict[str, str] | None = None,
            **extra: str) -> dict[str, str]:
    """The environment that selects the simulated NVML for a process and its trials.

    ``CUDA_VISIBLE_DEVICES`` is removed (every simulated GPU visible) unless given.
    """
    env = dict(os.environ if base is None else base)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    state = json.loads(Path(scenario_path).read_text())["state_dir"]
    env.update({
        "GPUSWEEP_NVML_MODULE": "simnvml",
        "GPUSWEEP_SIMNVML": str(scenario_path),
        "GPUSWEEP_DEVICE_DIR": os.path.join(state, "dev"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p),
    })
    env.update(extra)
    return env


def touch(scenario_path: Path, name: str) -> None:
    """Create a trigger file (a fault's ``when_file``)."""
    state = json.loads(Path(scenario_path).read_text())["state_dir"]
    Path(state, name).touch()
