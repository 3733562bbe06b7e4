"""Shared helpers: write a sweep file, run tools/sweep.py for real, read what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Trials started by tests run without W&B unless a test sets a mode itself (the W&B tests
# do): an offline run per trial would cost every sweep test seconds of wandb start-up.
os.environ.setdefault("WANDB_MODE", "disabled")


class SweepRun:
    """The outcome of one real ``tools/sweep.py`` invocation."""

    def __init__(self, proc: subprocess.CompletedProcess, log_dir: Path) -> None:
        self.proc = proc
        self.log_dir = log_dir

    @property
    def returncode(self) -> int:
        return self.proc.returncode

    @property
    def sweep_dir(self) -> Path:
        dirs = [p for p in self.log_dir.iterdir() if p.is_dir()]
        assert len(dirs) == 1, dirs
        return dirs[0]

    @property
    def sweep(self) -> dict:
        return yaml.safe_load((self.sweep_dir / "sweep.yaml").read_text())

    def memory(self, run: str) -> dict:
        return yaml.safe_load((self.sweep_dir / run / "memory.yaml").read_text())

    def memories(self) -> list[dict]:
        return [self.memory(row["run"]) for row in self.sweep["trials"]]


@pytest.fixture
def write_sweep(tmp_path):
    def write(config: dict, name: str = "sweep.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def run_sweep(tmp_path):
    """Run a sweep for real. W&B is off unless a test asks (``wandb_mode="offline"``): the
    W&B tests cover the runs, and an offline run per trial costs each test seconds."""

    def run(sweep_file: Path, *extra: str, timeout: float = 120,
            wandb_mode: str = "disabled") -> SweepRun:
        log_dir = tmp_path / "log"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "sweep.py"), "--sweep-config", str(sweep_file),
             "--log-dir", str(log_dir), "--quiet", *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ, WANDB_MODE=wandb_mode))
        result = SweepRun(proc, log_dir)
        if wandb_mode != "disabled":
            for sweep_dir in log_dir.iterdir() if log_dir.is_dir() else ():
                wait_for_summary(sweep_dir)
        return result

    return run


def wait_for_summary(sweep_dir: Path, timeout_s: float = 180) -> dict:
    """The detached summary subprocess's outcome once it is done ({} when none started)."""
    import time

    path = sweep_dir / "summary-run.yaml"
    deadline = time.monotonic() + timeout_s
    while path.exists() and time.monotonic() < deadline:
        outcome = yaml.safe_load(path.read_text()) or {}
        if outcome.get("state") in ("written", "failed"):
            return outcome
        time.sleep(0.1)
    if path.exists():
        raise AssertionError(f"the summary run of {sweep_dir} was not done in {timeout_s} s")
    return {}


def processes_with_token(tokens: set[str]) -> list[int]:
    """Pids of live processes carrying one of these trial tokens."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("GPUSWEEP_TRIAL_TOKEN") in tokens:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def resume_sweep(command: list[str], sweep_dir: Path) -> dict:
    """Run ``command --resume <id>`` to its end (exit 0 asserted); the sweep.yaml it leaves."""
    resumed = subprocess.run(command + ["--resume", sweep_dir.name], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    return yaml.safe_load((sweep_dir / "sweep.yaml").read_text())


def journal_tokens(sweep_dir: Path) -> set[str]:
    import json

    tokens = set()
    for line in (sweep_dir / "journal.jsonl").read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "start":
            tokens.add(entry["token"])
    return tokens


def program(name: str) -> str:
    """A well-behaved trial program under tests/programs/."""
    return os.path.join("tests", "programs", name)


def fault(name: str) -> str:
    """A trial program under tests/faults/ that fails in one specific way."""
    return os.path.join("tests", "faults", name)
