"""Real CUDA: leaks in trial processes, real cleanup, the device back within tolerance.

Marked ``gpu`` and skipped without CUDA. CUDA is probed in a subprocess, so that pytest's
own process never holds a CUDA context (it would sit on the device the tests measure).
"""

import os
import subprocess
import sys

import psutil
import pytest
from conftest import ROOT, journal_tokens, processes_with_token, program

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
TOLERANCE_MB = 256


@pytest.fixture(scope="module", autouse=True)
def cuda_or_skip():
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True, text=True, timeout=120)
    if probe.stdout.strip() != "True":
        pytest.skip("needs a CUDA GPU")
    from gpusweep.device import default_device

    if not default_device().is_gpu:
        pytest.skip("CUDA works but NVML sees no GPU")


def leak_sweep(program_name, sizes):
    return {"program": program(program_name), "method": "grid",
            "parameters": {"mb": {"values": sizes}},
            "isolation": {"stop": {"grace_s": 2},
                          "wait": {"tolerance_mb": TOLERANCE_MB, "max_s": 60}}}


def test_a_cuda_leak_in_the_trial_is_gone_after_cleanup(write_sweep, run_sweep):
    result = run_sweep(write_sweep(leak_sweep("cuda_leak.py", [512, 1024])), timeout=600)
    assert result.returncode == 0, result.proc.stderr
    for memory in result.memories():
        mb, gpu = memory["params"]["mb"], memory["gpu"]
        assert memory["status"] == "finished", memory["error"]
        assert gpu["peak_used_mb"] - gpu["baseline_mb"] >= 0.9 * mb  # NVML saw it
        assert gpu["torch_peak_allocated_mb"] >= mb  # the trial reported it
        assert gpu["residual_mb"] <= TOLERANCE_MB and memory["cleanup"]["clean"]


def test_a_grandchild_holding_the_gpu_is_found_and_the_gpu_comes_back(write_sweep, run_sweep):
    result = run_sweep(write_sweep(leak_sweep("cuda_escapee.py", [1024])), timeout=600)
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    assert memory["cleanup"]["escapees_killed"] >= 1
    assert memory["gpu"]["residual_mb"] <= TOLERANCE_MB and memory["cleanup"]["clean"]
    escapee = int((result.sweep_dir / memory["run"] / "escapee.pid").read_text())
    assert not psutil.pid_exists(escapee) or \
        psutil.Process(escapee).status() == psutil.STATUS_ZOMBIE
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []


def test_gpu_cleanup_script_checks_the_gpu():
    proc = subprocess.run([sys.executable, "test_gpu_cleanup.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GPU used MB (NVML)" in proc.stdout and "skipped" not in proc.stdout
