"""Shared helpers: write a sweep file, run tools/sweep.py for real, read what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Trials started by tests run without W&B unless a test sets a mode itself (the W&B tests
# do): an offline run per trial would cost every sweep test seconds of wandb start-up.
os.environ.setdefault("WANDB_MODE", "disabled")
# The tests assume no GPU (device "cpu", GPU figures null, no wait) unless marked gpu: on a
# GPU machine the GPU is hidden from them, as CUDA hides it, and from every process they
# start. The gpu tests get the machine's own value back through gpu_environ().
GPU_VISIBLE = os.environ.get("CUDA_VISIBLE_DEVICES")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
for _name in ("GPUSWEEP_NVML_MODULE", "GPUSWEEP_SIMNVML", "GPUSWEEP_DEVICE_DIR"):
    os.environ.pop(_name, None)  # only the simulation tests select the simulated NVML


def gpu_environ(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with the machine's GPUs visible again (for tests marked gpu)."""
    env = dict(os.environ if base is None else base)
    if GPU_VISIBLE is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = GPU_VISIBLE
    return env


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    """No CUDA context in pytest's own process outside tests marked gpu: it would hold
    memory on the device the GPU tests measure (their trials are subprocesses)."""
    torch = sys.modules.get("torch")
    if torch is None or item.get_closest_marker("gpu"):
        return
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and hasattr(cuda, "is_initialized") and cuda.is_initialized():
        pytest.fail(f"{item.nodeid} created a CUDA context in the pytest process",
                    pytrace=False)


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


@pytest.fixture(scope="session", autouse=True)
def no_trial_cgroup_left():
    """Trials get cgroups with unique names (``gpusweep-<sweep>-<run>``) where the machine
    delegates cgroup v2, and must remove them: none made during the tests may stay."""
    from gpusweep.process import cgroup

    base = cgroup.detect().base
    before = _empty_trial_cgroups(base)
    yield
    left = _empty_trial_cgroups(base) - before
    if left:  # a concurrent session's trial may be between its end and its rmdir
        time.sleep(1.0)
        left &= _empty_trial_cgroups(base)
    assert not left, f"trial cgroups left behind in {base}: {sorted(left)}"


def _empty_trial_cgroups(base: str | None) -> set[str]:
    if base is None:
        return set()
    found = set()
    for name in os.listdir(base):
        procs = Path(base, name, "cgroup.procs")
        if name.startswith("gpusweep-") and procs.exists() and not procs.read_text().strip():
            found.add(name)
    return found


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
    W&B tests cover the runs, and an offline run per trial costs each test seconds.
    ``env``: the sweep's whole environment (the simulated NVML's tests give theirs)."""

    def run(sweep_file: Path, *extra: str, timeout: float = 120,
            wandb_mode: str = "disabled", env: dict[str, str] | None = None) -> SweepRun:
        log_dir = tmp_path / "log"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "sweep.py"), "--sweep-config", str(sweep_file),
             "--log-dir", str(log_dir), "--quiet", *extra],
            cwd=ROOT, capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ if env is None else env, WANDB_MODE=wandb_mode))
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


def launchers_with_token(tokens: set[str]) -> list[int]:
    """Pids of the trials' launchers (process/reaper.py) among those carrying these tokens."""
    return [pid for pid in processes_with_token(tokens)
            if any(arg.endswith("reaper.py") for arg in _cmdline(pid))]


def wait_until_no_process(tokens: set[str], timeout_s: float) -> list[int]:
    """Poll until no process carries these tokens (or ``timeout_s`` passed); what is left."""
    deadline = time.monotonic() + timeout_s
    while (left := processes_with_token(tokens)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


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


def cuda_available() -> bool:
    """Whether torch sees CUDA with the machine's GPUs visible, asked in a subprocess so that
    pytest's own process never holds a CUDA context."""
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True, text=True, timeout=120, env=gpu_environ())
    return probe.stdout.strip() == "True"


@pytest.fixture
def gpu_check(monkeypatch):
    """tools/gpu_check.py as a module (it is a script, not part of a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cuda():
    """Skips the module's tests unless torch sees a CUDA GPU."""
    if not cuda_available():
        pytest.skip("needs a CUDA GPU")


def wait_for(predicate, timeout: float = 10.0, step_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return False


SLEEPER = program("sleeper.py")


def sleeper_sweep(parameters=None, **extra) -> dict:
    """A grid sweep of tests/programs/sleeper.py (two trials unless ``parameters`` say)."""
    config = {"program": SLEEPER, "method": "grid",
              "parameters": parameters or {"x": {"values": [1, 2]}}}
    config.update(extra)
    return config


def fault_sweep(program_file, args=(), parameters=None, **isolation) -> dict:
    """A grid sweep of one fault program with extra ``args``, a 1 s grace unless given."""
    isolation.setdefault("stop", {"grace_s": 1})
    return {
        "program": program_file,
        "command": ["${env}", "${interpreter}", "${program}", *args, "${args}"],
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": parameters or {"x": {"values": [1]}},
        "isolation": isolation,
    }
