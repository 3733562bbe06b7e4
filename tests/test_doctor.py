"""``gpusweep doctor``: its checks as pure functions over facts, then the real command on the
SIMULATED NVML's scenarios (tests/simnvml): containers, MIG, old bindings, a lost GPU, a bad
``CUDA_VISIBLE_DEVICES``, other users' processes, a stale ``WANDB_SERVICE``, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, program
from simnvml import compose

from gpusweep.doctor import (
    DEVICE_TOTALS,
    Level,
    check_containment,
    check_gpu,
    check_wandb,
    exit_code,
    pid_namespace,
)
from gpusweep.doctor_probe import (
    ContainmentFacts,
    GpuFacts,
    ListedProcess,
    WandbFacts,
    service_state,
)
from gpusweep.gpu.device import Namespace
from gpusweep.process.cgroup import Containment

CONTAINER = 3_000_000  # NVML reports host PIDs: ours plus this offset
SECRET = "sk-doctor-0123456789abcdef0123456789"


# -- the checks, on plain facts ------------------------------------------------------------
def listed(pid=10, context=None, here=True, ours=True):
    return ListedProcess(pid, 100.0, here, context, ours)


def test_pid_namespace_needs_proof_either_way():
    assert pid_namespace([]) is Namespace.UNKNOWN
    assert pid_namespace([listed(context=True), listed(context=False)]) is Namespace.MATCHED
    # host PIDs: absent here, or a process here (pid 1) that holds no CUDA context
    assert pid_namespace([listed(here=False, context=False),
                          listed(pid=1, context=False)]) is Namespace.FOREIGN
    # another user's process whose files we may not read: cannot tell
    assert pid_namespace([listed(context=None, ours=False)]) is Namespace.UNKNOWN


def gpu_facts(**keys):
    facts = dict(label="0", name="Tesla T4", uuid="GPU-1", mig=False, visible=True,
                 total_mb=15360.0, used_mb=300.0, processes=(),
                 queries={"Compute": "nvmlDeviceGetComputeRunningProcesses_v3"})
    facts.update(keys)
    return GpuFacts(**facts)


def test_unreadable_gpu_memory_is_a_guarantee_off():
    lines = check_gpu(gpu_facts(used_mb=None, error="nvmlDeviceGetMemoryInfo: NoPermission"))
    assert lines[0].level is Level.OFF and "NoPermission" in lines[0].found
    assert exit_code(lines) == 1
    assert exit_code(check_gpu(gpu_facts())) == 0


def test_unreadable_process_lists_mean_device_totals_only():
    line = check_gpu(gpu_facts(processes=None, queries=None))[-1]
    assert line.level is Level.LIMITED and DEVICE_TOTALS in line.means


def test_a_hidden_gpu_is_one_note():
    [line] = check_gpu(gpu_facts(visible=False))
    assert line.level is Level.NOTE and "hidden by CUDA_VISIBLE_DEVICES" in line.found


def test_no_subreaper_is_off_and_no_cgroup_is_limited():
    facts = ContainmentFacts(False, "Operation not permitted",
                             Containment("subreaper", note="no cgroup v2 hierarchy is mounted"))
    lines = check_containment(facts)
    assert [line.level for line in lines] == [Level.OFF, Level.LIMITED]
    assert "no cgroup v2 hierarchy" in lines[1].found and exit_code(lines) == 1


def wandb_facts(**keys):
    facts = dict(mode=None, base_url="https://api.wandb.ai", credentials=False,
                 credentials_error=None, project="uncategorized", project_from="default",
                 entity=None, service=None, service_alive=None)
    facts.update(keys)
    return WandbFacts(**facts)


def test_wandb_offline_and_logged_out_is_no_failure():
    lines = check_wandb(wandb_facts())
    assert exit_code(lines) == 0 and "offline" in lines[0].means
    assert "wandb login" in lines[1].means


def test_a_stale_service_is_named_with_its_pid_only(tmp_path):
    gone = 2**22 + 12345  # above the default pid_max: never a live process
    assert service_state(f"2-{gone}-unix-{tmp_path}/socket") == (f"pid {gone}", False)
    assert service_state(f"2-{gone}-tcp-localhost-4242") == (f"pid {gone}", False)
    assert service_state("garbage") == ("unreadable", None)
    line = check_wandb(wandb_facts(service=f"pid {gone}", service_alive=False))[-1]
    assert line.level is Level.LIMITED and "unset it" in line.means


# -- the command, on simulated GPUs ----------------------------------------------------------
def doctor(scenario: Path, *args: str, **env: str) -> tuple[int, dict]:
    environ = compose.environ(scenario, **env)
    for name in ("WANDB_SERVICE", "WANDB_PROJECT", "WANDB_ENTITY"):
        environ.pop(name, None)
    environ.update(env)
    proc = subprocess.run([sys.executable, "-m", "gpusweep", "doctor", "--json", *args],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def lines_of(data: dict, topic: str) -> list[dict]:
    return [line for line in data["lines"] if line["topic"] == topic]


@pytest.fixture
def colleague():
    procs = []

    def start(scenario: Path) -> None:
        state = Path(json.loads(scenario.read_text())["state_dir"])
        proc = subprocess.Popen([sys.executable, program("sim_colleague.py"), "--mb=1500",
                                 "--max_s=60"], cwd=ROOT, env=compose.environ(scenario),
                                start_new_session=True)
        procs.append(proc)
        deadline = time.monotonic() + 30
        while not (state / "colleague.ready").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no colleague"
            time.sleep(0.02)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_container_without_host_pids_gives_device_totals_only(tmp_path, colleague):
    scenario = compose.scenario(tmp_path, [compose.gpu(0)], pid_offset=CONTAINER)
    colleague(scenario)  # a process here with a CUDA context, listed under a host PID
    code, data = doctor(scenario)
    [line] = lines_of(data, "PID namespace")
    assert line["level"] == "limited" and DEVICE_TOTALS in line["means"]
    assert code == 0  # attribution is weaker, the GPU-clean guarantee still holds


def test_host_pids_attribute_by_pid_and_no_process_means_cannot_tell(tmp_path, colleague):
    scenario = compose.scenario(tmp_path, [compose.gpu(0)])
    code, data = doctor(scenario)
    assert code == 0 and lines_of(data, "PID namespace")[0]["level"] == "note"
    colleague(scenario)
    code, data = doctor(scenario)
    [line] = lines_of(data, "PID namespace")
    assert line["level"] == "ok" and "attribution: pid" in line["means"]
    [gpu] = data["facts"]["nvml"]["gpus"]
    assert [p["mb"] for p in gpu["processes"]] == [1500.0]  # ours: not "another user's"
    assert not any("not ours" in line["found"] for line in lines_of(data, "GPU 0"))


def test_other_users_processes_and_mig_and_visible_devices(tmp_path):
    foreign = [{"pid": 4_000_001, "mb": 700.0}]
    gpus = [compose.gpu(0, processes=foreign), compose.gpu(1, mig=[compose.mig(1, 0),
                                                                   compose.mig(1, 1)])]
    scenario = compose.scenario(tmp_path, gpus)
    code, data = doctor(scenario, CUDA_VISIBLE_DEVICES="0")
    assert code == 0
    assert lines_of(data, "GPU 0")[-1]["found"].endswith("not visible here), 700 MB")
    assert all(line["level"] == "note" for line in lines_of(data, "GPU 1/0"))
    code, data = doctor(scenario, CUDA_VISIBLE_DEVICES="1")
    visible = lines_of(data, "CUDA_VISIBLE_DEVICES")[0]["found"]
    assert "devices 1/0, 1/1 are ours" in visible
    assert any("MIG" in line["found"] for line in lines_of(data, "GPU 1/1"))


def test_a_refused_visible_devices_entry_and_unreadable_memory_exit_1(tmp_path):
    scenario = compose.scenario(tmp_path, [compose.gpu(0)])
    code, data = doctor(scenario, CUDA_VISIBLE_DEVICES="0,7")
    [line] = lines_of(data, "CUDA_VISIBLE_DEVICES")
    assert code == 1 and line["level"] == "off" and "'7'" in line["found"]
    scenario = compose.scenario(tmp_path, [compose.gpu(0, memory_error="NoPermission")])
    code, data = doctor(scenario)
    assert code == 1 and lines_of(data, "GPU 0")[0]["level"] == "off"


def test_a_lost_gpu_is_left_out_and_old_bindings_use_the_plain_query(tmp_path):
    gpus = [compose.gpu(0, handle_error="GpuIsLost"), compose.gpu(1)]
    scenario = compose.scenario(tmp_path, gpus, bindings="v1")
    code, data = doctor(scenario)
    assert any("GPU 0 left out" in line["found"] for line in lines_of(data, "GPUs"))
    queries = lines_of(data, "GPU 1")[1]["found"]
    assert "Compute plain" in queries and "v3" not in queries.replace("(v1 or v3)", "")
    assert code == 0


def test_a_bad_nvml_module_is_off(tmp_path):
    scenario = compose.scenario(tmp_path, [compose.gpu(0)])
    code, data = doctor(scenario, GPUSWEEP_NVML_MODULE="no_such_nvml")
    [line] = lines_of(data, "NVML")
    assert code == 1 and line["level"] == "off" and "no_such_nvml" in line["found"]


def test_no_driver_is_a_cpu_machine_but_a_failing_nvml_is_off(tmp_path):
    scenario = compose.scenario(tmp_path, [], driver=None)
    code, data = doctor(scenario)
    assert code == 0 and lines_of(data, "NVML")[0]["found"].startswith("no GPU")
    faults = [{"function": "nvmlDeviceGetCount", "error": "Unknown"}]
    scenario = compose.scenario(tmp_path, [compose.gpu(0)], faults=faults)
    code, data = doctor(scenario)
    [line] = lines_of(data, "NVML")
    assert code == 1 and line["level"] == "off" and "Unknown" in line["found"]


def test_secrets_never_reach_the_output(tmp_path):
    scenario = compose.scenario(tmp_path, [compose.gpu(0)])
    environ = compose.environ(scenario, WANDB_API_KEY=SECRET, MY_TOKEN=SECRET + "x")
    for args in ((), ("--json",)):
        proc = subprocess.run([sys.executable, "-m", "gpusweep", "doctor", *args], cwd=ROOT,
                              env=environ, capture_output=True, text=True, timeout=60)
        assert SECRET not in proc.stdout + proc.stderr
    assert "credentials found" in proc.stdout  # the key was seen, never printed


def test_the_project_is_the_one_the_sweep_file_would_use(tmp_path):
    scenario = compose.scenario(tmp_path, [compose.gpu(0)])
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"program: {ROOT / program('reporter.py')}\nproject: nightly\n"
                     "entity: team\nmethod: grid\nparameters: {x: {values: [1]}}\n")
    code, data = doctor(scenario, "--sweep-config", str(sweep))
    [line] = lines_of(data, "W&B project")
    assert line["found"] == f"nightly ({sweep}'s project), entity team"
    sweep.write_text("method: nope\n")
    environ = compose.environ(scenario)
    proc = subprocess.run([sys.executable, "-m", "gpusweep", "doctor", "--sweep-config",
                           str(sweep)], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and str(sweep) in proc.stderr and "Traceback" not in proc.stderr
