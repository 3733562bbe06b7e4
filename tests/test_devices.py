"""The device layer and its decisions, in-process: NVML is the SIMULATED one (tests/simnvml)
where a device is needed, plain data elsewhere."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pynvml
import pytest
import simnvml
from conftest import ROOT
from fakes import FakeDevice
from simnvml import compose

from gpusweep.errors import BadInput
from gpusweep.gpu.baseline import DeviceBaselines
from gpusweep.gpu.device import Namespace, load_nvml
from gpusweep.gpu.scan import PhysicalGpu, scan_devices
from gpusweep.gpu.track import GpuTrack
from gpusweep.gpu.view import (
    Attribution,
    Baseline,
    Usage,
    attribute,
    namespace_evidence,
    next_namespace,
    split_usage,
)
from gpusweep.gpu.visible import resolve
from gpusweep.slots import choose_devices


@pytest.fixture
def sim(tmp_path, monkeypatch):
    """Select the simulated NVML in this process; returns a scenario writer."""
    def use(gpus, **keys):
        path = compose.scenario(tmp_path, gpus, **keys)
        for key, value in compose.environ(path).items():
            if key.startswith("GPUSWEEP_"):
                monkeypatch.setenv(key, value)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        return path
    return use


# -- the simulation is nvidia-ml-py's interface ----------------------------------------------
def test_the_simulation_uses_only_nvidia_ml_pys_names_signatures_and_errors():
    functions = [n for n in dir(simnvml) if n.startswith("nvml") and callable(getattr(simnvml, n))
                 and inspect.isfunction(getattr(simnvml, n))]
    assert len(functions) > 25
    for name in functions:
        real = getattr(pynvml, name)  # an AttributeError here: a name pynvml does not have
        ours = inspect.signature(getattr(simnvml, name)).parameters
        assert list(ours) == list(inspect.signature(real).parameters), name
    assert simnvml.NVMLError is pynvml.NVMLError
    assert simnvml.NVMLError_FunctionNotFound is pynvml.NVMLError_FunctionNotFound


# -- GPUSWEEP_NVML_MODULE ---------------------------------------------------------------------
def test_the_nvml_module_is_replaceable_and_a_bad_one_is_bad_input():
    assert load_nvml({}) is pynvml
    assert load_nvml({"GPUSWEEP_NVML_MODULE": "simnvml"}) is simnvml
    with pytest.raises(BadInput, match="cannot be imported"):
        load_nvml({"GPUSWEEP_NVML_MODULE": "no.such.module"})
    with pytest.raises(BadInput, match="not an NVML module"):
        load_nvml({"GPUSWEEP_NVML_MODULE": "json"})


def test_only_device_py_reads_the_nvml_module_variable():
    proc = subprocess.run(["grep", "-rl", "--include=*.py", "GPUSWEEP_NVML_MODULE\\|import pynvml",
                           "gpusweep"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.stdout.split() == ["gpusweep/gpu/device.py"]


# -- opening devices ---------------------------------------------------------------------------
def test_a_failing_handle_leaves_that_gpu_out_only(sim):
    sim([compose.gpu(0), compose.gpu(1, handle_error="GpuIsLost"), compose.gpu(2)])
    scan = scan_devices()
    assert [d.info.index for d in scan.devices] == [0, 2]
    assert scan.problems == ["GPU 1 left out: NVMLError_GpuIsLost: GPU is lost"]


def test_no_driver_is_no_gpu_and_no_problem(sim):
    sim([], driver=None)
    scan = scan_devices()
    assert scan.devices == [] and scan.problems == []


def test_process_queries_are_probed_once_v3_then_v2_then_plain(sim):
    sim([compose.gpu(0, processes=[{"pid": 7, "mb": 100.0, "lists": ["compute", "graphics"]},
                                   {"pid": 8, "mb": 50.0, "lists": ["mps"]}])],
        missing=["nvmlDeviceGetComputeRunningProcesses_v3",
                 "nvmlDeviceGetGraphicsRunningProcesses_v3"])
    (device,) = scan_devices().devices
    assert device.process_memory_mb() == {7: 100.0, 8: 50.0}  # both lists: max, not sum
    chosen = {kind: getter.__name__ for kind, getter in device._lists.items()}
    assert chosen == {"Compute": "nvmlDeviceGetComputeRunningProcesses_v2",
                      "Graphics": "nvmlDeviceGetGraphicsRunningProcesses_v2",
                      "MPSCompute": "nvmlDeviceGetMPSComputeRunningProcesses_v3"}


def test_old_bindings_use_v1_and_not_available_stays_unknown(sim):
    sim([compose.gpu(0, processes=[{"pid": 7, "mb": 100.0}])], bindings="v1",
        used_memory="not_available")
    (device,) = scan_devices().devices
    assert not hasattr(simnvml, "nvmlDeviceGetComputeRunningProcesses_v3")
    assert device.process_memory_mb() == {7: None}


def test_free_memory_is_v2s_free_and_v1_is_the_fallback(sim):
    sim([compose.gpu(0, total_mb=10000.0, reserved_mb=4000.0, base_used_mb=500.0)])
    (device,) = scan_devices().devices
    assert device.used_mb() == 500.0 and device.free_mb() == 5500.0
    sim([compose.gpu(0, total_mb=10000.0, reserved_mb=4000.0, base_used_mb=500.0)],
        missing=["nvmlDeviceGetMemoryInfo_v2"])
    (device,) = scan_devices().devices
    assert device.used_mb() == 4500.0 and device.free_mb() == 5500.0  # v1 counts reserved


def test_a_failed_reading_is_none_with_its_error(sim):
    path = sim([compose.gpu(0)], faults=[{"function": "nvmlDeviceGetMemoryInfo",
                                          "error": "Unknown", "when_file": "down"}])
    (device,) = scan_devices().devices
    compose.touch(path, "down")
    assert device.used_mb() is None and "NVMLError_Unknown" in device.last_error


def test_mig_instances_are_devices_with_their_own_uuid(sim):
    sim([compose.gpu(0, mig=[compose.mig(0, 0), compose.mig(0, 1, access="NotFound")]),
         compose.gpu(1, mig=[compose.mig(1, 0, access="NoPermission")])])
    scan = scan_devices()
    (unit,) = scan.devices
    assert unit.info.uuid.startswith("MIG-") and unit.info.label == "0/0"
    assert unit.info.parent_uuid == compose.uuid(0) and unit.info.mig_ids == (1, 0)
    assert unit.utilization() is None and unit.energy_mj() is None
    assert scan.problems == ["GPU 1 left out: MIG is enabled and no instance is usable "
                             "(refused: 0 (NVMLError_NoPermission: Insufficient Permissions))"]


# -- CUDA_VISIBLE_DEVICES, as CUDA reads it ----------------------------------------------------
class Unit:
    def __init__(self, uuid, mig_index=None, parent=None, ids=None):
        from gpusweep.gpu.device import DeviceInfo

        self.info = DeviceInfo("x", uuid, 0, None, mig_index, parent, ids)


def machine():
    a, b = Unit("GPU-aaaa1111"), Unit("GPU-aabb2222")
    m0 = Unit("MIG-cccc0000", 0, "GPU-cc000000", (1, 0))
    m1 = Unit("MIG-cccc1111", 1, "GPU-cc000000", (2, 0))
    return [PhysicalGpu(0, "GPU-aaaa1111", False, [a]), PhysicalGpu(1, "GPU-aabb2222", False, [b]),
            PhysicalGpu(2, "GPU-cc000000", True, [m0, m1])], (a, b, m0, m1)


@pytest.mark.parametrize(("value", "expected", "problem"), [
    (None, "a b m0 m1", None),  # unset: every device
    ("", "", None),  # empty: no GPU
    (" ", "", None),
    ("1,0", "b a", None),  # CUDA's order is the value's
    ("1abc", "b", None),  # an index keeps its leading digits
    ("2", "m0 m1", None),  # a MIG-enabled GPU gives its instances
    ("GPU-aab", "b", None),  # a unique prefix
    ("GPU-aa", "", "ambiguous"),
    ("MIG-cccc1", "m1", None),
    ("MIG-GPU-cc000000/2/0", "m1", None),  # the older MIG form
    ("0,7,1", "a", "entry 2 '7'"),  # an invalid entry hides it and every later one
    ("0,GPU-aabb2222", "a", "the first entry decides"),  # indices, then a UUID
    ("1,1", "", "names a device twice"),
    ("x", "", "neither an index"),
    ("-1", "", None),  # CUDA's "no GPU"
    ("1,-1,0", "b", None),  # a negative index ends the list, on purpose
])
def test_cuda_visible_devices_is_resolved_as_cuda_does(value, expected, problem):
    gpus, (a, b, m0, m1) = machine()
    names = {id(a): "a", id(b): "b", id(m0): "m0", id(m1): "m1"}
    visible = resolve(value, gpus)
    assert " ".join(names[id(d)] for d in visible.devices) == expected
    if problem is None:
        assert visible.problem is None
    else:
        assert problem in visible.problem


def test_cuda_visible_devices_on_a_machine_without_gpus_is_a_warning_not_an_error():
    for value in ("0", "GPU-aab", "0,1"):
        visible = resolve(value, [])
        assert visible.devices == [] and visible.problem is None
        assert "NVML finds no GPU here: trials run on the CPU" in visible.warning
    assert resolve("-1", []).warning is None and resolve("", []).warning is None


def test_a_trial_gets_its_gpu_by_uuid_else_by_index_never_every_gpu():
    from gpusweep.gpu.device import DeviceInfo
    from gpusweep.process.launcher import cuda_visible_devices

    assert cuda_visible_devices(DeviceInfo("T4", "GPU-ab", 1, 15000.0)) == "GPU-ab"
    assert cuda_visible_devices(DeviceInfo("T4", None, 1, 15000.0)) == "1"
    with pytest.raises(ValueError):  # a MIG instance is named only by its UUID
        cuda_visible_devices(DeviceInfo("A100 MIG", None, 0, 9000.0, mig_index=1))


def test_a_mig_instance_whose_uuid_fails_is_left_out(sim):
    slices = [compose.mig(0, 0), compose.mig(0, 1)]
    sim([compose.gpu(0, mig=slices)], faults=[
        {"function": "nvmlDeviceGetUUID", "error": "Unknown", "gpu": slices[0]["uuid"]}])
    scan = scan_devices()
    assert [d.info.uuid for d in scan.devices] == [slices[1]["uuid"]]
    assert any("GPU 0/0 left out: its MIG- UUID could not be read" in p for p in scan.problems)


# -- the decisions -------------------------------------------------------------------------
def test_namespace_evidence():
    holds = {10: True, 20: None, 30: False}.get
    assert namespace_evidence({5: 1.0}, {5}, holds, set()) is Namespace.MATCHED
    assert namespace_evidence({10: 1.0}, set(), holds, set()) is Namespace.MATCHED
    assert namespace_evidence({3_000_005: 1.0}, {5}, holds, {5}) is Namespace.FOREIGN
    assert namespace_evidence({3_000_005: 1.0}, {5}, holds, set()) is Namespace.UNKNOWN
    assert namespace_evidence({}, {5}, holds, {5}) is Namespace.UNKNOWN
    assert namespace_evidence(None, {5}, holds, {5}) is Namespace.UNKNOWN


def test_foreign_needs_the_devices_memory_to_rise_and_a_match_undoes_it():
    unknown, foreign, matched = Namespace.UNKNOWN, Namespace.FOREIGN, Namespace.MATCHED
    # A trial opened the device files but allocated nothing yet: no rise, no votes.
    assert next_namespace(unknown, foreign, 0, False, 3) == (unknown, 0)
    assert next_namespace(unknown, foreign, 1, True, 3) == (unknown, 2)
    assert next_namespace(unknown, foreign, 2, True, 3) == (foreign, 3)
    assert next_namespace(unknown, unknown, 2, True, 3) == (unknown, 0)  # not in a row
    # A later reading naming a process of ours proves the PIDs are ours after all.
    assert next_namespace(foreign, matched, 0, False, 3) == (matched, 0)
    assert next_namespace(foreign, foreign, 0, True, 3) == (foreign, 0)
    assert next_namespace(matched, foreign, 0, True, 3) == (matched, 0)


def test_split_usage_by_owner():
    listed = {1: 100.0, 2: 200.0, 3: 400.0}
    assert split_usage(listed, {1}, {2}, Namespace.MATCHED) == Usage(100.0, 200.0, 400.0, True)
    unknown = split_usage(listed, {1}, {2}, Namespace.UNKNOWN)
    assert unknown.foreign_mb is None and unknown.tree_mb == 100.0  # 3 might be ours
    assert split_usage(listed, {1}, {2}, Namespace.FOREIGN) == Usage(None, None, None, False)
    assert split_usage({1: None}, {1}, set(), Namespace.MATCHED).tree_mb is None
    assert split_usage(None, {1}, set(), Namespace.MATCHED).foreign_mb is None
    assert split_usage({}, {1}, set(), Namespace.FOREIGN) == Usage(0.0, 0.0, 0.0, False)


@pytest.mark.parametrize(("args", "expected"), [
    ((True, False, True, True, Namespace.MATCHED, 512.0), (Attribution.PID, 512.0)),
    ((True, False, True, True, Namespace.MATCHED, None), (Attribution.PID, None)),
    ((False, True, True, True, Namespace.FOREIGN, 0.0), (Attribution.DEVICE_FILES, None)),
    ((False, False, True, True, Namespace.MATCHED, 0.0), (Attribution.PID, 0.0)),
    ((False, False, True, True, Namespace.FOREIGN, 0.0), (Attribution.DEVICE_FILES, 0.0)),
    ((False, False, False, False, Namespace.UNKNOWN, 0.0), (Attribution.NONE, None)),
])
def test_attribution_never_gives_a_false_zero(args, expected):
    assert attribute(*args) == expected


def test_energy_and_utilization_are_null_when_a_neighbour_shared_the_device(sim):
    sim([compose.gpu(0)])
    (device,) = scan_devices().devices
    alone, shared = GpuTrack(device), GpuTrack(device, lambda: {os.getpid()})
    for track in (alone, shared):
        track.sample({os.getpid()})
        track.stop()
    assert alone.summary().energy_j is not None and alone.summary().util_mean_pct == 0.0
    assert shared.summary().energy_j is None and shared.summary().util_mean_pct is None


def test_the_baseline_follows_foreign_memory_but_never_absorbs_unlisted_memory():
    # FAKE GPU: a colleague's process 77 appears (500 MB), then grows to 800 MB.
    device = FakeDevice([1000.0, 1500.0, 1800.0], holders=[{}, {77: 500.0}, {77: 800.0}])
    baselines = DeviceBaselines([device])
    baselines.start()
    assert baselines.get(device).used_mb == 1000.0
    baselines.before_launch(device, busy=True)  # a trial of ours is on it: keep
    assert baselines.get(device).used_mb == 1000.0
    baselines.before_launch(device, busy=False)
    assert baselines.get(device) == Baseline(1500.0, 500.0, 1)
    baselines.trial_ended(device, [42], clean=False)  # a dirty trial: its leak stays counted
    baselines.before_launch(device, busy=False)
    assert baselines.get(device).used_mb == 1500.0
    baselines.trial_ended(device, [43], clean=True)
    baselines.before_launch(device, busy=False)
    assert baselines.get(device) == Baseline(1800.0, 800.0, 1)
    # 900 MB that no process holds (a driver that kept a dead trial's memory): not absorbed
    leak = FakeDevice([1000.0, 1900.0])
    baselines = DeviceBaselines([leak])
    baselines.start()
    baselines.before_launch(leak, busy=False)
    assert baselines.get(leak).used_mb == 1000.0


def test_no_cuda_context_in_the_test_process():
    torch = sys.modules.get("torch")
    assert torch is None or not torch.cuda.is_initialized()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # conftest hides the GPU from tests


def test_gpu_check_says_there_is_no_gpu_and_writes_nothing(tmp_path):
    out = tmp_path / "GPU_CHECK.md"
    proc = subprocess.run([sys.executable, "tools/gpu_check.py", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and not out.exists()
    assert "gpu-check: no GPU on this machine" in proc.stderr
    listed = subprocess.run([sys.executable, "tools/gpu_check.py", "--dry-run"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60).stdout
    for step in ("-m pytest -m gpu", "test_gpu_cleanup.py", "./test_memory_cleanup.sh",
                 "bench/train_throughput.py", "bench/data_on_device.py",
                 "bench/inter_trial_overhead.py"):
        assert step in listed


def test_gpu_check_page_names_the_device_and_each_result(gpu_check):
    info = {"name": "NVIDIA H100 80GB HBM3", "capability": [9, 0], "torch": "2.11.0",
            "cuda": "13.0", "driver": "580.1", "nvml": ["0: NVIDIA H100 (GPU-1, 81559 MB)"]}
    first, second = gpu_check.steps(sys.executable)[:2]
    page = gpu_check.page(info, [gpu_check.Outcome(first, 0, 61.0, "3 passed"),
                                 gpu_check.Outcome(second, None, 0.0, "not run")], 61.0)
    assert "NVIDIA H100 80GB HBM3, compute capability 9.0" in page and "driver 580.1" in page
    assert "| pass | 61 |" in page and "| not run | 0 |" in page


def test_gpu_check_masks_secrets_in_a_failing_steps_tail(gpu_check, monkeypatch):
    key = "k3y" * 14
    monkeypatch.setenv("WANDB_API_KEY", key)
    step = gpu_check.Step("leaky", [sys.executable, "-c", "import os, sys; print('key is', "
                                    "os.environ['WANDB_API_KEY'], os.environ['MY_TOKEN']); "
                                    "sys.exit(1)"], 60, "prints secrets",
                          env={"MY_TOKEN": "t0ken-of-the-step"})
    outcome = gpu_check.run(step, 100.0, on_gpu=False)
    page = gpu_check.page({"nvml": []}, [outcome], 1.0)
    assert outcome.code == 1 and "key is *** ***" in page  # the tail is on the page, masked
    assert key not in page and "t0ken-of-the-step" not in page


def test_gpu_check_ends_a_timed_out_steps_whole_tree(gpu_check, tmp_path):
    """A step past its time takes what it started with it, even in a session of its own
    (a sweep's trials): left running, they would hold the GPU during the later steps."""
    pid_file = tmp_path / "escapee.pid"
    spawn = ("import subprocess, sys, time; "
             "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], "
             "start_new_session=True); "
             f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(300)")
    step = gpu_check.Step("hangs", [sys.executable, "-c", spawn], 3, "a step that hangs")
    try:
        outcome = gpu_check.run(step, 100.0, on_gpu=False)
        escapee = int(pid_file.read_text())
        assert outcome.code == 124 and "stopped after 3 s" in outcome.output
        assert not _alive(escapee)
    finally:
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), 9)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_holders_are_found_by_their_device_files_where_pids_are_the_hosts(sim):
    from gpusweep.gpu.wait import trial_holders

    path = sim([compose.gpu(0)], pid_offset=3_000_000)
    holder = subprocess.Popen([sys.executable, "-c", "import time; from simnvml import holder; "
                               "holder.hold(100); print('held', flush=True); time.sleep(60)"],
                              env=compose.environ(path), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        listed = {holder.pid + 3_000_000: 100.0}  # what NVML shows from inside a container
        assert trial_holders({holder.pid}, listed, Namespace.FOREIGN) == {holder.pid}
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert trial_holders({holder.pid}, listed, Namespace.FOREIGN) == set()


def test_a_gpu_listed_twice_is_refused():
    devices = [FakeDevice([0.0], index=0), FakeDevice([0.0], index=1)]
    with pytest.raises(BadInput, match="listed twice"):
        choose_devices("0,0", devices)
