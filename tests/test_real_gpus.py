"""GPUs as users have them, through tools/sweep.py on a SIMULATED NVML (tests/simnvml).

Every scenario runs real sweeps whose trials are real subprocesses holding simulated GPU
memory (tests/programs/sim_gpu.py): the real device, monitor, wait, admission and record
code run; only NVML is the simulation. Docker containers (host PIDs), shared GPUs (a real
colleague process), the orchestrator's CUDA_VISIBLE_DEVICES, NVML failing mid-sweep, old
drivers and bindings, MIG, lost GPUs, quirks of the process lists, energy and utilization.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, program
from simnvml import compose

pytestmark = pytest.mark.slow
TOL = 256.0
CONTAINER = 3_000_000  # NVML reports host PIDs: ours plus this offset


class Sim:
    """One simulated machine: its scenario file and the environment selecting it."""

    def __init__(self, tmp_path: Path, gpus: list[dict], **keys) -> None:
        self.path = compose.scenario(tmp_path, gpus, **keys)
        self.state = Path(yaml.safe_load(self.path.read_text())["state_dir"])
        self.tmp_path = tmp_path

    def env(self, **extra: str) -> dict[str, str]:
        return compose.environ(self.path, **extra)

    def sweep(self, write_sweep, run_sweep, parameters: dict, *args: str,
              cvd: str | None = None, **isolation):
        isolation.setdefault("stop", {"grace_s": 1})
        isolation.setdefault("wait", {"max_s": 5.0, "tolerance_mb": TOL})
        config = {"program": program("sim_gpu.py"), "method": "grid",
                  "metric": {"name": "loss", "goal": "minimize"},
                  "parameters": parameters, "isolation": isolation}
        extra = {} if cvd is None else {"CUDA_VISIBLE_DEVICES": cvd}
        return run_sweep(write_sweep(config), *args, env=self.env(**extra), timeout=180)


def by_param(result, name: str) -> dict:
    return {m["params"][name]: m for m in result.memories()}


# -- Docker containers: NVML's PIDs are the host's ---------------------------------------
def test_container_peak_is_null_not_a_false_zero_and_holders_are_found(
        tmp_path, write_sweep, run_sweep):
    foreign = [{"pid": 4_000_001, "mb": 700.0}, {"pid": 1, "mb": 100.0}]  # pid 1 exists here
    sim = Sim(tmp_path, [compose.gpu(0, processes=foreign)], pid_offset=CONTAINER)
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 800}, "cpu": {"values": [0, 1]},
                                                "worker_mb": {"value": 300}},
                       on_dirty="abort")
    assert result.returncode == 0, result.proc.stderr
    gpu_trial, cpu_trial = by_param(result, "cpu")[0], by_param(result, "cpu")[1]
    # Before: peak_tree_mb 0.0, "this trial used no GPU memory". Now: not attributable.
    assert gpu_trial["gpu"]["attribution"] == "device_files"
    assert gpu_trial["gpu"]["peak_tree_mb"] is None
    assert gpu_trial["gpu"]["peak_used_mb"] - gpu_trial["gpu"]["baseline_mb"] >= 1100 - 1
    assert gpu_trial["cleanup"]["clean"] is True and gpu_trial["gpu"]["residual_mb"] <= TOL
    assert gpu_trial["cleanup"]["processes_killed"] >= 1  # the worker holding the context
    # A trial that never opened the GPU: its device files prove the 0.
    assert cpu_trial["gpu"]["peak_tree_mb"] == 0.0
    assert cpu_trial["gpu"]["attribution"] == "device_files"


def test_container_neighbour_memory_is_not_this_trials_residual(
        tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0)], pid_offset=CONTAINER)
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [200, 2000]},
                                                "seconds_per_gb": {"value": 2.0}},
                       "--slots", "2", on_dirty="abort")
    assert result.returncode == 0, result.proc.stderr
    short, long = by_param(result, "mb")[200], by_param(result, "mb")[2000]
    # Before: the neighbour's 2000 MB were this trial's residual (dirty, then abort).
    assert short["cleanup"]["clean"] is None, short["cleanup"]
    assert "cannot be attributed" in short["cleanup"]["reason"]
    assert short["cleanup"]["wait_s"] < 5.0  # settled, not run to max_s
    assert long["cleanup"]["clean"] is True


# -- Shared GPUs: another user's process ---------------------------------------------------
def start_colleague(sim: Sim, mb: float, then_mb: float, when: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, program("sim_colleague.py"), f"--mb={mb}",
                             f"--then_mb={then_mb}", f"--when={when}", "--max_s=120"],
                            cwd=ROOT, env=sim.env(), start_new_session=True)
    deadline = time.monotonic() + 60
    while not (sim.state / "colleague.ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "colleague did not start"
        time.sleep(0.02)
    return proc


@pytest.fixture
def colleague(request):
    procs = []
    yield procs
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_colleague_growing_by_3_gb_is_foreign_not_our_residual(
        tmp_path, write_sweep, run_sweep, colleague):
    sim = Sim(tmp_path, [compose.gpu(0)])
    colleague.append(start_colleague(sim, 1000, 4000, "grow"))
    result = sim.sweep(write_sweep, run_sweep,
                       {"mb": {"values": [500, 600]}, "touch": {"value": "grow"},
                        "await_file": {"value": "grow.done"}}, on_dirty="abort")
    # Before: the 3 GB were blamed on the first trial: wait to max_s, dirty, sweep aborted.
    assert result.returncode == 0, result.proc.stderr
    first, second = result.memories()
    for memory in (first, second):
        assert memory["cleanup"]["clean"] is True, memory["cleanup"]
        assert memory["cleanup"]["wait_s"] < 5.0
        assert memory["gpu"]["attribution"] == "pid" and memory["gpu"]["peak_tree_mb"] > 0
    assert first["gpu"]["foreign_start_mb"] == 1000.0
    assert first["gpu"]["foreign_end_mb"] == 4000.0


def test_a_colleague_freeing_memory_never_hides_our_leak(
        tmp_path, write_sweep, run_sweep, colleague):
    sim = Sim(tmp_path, [compose.gpu(0)])
    colleague.append(start_colleague(sim, 3000, 0, "free"))
    result = sim.sweep(write_sweep, run_sweep,
                       {"mb": {"value": 500}, "orphan_mb": {"value": 800},
                        "touch": {"value": "free"}, "await_file": {"value": "free.done"}},
                       on_dirty="abort", wait={"max_s": 1.0})
    # The device's used memory fell by 2200 MB: without the foreign correction, "clean".
    assert result.returncode == 3, result.proc.stderr  # proven dirty: aborted
    (memory,) = result.memories()
    assert memory["cleanup"]["clean"] is False
    assert memory["gpu"]["residual_mb"] == pytest.approx(800, abs=1)
    assert memory["gpu"]["foreign_start_mb"] == 3000.0 and memory["gpu"]["foreign_end_mb"] == 0


# -- The orchestrator's CUDA_VISIBLE_DEVICES -----------------------------------------------
def three_gpus(tmp_path: Path) -> Sim:
    return Sim(tmp_path, [compose.gpu(0), compose.gpu(1), compose.gpu(2)])


@pytest.mark.parametrize("value", ["1", compose.uuid(1), compose.uuid(1)[:13]])
def test_cuda_visible_devices_index_and_uuid_put_trials_on_that_gpu(
        tmp_path, write_sweep, run_sweep, value):
    sim = three_gpus(tmp_path)
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 700}}, cvd=value)
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    # Before: every trial went to GPU 0. The trial's memory is seen on GPU 1: it ran there.
    assert memory["gpu"]["index"] == 1 and memory["gpu"]["uuid"] == compose.uuid(1)
    assert memory["gpu"]["peak_tree_mb"] == 700.0


def test_gpus_indexes_the_visible_set(tmp_path, write_sweep, run_sweep):
    sim = three_gpus(tmp_path)
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 300}}, "--gpus", "1",
                       cvd="2,0")
    assert result.returncode == 0, result.proc.stderr
    assert result.memories()[0]["gpu"]["index"] == 0  # position 1 of "2,0"


def test_an_empty_cuda_visible_devices_means_no_gpu(tmp_path, write_sweep, run_sweep):
    result = three_gpus(tmp_path).sweep(write_sweep, run_sweep, {"cpu": {"value": 1}}, cvd="")
    assert result.returncode == 0, result.proc.stderr
    assert result.memories()[0]["gpu"]["device"] == "cpu"


@pytest.mark.parametrize(("value", "gpus", "message"), [
    ("7", None, "entry 1 '7' is no GPU index here"),
    ("0,GPU-zz", None, "entry 2 'GPU-zz' names no GPU"),
    ("0,0", None, "names a device twice"),
    ("1", "1", "--gpus: 1: outside the visible set (1 device)"),
    ("", "0", "CUDA_VISIBLE_DEVICES is empty"),
])
def test_a_bad_cuda_visible_devices_or_gpus_is_one_line_exit_2(tmp_path, write_sweep, value,
                                                               gpus, message):
    sim = three_gpus(tmp_path)
    sweep = write_sweep({"program": program("sim_gpu.py"), "method": "grid",
                         "parameters": {"mb": {"value": 1}}})
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(sweep),
                           "--dry-run", *(["--gpus", gpus] if gpus else [])], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=sim.env(CUDA_VISIBLE_DEVICES=value))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_nvml_module_is_one_line_exit_2(tmp_path, write_sweep):
    sweep = write_sweep({"program": program("sim_gpu.py"), "method": "grid",
                         "parameters": {"mb": {"value": 1}}})
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(sweep),
                           "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, GPUSWEEP_NVML_MODULE="no_such_nvml"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: GPUSWEEP_NVML_MODULE: no_such_nvml: cannot be imported "
        "(ModuleNotFoundError: No module named 'no_such_nvml')"]


# -- NVML failing mid-sweep ----------------------------------------------------------------
def test_nvml_that_stops_answering_is_unknown_never_clean(tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0)], faults=[
        {"function": "nvmlDeviceGetMemoryInfo", "error": "Unknown", "when_file": "nvml-down"}])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [400, 500]},
                                                "touch_at_exit": {"value": "nvml-down"}},
                       on_dirty="abort", wait={"max_s": 1.0, "poll_s": 0.1})
    # Before: clean: true with nothing measured.
    assert result.returncode == 0, result.proc.stderr
    for memory in result.memories():
        assert memory["cleanup"]["clean"] is None
        assert "could not be read" in memory["cleanup"]["reason"]
        assert "NVMLError_Unknown" in memory["cleanup"]["reason"]
        assert memory["cleanup"]["wait_s"] >= 1.0  # retried until max_s, never given up early


def test_a_gpu_lost_mid_sweep_never_crashes_it(tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0)], faults=[
        {"function": "*", "error": "GpuIsLost", "when_file": "lost"}])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [400, 500, 600]},
                                                "touch": {"value": "lost"}},
                       on_dirty="abort", wait={"max_s": 0.5})
    assert result.returncode == 0, result.proc.stderr
    rows = result.sweep["trials"]
    assert len(rows) == 3 and all(r["status"] == "finished" for r in rows)
    assert all(m["cleanup"]["clean"] is None for m in result.memories())


def test_a_gpu_whose_handle_fails_is_left_out_not_every_gpu(tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0), compose.gpu(1, handle_error="GpuIsLost"),
                         compose.gpu(2)])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [300, 400]}},
                       "--gpus", "all")
    assert result.returncode == 0, result.proc.stderr
    assert {m["gpu"]["index"] for m in result.memories()} == {0, 2}
    run = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config",
                          str(sim.tmp_path / "sweep.yaml"), "--dry-run", "--gpus", "all"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, env=sim.env())
    assert "warning: GPU 1 left out: NVMLError_GpuIsLost" in run.stderr


# -- Old drivers and bindings, quirks of the process lists -----------------------------------
NO_V3 = [f"nvmlDeviceGet{k}RunningProcesses_v3" for k in ("Compute", "Graphics", "MPSCompute")]
NO_V2 = [name.replace("_v3", "_v2") for name in NO_V3]


@pytest.mark.parametrize(("keys", "lists"), [
    ({"missing": NO_V3}, "compute"),  # an older driver: no _v3 symbols
    ({"bindings": "v1"}, "compute"),  # old nvidia-ml-py: the plain names are v1
    ({}, "compute,graphics"),  # one process in two lists: max, not sum
    ({}, "mps"),  # an MPS client: only in the MPS list
])
def test_the_trials_processes_are_found_and_counted_once(tmp_path, write_sweep, run_sweep,
                                                         keys, lists):
    sim = Sim(tmp_path, [compose.gpu(0)], **keys)
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 900},
                                                "lists": {"value": lists}})
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    assert memory["gpu"]["attribution"] == "pid" and memory["gpu"]["peak_tree_mb"] == 900.0
    assert memory["cleanup"]["clean"] is True


def test_a_driver_without_any_process_query_still_finds_the_trial_by_device_files(
        tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0)], missing=NO_V3 + NO_V2)  # nvidia-ml-py 13, old driver
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 900}})
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    assert memory["gpu"]["attribution"] == "device_files"
    assert memory["gpu"]["peak_tree_mb"] is None and memory["cleanup"]["clean"] is True


@pytest.mark.parametrize(("keys"), [{"used_memory": "none"},
                                    {"used_memory": "not_available", "bindings": "v1"}])
def test_unknown_process_memory_stays_unknown(tmp_path, write_sweep, run_sweep, keys):
    sim = Sim(tmp_path, [compose.gpu(0)], **keys)
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 900}})
    assert result.returncode == 0, result.proc.stderr
    (memory,) = result.memories()
    # Before: None became 0 (and NVML_VALUE_NOT_AVAILABLE a 16-exabyte process).
    assert memory["gpu"]["attribution"] == "pid" and memory["gpu"]["peak_tree_mb"] is None


def test_memory_freed_after_the_process_exits_is_waited_for(tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0)], free_delay_s=0.8)
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 2000}})
    (memory,) = result.memories()
    assert memory["cleanup"]["clean"] is True and memory["gpu"]["residual_mb"] <= TOL
    assert memory["cleanup"]["wait_s"] >= 0.8  # the driver took that long to free it


def test_admission_uses_free_memory_not_total_minus_used(tmp_path, write_sweep, run_sweep):
    # Memory info v2: 4000 MB reserved by the driver; total - used overstates what is free.
    sim = Sim(tmp_path, [compose.gpu(0, total_mb=10000.0, reserved_mb=4000.0,
                                     base_used_mb=500.0)])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [1000, 2000, 7000]}},
                       fit={"features": ["mb"], "policy": "skip", "min_trials": 2})
    assert result.returncode == 0, result.proc.stderr
    statuses = {r["params"]["mb"]: r["status"] for r in result.sweep["trials"]}
    # 7000 MB + 10 % margin fits in total - used (9500) but not in .free (5500).
    assert statuses == {1000: "finished", 2000: "finished", 7000: "skipped_no_fit"}


# -- MIG -----------------------------------------------------------------------------------
def test_mig_instances_are_devices_read_through_their_own_handles(
        tmp_path, write_sweep, run_sweep):
    # A container given one slice: the parent's memory and the other slice are refused.
    slices = [compose.mig(0, 0, access="NoPermission"), compose.mig(0, 1)]
    sim = Sim(tmp_path, [compose.gpu(0, mig=slices, memory_error="NoPermission"),
                         compose.gpu(1)])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [1000, 1100]}},
                       "--gpus", "all")
    assert result.returncode == 0, result.proc.stderr
    on_mig = [m for m in result.memories() if m["gpu"]["mig_index"] is not None]
    assert on_mig, result.memories()
    memory = on_mig[0]
    gpu = memory["gpu"]
    assert gpu["uuid"] == slices[1]["uuid"] and gpu["index"] == 0 and gpu["mig_index"] == 1
    assert gpu["peak_used_mb"] - gpu["baseline_mb"] == memory["params"]["mb"]  # its own memory
    # Before: every figure None and the trial "clean". NVML gives no per-process memory on
    # MIG, and no utilization or energy: unknown; the instance's memory proves it clean.
    assert gpu["peak_tree_mb"] is None and gpu["attribution"] == "pid"
    assert gpu["util_mean_pct"] is None and gpu["energy_j"] is None
    assert memory["cleanup"]["clean"] is True and gpu["residual_mb"] == 0.0
    row = next(r for r in result.sweep["trials"] if r["run"] == memory["run"])
    assert row["device"].startswith("0/1: ") and "MIG" in row["device"]


def test_a_mig_uuid_names_one_instance_in_cuda_visible_devices_and_gpus(
        tmp_path, write_sweep, run_sweep):
    slices = [compose.mig(0, 0), compose.mig(0, 1)]
    sim = Sim(tmp_path, [compose.gpu(0, mig=slices)])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"value": 500}},
                       "--gpus", slices[1]["uuid"][:12], cvd=f"{slices[0]['uuid']},"
                       f"{slices[1]['uuid']}")
    assert result.returncode == 0, result.proc.stderr
    assert result.memories()[0]["gpu"]["uuid"] == slices[1]["uuid"]


# -- Energy and utilization ------------------------------------------------------------------
def test_energy_and_utilization_per_trial(tmp_path, write_sweep, run_sweep):
    sim = Sim(tmp_path, [compose.gpu(0), compose.gpu(1, "Tesla K80", energy=False,
                                                     utilization=False)])
    result = sim.sweep(write_sweep, run_sweep, {"mb": {"values": [2000, 3000]}},
                       "--gpus", "all")
    assert result.returncode == 0, result.proc.stderr
    by_index = {m["gpu"]["index"]: m for m in result.memories()}
    measured, lacking = by_index[0]["gpu"], by_index[1]["gpu"]
    assert measured["energy_j"] > 0 and 0 < measured["util_mean_pct"] <= measured["util_peak_pct"]
    assert lacking["energy_j"] is None and lacking["util_mean_pct"] is None
    rows = {r["device"][0]: r for r in result.sweep["trials"]}
    assert rows["0"]["energy_j"] == measured["energy_j"] and rows["1"]["energy_j"] is None
    assert rows["0"]["util_peak_pct"] == measured["util_peak_pct"]
    from gpusweep.wb.summary import COLUMNS, table_rows

    table = [dict(zip(COLUMNS, row, strict=True)) for row in table_rows(str(result.sweep_dir))]
    assert {row["energy_j"] for row in table} == {measured["energy_j"], None}
    report = subprocess.run([sys.executable, "tools/sweep.py", "report",
                             str(result.sweep_dir)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    text = (result.sweep_dir / "report" / "report.md").read_text()
    assert "energy (J)" in text and f"{measured['energy_j']:,.0f}" in text


# -- test_gpu_cleanup.py's GPU checks, on the simulated GPU ----------------------------------
@pytest.mark.parametrize("keys", [{}, {"pid_offset": CONTAINER}])
def test_gpu_cleanup_script_checks_a_simulated_gpu(tmp_path, keys):
    sim = Sim(tmp_path, [compose.gpu(0)], free_delay_s=0.2, **keys)
    proc = subprocess.run([sys.executable, "test_gpu_cleanup.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=sim.env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GPU used MB (NVML)" in proc.stdout and "skipped" not in proc.stdout
