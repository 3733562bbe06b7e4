"""Where a GPU reading could be mistaken for good news, through tools/sweep.py on a SIMULATED
NVML (tests/simnvml): a colleague's release with no per-process figures, NVML failing before
any GPU opened or while the process lists are read, a trial that creates its CUDA context
long before it allocates, CUDA_VISIBLE_DEVICES on machines without GPUs, a GPU whose UUID
cannot be read, and a job that starts between trials in a container.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import ROOT, program
from simnvml import compose
from test_real_gpus import CONTAINER, TOL, Sim, by_param, start_colleague

pytestmark = pytest.mark.slow
LISTS = [f"nvmlDeviceGet{k}RunningProcesses_v3" for k in ("Compute", "Graphics", "MPSCompute")]


@pytest.fixture
def colleague():
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def dry_run(sim: Sim, write_sweep, **env: str) -> subprocess.CompletedProcess:
    sweep = write_sweep({"program": program("sim_gpu.py"), "method": "grid",
                         "parameters": {"mb": {"value": 1}}})
    return subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(sweep),
                           "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=sim.env(**env))


# -- a colleague's release, when NVML gives no per-process memory ----------------------------
def test_a_colleague_freeing_memory_without_per_process_figures_is_unknown_not_clean(
        tmp_path, write_sweep, run_sweep, colleague):
    sim = Sim(tmp_path, [compose.gpu(0)], used_memory="none")
    colleague.append(start_colleague(sim, 3000, 0, "free"))
    result = sim.sweep(write_sweep, run_sweep,
                       {"mb": {"value": 500}, "orphan_mb": {"value": 800},
                        "touch": {"value": "free"}, "await_file": {"value": "free.done"}},
                       on_dirty="abort", wait={"max_s": 2.0, "tolerance_mb": TOL})
    # Before: 2200 MB below the baseline read as clean: true, the 800 MB leak hidden.
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    assert memory["cleanup"]["clean"] is None, memory["cleanup"]
    assert "2200 MB below the baseline" in memory["cleanup"]["reason"]
    assert memory["gpu"]["residual_mb"] is None


# -- NVML failing ----------------------------------------------------------------------------
@pytest.mark.parametrize("keys", [
    {"faults": [{"function": "nvmlDeviceGetCount", "error": "Unknown"}]},
    {"gpus": [compose.gpu(0, handle_error="GpuIsLost"), compose.gpu(1, handle_error="Unknown")]},
])
def test_nvml_failing_before_any_gpu_opened_stops_the_sweep_not_runs_it_on_cpu(
        tmp_path, write_sweep, keys):
    sim = Sim(tmp_path, keys.pop("gpus", [compose.gpu(0)]), **keys)
    proc = dry_run(sim, write_sweep)
    # Before: device "cpu", clean: true for a trial that held GPU memory, one warning.
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: NVML: ") and "no GPU could be opened" in line
    assert "CUDA_VISIBLE_DEVICES= (empty)" in line and "Traceback" not in proc.stderr
    assert dry_run(sim, write_sweep, CUDA_VISIBLE_DEVICES="").returncode == 0  # the CPU, asked


def test_process_lists_failing_in_the_wait_are_retried_until_max_s(
        tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0)], faults=[
        {"function": name, "error": "Unknown", "when_file": "lists-down"} for name in LISTS])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 500}, "orphan_mb": {"value": 800},
                                                "touch_at_exit": {"value": "lists-down"}},
                       on_dirty="abort", wait={"max_s": 2.0, "poll_s": 0.1,
                                               "tolerance_mb": TOL})
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    cleanup = memory["cleanup"]
    # Before: settled after ~1 s as "PIDs do not match ours (a container)".
    assert cleanup["clean"] is None and cleanup["wait_s"] >= 2.0, cleanup
    assert "process lists could not be read" in cleanup["reason"]
    assert "NVMLError_Unknown" in cleanup["reason"] and "container" not in cleanup["reason"]


# -- a CUDA context long before the first allocation, beside another user's process -----------
@pytest.mark.parametrize("alloc_after_s", [0.0, 1.5])
def test_a_trial_allocating_late_beside_another_user_is_still_found_by_pid(
        tmp_path, write_sweep, run_sweep, alloc_after_s):
    # Another user's process: listed by NVML, its fds unreadable here (no such PID).
    sim = Sim(tmp_path, [compose.gpu(0, processes=[{"pid": 4_000_001, "mb": 700.0}])])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [500, 600]},
                                                "alloc_after_s": {"value": alloc_after_s}})
    assert result.returncode == 0, result.proc.stderr
    for mb, memory in by_param(result, "mb").items():
        gpu = memory["gpu"]
        # Before: with the late allocation, "device_files" and null for the rest of the
        # sweep (declared a container); the first trial's foreign_start_mb null either way.
        assert gpu["attribution"] == "pid" and gpu["peak_tree_mb"] == mb, gpu
        assert gpu["foreign_start_mb"] == 700.0 and gpu["foreign_end_mb"] == 700.0
        assert memory["cleanup"]["clean"] is True


# -- CUDA_VISIBLE_DEVICES where CUDA would run on the CPU ------------------------------------
@pytest.mark.parametrize(("gpus", "value", "warned"), [
    ([], "0", True),  # no GPU at all: CUDA runs on the CPU whatever the value
    ([], "GPU-5a1e", True),
    ([compose.gpu(0), compose.gpu(1)], "-1", False),  # the common "no GPU" idiom
])
def test_cuda_visible_devices_that_cuda_runs_on_the_cpu_runs_the_sweep_on_the_cpu(
        tmp_path, write_sweep, run_sweep, gpus, value, warned):
    sim = Sim(tmp_path, gpus)
    result = sim.sweep(write_sweep, run_sweep, {"cpu": {"value": 1}}, cvd=value)
    # Before: exit 2 ("'0' is no GPU index here (0 GPUs)", "-1 is neither an index ...").
    assert result.returncode == 0, result.proc.stderr
    assert result.memories()[0]["gpu"]["device"] == "cpu"
    assert ("NVML finds no GPU here: trials run on the CPU" in result.proc.stderr) == warned


def test_gpus_before_a_negative_index_are_visible(tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0), compose.gpu(1), compose.gpu(2)])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 300}}, "--gpus", "all",
                       cvd="2,-1,0")
    assert result.returncode == 0, result.proc.stderr
    assert {m["gpu"]["index"] for m in result.memories()} == {2}


# -- a GPU whose UUID could not be read --------------------------------------------------------
def test_a_gpu_without_a_readable_uuid_is_given_to_the_trial_by_index(
        tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0), compose.gpu(1)], faults=[
        {"function": "nvmlDeviceGetUUID", "error": "Unknown", "gpu": compose.uuid(1)}])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 700}}, "--gpus", "1")
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    # Before: no CUDA_VISIBLE_DEVICES at all, so the trial saw every GPU and ran on GPU 0.
    assert memory["gpu"]["index"] == 1 and memory["gpu"]["uuid"] is None
    assert memory["gpu"]["peak_tree_mb"] == 700.0 and memory["gpu"]["attribution"] == "pid"


# -- a job that starts between trials, in a container ------------------------------------------
def test_in_a_container_the_baseline_follows_a_job_that_starts_between_trials(
        tmp_path, write_sweep, run_sweep, colleague):
    sim = Sim(tmp_path, [compose.gpu(0)], pid_offset=CONTAINER)
    colleague.append(subprocess.Popen(
        [sys.executable, program("sim_colleague.py"), "--mb=1500", "--start_on=start",
         "--max_s=120"], cwd=ROOT, env=sim.env(), start_new_session=True))
    deadline = time.monotonic() + 60
    while not (sim.state / "colleague.ready").exists():
        assert colleague[0].poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [400, 600]},
                                                "touch_at_exit": {"value": "start"}},
                       on_dirty="abort")
    assert result.returncode == 0, result.proc.stderr
    first, second = by_param(result, "mb")[400], by_param(result, "mb")[600]
    # The job appeared during the first trial's wait: its 1500 MB cannot be told from ours.
    assert first["cleanup"]["clean"] is None and "cannot be attributed" in \
        first["cleanup"]["reason"]
    # Before the second launch, with none of ours on the device, the baseline took it in.
    assert second["gpu"]["baseline_mb"] == pytest.approx(first["gpu"]["baseline_mb"] + 1500)
    assert second["cleanup"]["clean"] is True, second["cleanup"]
    assert second["gpu"]["residual_mb"] <= TOL
