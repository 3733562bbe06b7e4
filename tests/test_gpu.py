"""Real CUDA: leaks in trial processes, real cleanup, the device back within tolerance.

Marked ``gpu`` and skipped without CUDA. The other tests run with the GPU hidden
(conftest); these get it back through ``gpu_environ()``. CUDA is probed in a subprocess, so
that pytest's own process never holds a CUDA context (it would sit on the device the tests
measure). What they assert: the trial's processes were found (``peak_tree_mb`` > 0 for a
trial that allocated), the CUDA context told apart from the allocation (a trial that only
creates a context is the reference), and the device back to its baseline.
"""

import subprocess
import sys

import psutil
import pytest
from conftest import (
    ROOT,
    cuda_available,
    gpu_environ,
    journal_tokens,
    processes_with_token,
    program,
)

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
TOLERANCE_MB = 256


@pytest.fixture(scope="module", autouse=True)
def cuda_or_skip():
    if not cuda_available():
        pytest.skip("needs a CUDA GPU")
    from gpusweep.gpu.visible import default_device

    if not default_device(gpu_environ()).is_gpu:
        pytest.skip("CUDA works but NVML sees no GPU")


def leak_sweep(program_name, sizes):
    return {"program": program(program_name), "method": "grid",
            "parameters": {"mb": {"values": sizes}},
            "isolation": {"stop": {"grace_s": 2},
                          "wait": {"tolerance_mb": TOLERANCE_MB, "max_s": 60}}}


def test_a_cuda_leak_in_the_trial_is_gone_after_cleanup(write_sweep, run_sweep):
    # mb 0 creates the CUDA context and allocates nothing: the reference for the others.
    result = run_sweep(write_sweep(leak_sweep("cuda_leak.py", [0, 512, 1024])), timeout=600,
                       env=gpu_environ())
    assert result.returncode == 0, result.proc.stderr
    by_mb = {m["params"]["mb"]: m for m in result.memories()}
    context = by_mb[0]["gpu"]
    for mb in (512, 1024):
        memory = by_mb[mb]
        gpu = memory["gpu"]
        assert memory["status"] == "finished", memory["error"]
        assert gpu["torch_peak_allocated_mb"] >= mb  # the trial reported it
        if gpu["attribution"] == "pid":  # NVML named the trial's process
            assert gpu["peak_tree_mb"] > 0 and context["peak_tree_mb"] > 0
            assert gpu["peak_tree_mb"] - context["peak_tree_mb"] >= 0.9 * mb
        else:  # a container: NVML's PIDs are the host's; its device files were found
            assert gpu["attribution"] == "device_files" and gpu["peak_tree_mb"] is None
            rise = gpu["peak_used_mb"] - gpu["baseline_mb"]
            assert rise - (context["peak_used_mb"] - context["baseline_mb"]) >= 0.9 * mb
        assert gpu["residual_mb"] <= TOLERANCE_MB and memory["cleanup"]["clean"] is True


def test_a_grandchild_holding_the_gpu_is_found_and_the_gpu_comes_back(write_sweep, run_sweep):
    result = run_sweep(write_sweep(leak_sweep("cuda_escapee.py", [1024])), timeout=600,
                       env=gpu_environ())
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    assert memory["cleanup"]["escapees_killed"] >= 1
    assert memory["gpu"]["residual_mb"] <= TOLERANCE_MB and memory["cleanup"]["clean"] is True
    escapee = int((result.sweep_dir / memory["run"] / "escapee.pid").read_text())
    assert not psutil.pid_exists(escapee) or \
        psutil.Process(escapee).status() == psutil.STATUS_ZOMBIE
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []


def test_gpu_cleanup_script_checks_the_gpu():
    proc = subprocess.run([sys.executable, "test_gpu_cleanup.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=gpu_environ())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GPU used MB (NVML)" in proc.stdout and "skipped" not in proc.stdout
