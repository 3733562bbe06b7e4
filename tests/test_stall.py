"""The stall rule through tools/sweep.py, for real: what it catches and what it never takes
for a stall.

A trial is ``stalled`` when nothing in its whole tree reported, used CPU or showed GPU
activity for ``isolation.stall_s``. The GPU cases run on the SIMULATED NVML (tests/simnvml),
where a process holds device memory either running work on it (the device busy) or not (a
dead trial's context: 0 %).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import fault, journal_tokens, processes_with_token
from conftest import fault_sweep as sweep
from simnvml import compose

pytestmark = pytest.mark.slow


def nothing_left(result):
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []


@pytest.mark.parametrize("wandb_run", [False, True], ids=["plain", "wandb"])
def test_main_dead_and_workers_blocked_is_stalled(wandb_run, write_sweep, run_sweep):
    """With ``--wandb`` the main started an offline W&B run first, as the W&B example that
    fails this way does: wandb's service lives on in the tree, doing its own background
    work, and must not keep the dead trial alive."""
    config = sweep(fault("dead_main.py"), ["--wandb"] if wandb_run else [], stall_s=3)
    result = run_sweep(write_sweep(config), timeout=180)
    (record,) = result.memories()
    assert record["status"] == "stalled" and "isolation.stall_s" in record["reason"]
    assert record["cleanup"]["processes_killed"] >= 3  # the main and its two workers
    log = (result.sweep_dir / record["run"] / "output.log").read_text()
    assert "RuntimeError: the main process failed" in log
    assert "most recent call first" in log  # the stacks were dumped before the stop
    if wandb_run:
        host = record["host"]
        assert host["peak_rss_mb"] - host["peak_rss_trial_mb"] > 10  # wandb-core was there
    nothing_left(result)


def test_a_trial_that_computes_or_reports_is_never_stalled(write_sweep, run_sweep):
    """Silent but computing, waiting on a child that computes, or idle but reporting: each
    lives for more than two stall windows and is not stalled."""
    stall_s, seconds = 2, 5
    config = sweep(fault("quiet_but_alive.py"), [f"--seconds={seconds}"],
                   {"how": {"values": ["compute", "child", "report"]}}, stall_s=stall_s)
    result = run_sweep(write_sweep(config), "--slots", "3")
    assert result.returncode == 0, result.proc.stderr
    records = result.memories()
    assert {r["params"]["how"]: r["status"] for r in records} == {
        "compute": "finished", "child": "finished", "report": "finished"}
    assert all(r["duration_s"] >= seconds > 2 * stall_s for r in records)
    nothing_left(result)


def gpu_sweep(tmp_path: Path, write_sweep, run_sweep, gpus: list[dict], busy: list[int]):
    """``gpu_stall.py`` on simulated GPUs, one trial per GPU at once, ``stall_s`` 2."""
    scenario = compose.scenario(tmp_path, gpus)
    config = sweep(fault("gpu_stall.py"), ["--seconds=5"], {"busy": {"values": busy}},
                   stall_s=2, wait={"max_s": 5.0})
    result = run_sweep(write_sweep(config), "--gpus", "all",
                       env=compose.environ(scenario), timeout=180)
    assert result.returncode == 0, result.proc.stderr
    assert yaml.safe_load((result.sweep_dir / "sweep.yaml").read_text())["trials"]
    return {r["params"]["busy"]: r for r in result.memories()}


def test_no_gpu_activity_is_a_stall_and_a_busy_gpu_is_not(tmp_path, write_sweep, run_sweep):
    """A dead trial holding its CUDA context (the device idle) is stalled; a trial with no
    CPU and no report whose GPU is busy lives on. Each on a GPU of its own: a device that a
    neighbour keeps busy would keep a dead trial alive too (README says so)."""
    records = gpu_sweep(tmp_path, write_sweep, run_sweep,
                        [compose.gpu(0), compose.gpu(1)], [0, 1])
    dead, alive = records[0], records[1]
    assert dead["status"] == "stalled" and "no GPU activity" in dead["reason"]
    assert dead["gpu"]["peak_tree_mb"] == 500.0  # it held its memory while it was dead
    assert alive["status"] == "finished" and alive["duration_s"] >= 5
    assert alive["gpu"]["util_peak_pct"] > 0


def test_a_gpu_whose_utilization_is_unknown_is_not_taken_for_idle(tmp_path, write_sweep,
                                                                    run_sweep):
    """NVML cannot say how busy the device is (NotSupported) while the trial holds GPU
    memory: unknown, so never a stall on the GPU's account."""
    records = gpu_sweep(tmp_path, write_sweep, run_sweep,
                        [compose.gpu(0, utilization=False)], [1])
    assert records[1]["status"] == "finished" and records[1]["duration_s"] >= 5
    assert records[1]["gpu"]["util_peak_pct"] is None
