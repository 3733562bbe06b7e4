"""Real CUDA: the daemon of the incident and a dead trial on the GPU, through tools/sweep.py.

Marked ``gpu`` and skipped without CUDA (the same probe as tests/test_gpu.py: in a
subprocess, so that pytest's own process never holds a CUDA context). Written on a machine
without a GPU: not run yet (docs/GPU_CHECK.md says when it was).
"""


import psutil
import pytest
from conftest import fault, gpu_environ, journal_tokens, processes_with_token

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.usefixtures("cuda")]
TOLERANCE_MB = 256


def sweep(how, **isolation):
    isolation.setdefault("stop", {"grace_s": 2})
    isolation.setdefault("wait", {"tolerance_mb": TOLERANCE_MB, "max_s": 60})
    return {"program": fault("cuda_daemon.py"), "method": "grid",
            "command": ["${env}", "${interpreter}", "${program}", f"--how={how}", "${args}"],
            "parameters": {"x": {"values": [1]}}, "isolation": isolation}


def test_a_detached_daemon_holding_the_gpu_is_ended_and_the_gpu_comes_back(write_sweep,
                                                                          run_sweep):
    """No token (an empty environment), its own session: only the launcher holds it."""
    result = run_sweep(write_sweep(sweep("daemon")), timeout=600, env=gpu_environ())
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    assert memory["status"] == "finished", memory["error"]
    assert memory["cleanup"]["escapees_killed"] == 1
    assert memory["gpu"]["residual_mb"] <= TOLERANCE_MB and memory["cleanup"]["clean"] is True
    daemon = int((result.sweep_dir / memory["run"] / "daemon.pid").read_text())
    assert not psutil.pid_exists(daemon) or \
        psutil.Process(daemon).status() == psutil.STATUS_ZOMBIE
    assert processes_with_token(journal_tokens(result.sweep_dir)) == []


def test_a_dead_trial_holding_its_context_is_stalled_by_the_gpu_s_silence(write_sweep,
                                                                         run_sweep):
    """NVML's utilization 0 % while the trial holds its memory: no GPU activity (on a GPU
    that nothing else keeps busy)."""
    result = run_sweep(write_sweep(sweep("dead", stall_s=5)), timeout=600, env=gpu_environ())
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    assert memory["status"] == "stalled", memory["error"]
    assert "no GPU activity" in memory["reason"]
    assert memory["gpu"]["residual_mb"] <= TOLERANCE_MB and memory["cleanup"]["clean"] is True
