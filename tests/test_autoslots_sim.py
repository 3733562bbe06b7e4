"""--slots auto end to end on a SIMULATED NVML (tests/simnvml): real sweeps, real trials.

Each trial (tests/programs/sim_gpu.py) holds --mb MB of simulated memory; the simulated
utilization grows with the memory the trials hold (``util_full_mb`` is 100 %). So the
number of trials auto reaches is known in advance: by utilization on a big GPU, by memory on
a small one, and fewer once another user's job takes memory mid-sweep.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, program
from simnvml import compose

pytestmark = pytest.mark.slow
WINDOW_S = 0.3


def auto_sweep(write_sweep, trials: int, mb: float, seconds: float, **isolation) -> Path:
    """Each trial holds ``mb`` and waits for the file ``go`` (see :func:`go_when_held`)
    before its ``seconds``, so the first ones are all still running when auto stops adding
    them, however slowly this machine starts a trial."""
    return write_sweep({
        "program": program("sim_gpu.py"), "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": list(range(trials))}, "mb": {"value": mb},
                       "seconds": {"value": seconds}, "touch_at_exit": {"value": "grow"},
                       "await_file": {"value": "go"}},
        "isolation": {"slots": "auto", "utilization_window_s": WINDOW_S,
                      "stop": {"grace_s": 1}, "wait": {"max_s": 5.0}, **isolation}})


def go_when_held(state: Path, count: int, settle_s: float = 3 * WINDOW_S) -> threading.Thread:
    """Touch ``go`` once ``count`` trials hold memory and no other has come for a while (or
    after 50 s: the trials give up waiting at 60 s, and the count then shows what auto did)."""

    def watch() -> None:
        deadline, since = time.monotonic() + 50, None
        while time.monotonic() < deadline:
            held = len(list((state / "alloc").glob("*.json"))) if (state / "alloc").is_dir() \
                else 0
            since = (since or time.monotonic()) if held >= count else None
            if since is not None and time.monotonic() - since >= settle_s:
                break
            time.sleep(0.05)
        (state / "go").touch()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def most_at_once(memories) -> int:
    assert all(m["beside"] is not None for m in memories)
    return 1 + max(m["beside"] for m in memories)


def test_auto_reaches_the_count_the_utilization_allows(tmp_path, write_sweep, run_sweep):
    # 1000 MB is 25 % of util_full_mb 4000: three trials are 75 % (< 85 %: one more), four
    # are 100 %: auto stops at four on a 40 GB GPU where memory would allow forty.
    scenario = compose.scenario(tmp_path, [compose.gpu(0)])
    go_when_held(Path(yaml.safe_load(scenario.read_text())["state_dir"]), 4)
    result = run_sweep(auto_sweep(write_sweep, 8, 1000, 1.0), env=compose.environ(scenario),
                       timeout=240)
    assert result.returncode == 0, result.proc.stderr
    memories = result.memories()
    assert all(m["status"] == "finished" for m in memories)
    assert most_at_once(memories) == 4


def test_auto_is_bounded_by_memory_and_backs_off_when_memory_runs_short(
        tmp_path, write_sweep, run_sweep):
    # 8000 MB, 300 used by the driver, 100 by a colleague: seven 1000 MB trials fit with
    # the 10 % margin (1600 MB free before the seventh), not eight; utilization never binds.
    scenario = compose.scenario(tmp_path, [compose.gpu(0, total_mb=8000.0,
                                                       util_full_mb=1e6)])
    state = Path(yaml.safe_load(scenario.read_text())["state_dir"])
    env = compose.environ(scenario)
    colleague = subprocess.Popen(
        [sys.executable, program("sim_colleague.py"), "--mb=100", "--then_mb=4100",
         "--when=grow", "--max_s=200"], cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (state / "colleague.ready").exists():
            assert colleague.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        # The first trial to end touches "grow": the colleague then holds 4100 MB, which
        # leaves room for three trials (3600 - 2000 >= 1100), not a fourth.
        go_when_held(state, 8)  # 7 trials and the colleague
        result = run_sweep(auto_sweep(write_sweep, 12, 1000, 2.0), env=env, timeout=300)
    finally:
        colleague.terminate()
        colleague.wait(timeout=30)
    assert result.returncode == 0, result.proc.stderr
    memories = result.memories()
    assert all(m["status"] == "finished" for m in memories)
    assert most_at_once(memories) == 7
    grown = (state / "grow.done").stat().st_mtime
    later = [m for m in memories if m["timeline"]["start"] > grown + 0.5]
    assert later and 1 + max(m["beside"] for m in later) <= 3
