"""What ``gpusweep doctor`` reads from this machine: plain facts, no judgement.

Each reading goes through the module the sweep itself uses (NVML through
:mod:`gpusweep.gpu.scan` and :mod:`gpusweep.gpu.visible`, containment through
:mod:`gpusweep.process.cgroup`, W&B through :mod:`gpusweep.wb.env` and
:mod:`gpusweep.wb.cloud_check`), so doctor sees what a sweep would see. :mod:`gpusweep.doctor`
decides what the facts mean. A reading that could not be taken is None with the reason.
No secret is ever read into a fact: only whether W&B credentials exist.

Side effects are those of a sweep's first trial, no more: :func:`gpusweep.process.cgroup.detect`
creates and removes a test cgroup (and enables the memory controller for children where it
may), and this process becomes a subreaper for a moment to prove that it can.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gpusweep.config import SweepSpec
from gpusweep.process.cgroup import Containment

PR_SET_CHILD_SUBREAPER = 36  # prctl(2), Linux 3.4+
PR_GET_CHILD_SUBREAPER = 37
# wandb 0.31's service token (sdk/lib/service/service_token.py): <version>-<pid>-unix-<path>
# or <version>-<pid>-tcp-localhost-<port>; the pid is the process that started the service.
_SERVICE_TOKEN = re.compile(r"^[^-]+-(?P<pid>\d+)-(?P<kind>unix|tcp)-(?P<where>.+)$")


@dataclass(frozen=True)
class ListedProcess:
    """A process NVML lists on a GPU, as seen from here."""

    pid: int
    mb: float | None
    here: bool  # a process with this PID exists in our PID namespace
    context: bool | None  # it holds the CUDA context file here (None: fds unreadable)
    ours: bool | None  # it runs as our user (None: not here, or unreadable)


@dataclass(frozen=True)
class GpuFacts:
    """One device trials could run on (a GPU, or a MIG instance)."""

    label: str
    name: str
    uuid: str | None
    mig: bool
    visible: bool  # CUDA_VISIBLE_DEVICES leaves it to us
    total_mb: float | None
    used_mb: float | None
    processes: tuple[ListedProcess, ...] | None  # None: NVML's lists could not be read
    queries: dict[str, str | None] | None  # process list -> the query that answers it
    error: str | None = None  # NVML's last error on this device


@dataclass(frozen=True)
class NvmlFacts:
    module: str
    loaded: bool  # the module imported and nvmlInit answered
    driver: str | None = None
    nvml_version: str | None = None
    gpus: tuple[GpuFacts, ...] = ()
    problems: tuple[str, ...] = ()  # GPUs left out, NVML errors
    visible_env: str | None = None  # CUDA_VISIBLE_DEVICES as set (None: unset)
    visible_problem: str | None = None
    error: str | None = None  # why NVML could not be used at all
    bad_module: bool = False  # the NVML module named by the environment cannot be used


@dataclass(frozen=True)
class ContainmentFacts:
    subreaper: bool | None  # prctl(PR_SET_CHILD_SUBREAPER) works here
    subreaper_error: str | None
    cgroup: Containment


@dataclass(frozen=True)
class WandbFacts:
    mode: str | None  # WANDB_MODE as set
    base_url: str | None
    credentials: bool | None  # a key or token wandb would find (None: could not tell)
    credentials_error: str | None
    project: str  # the project a sweep started here would use
    project_from: str
    entity: str | None
    service: str | None  # WANDB_SERVICE's process, "pid N", when set
    service_alive: bool | None  # its process is still there


@dataclass(frozen=True)
class Facts:
    nvml: NvmlFacts
    containment: ContainmentFacts
    wandb: WandbFacts


def gather(environ: Mapping[str, str] | None = None, sweep: SweepSpec | None = None) -> Facts:
    """Every fact; ``sweep`` (a sweep file) decides the W&B project as it would in a sweep."""
    environ = os.environ if environ is None else environ
    return Facts(nvml_facts(environ), containment_facts(), wandb_facts(environ, sweep))


# -- NVML ---------------------------------------------------------------------------------
def nvml_facts(environ: Mapping[str, str]) -> NvmlFacts:
    """Every GPU NVML opens, which of them ``CUDA_VISIBLE_DEVICES`` leaves, their processes."""
    from gpusweep.errors import BadInput
    from gpusweep.gpu.device import DEFAULT_NVML_MODULE, NVML_MODULE_ENV, load_nvml
    from gpusweep.gpu.scan import scan_devices
    from gpusweep.gpu.visible import ENV, visible_devices

    module = environ.get(NVML_MODULE_ENV, "").strip() or DEFAULT_NVML_MODULE
    try:
        nvml = load_nvml(environ)
    except BadInput as exc:
        return NvmlFacts(module, False, error=str(exc), bad_module=True)
    if nvml is None:
        return NvmlFacts(module, False, error=f"{module} (nvidia-ml-py) is not installed")
    scan = scan_devices(environ)
    if scan.driver is None and not scan.gpus:
        why = "; ".join(scan.problems) or "no NVIDIA driver (NVML did not initialise)"
        return NvmlFacts(module, False, problems=tuple(scan.problems), error=why)
    visible = visible_devices(scan, environ)
    chosen = {id(unit) for unit in visible.devices}
    gpus = tuple(_gpu_facts(unit, id(unit) in chosen, gpu.mig)
                 for gpu in scan.gpus for unit in gpu.units)
    return NvmlFacts(module, True, scan.driver, _nvml_version(nvml), gpus,
                     tuple(scan.problems), environ.get(ENV), visible.problem)


def _gpu_facts(unit, visible: bool, mig: bool) -> GpuFacts:
    from gpusweep.gpu import devfiles

    listed = unit.process_memory_mb()
    processes = None if listed is None else tuple(
        _listed(pid, mb, devfiles.holds_context) for pid, mb in sorted(listed.items()))
    return GpuFacts(unit.info.label, unit.info.name, unit.info.uuid, mig, visible,
                    unit.info.total_mb, unit.used_mb(), processes, unit.process_queries(),
                    unit.last_error)


def _listed(pid: int, mb: float | None, holds_context) -> ListedProcess:
    import psutil

    try:
        uids = psutil.Process(pid).uids()
        here, ours = True, uids.real == os.getuid()
    except psutil.NoSuchProcess:
        here, ours = False, None
    except psutil.Error:
        here, ours = True, None
    return ListedProcess(pid, mb, here, holds_context(pid) if here else False, ours)


def _nvml_version(nvml) -> str | None:
    try:
        value = nvml.nvmlSystemGetNVMLVersion()
    except Exception:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


# -- containment --------------------------------------------------------------------------
def containment_facts() -> ContainmentFacts:
    from gpusweep.process import cgroup

    works, error = subreaper_works()
    return ContainmentFacts(works, error, cgroup.detect())


def subreaper_works() -> tuple[bool | None, str | None]:
    """Whether this process may become a child subreaper, as each trial's launcher does
    (set, then put back as it was)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        before = ctypes.c_int(0)
        libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(before), 0, 0, 0)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return False, os.strerror(ctypes.get_errno())
        libc.prctl(PR_SET_CHILD_SUBREAPER, before.value, 0, 0, 0)
        return True, None
    except (OSError, AttributeError) as exc:  # not Linux, or no prctl
        return None, f"prctl is not available: {exc}"


# -- W&B ----------------------------------------------------------------------------------
def wandb_facts(environ: Mapping[str, str], sweep: SweepSpec | None = None) -> WandbFacts:
    from gpusweep.wb.env import DEFAULT_PROJECT, resolve_entity, resolve_project

    base_url, credentials, error = _credentials()
    yaml_project, program = (sweep.project, sweep.program) if sweep else (None, None)
    project = resolve_project(None, yaml_project, program, environ)
    if environ.get("WANDB_PROJECT"):
        source = "WANDB_PROJECT"
    elif yaml_project:
        source = f"{sweep.path}'s project"
    elif project == DEFAULT_PROJECT:
        source = "wandb's default outside a git repository"
    else:
        source = "wandb's settings or this git repository's name"
    service, alive = service_state(environ.get("WANDB_SERVICE"))
    return WandbFacts(environ.get("WANDB_MODE"), base_url, credentials, error, project, source,
                      resolve_entity(None, sweep.entity if sweep else None, environ),
                      service, alive)


def _credentials() -> tuple[str | None, bool | None, str | None]:
    from gpusweep.wb import cloud_check

    try:
        base_url, found = cloud_check.credentials()
    except Exception as exc:  # a broken wandb settings file: wandb would fail as well
        return None, None, f"{type(exc).__name__}: {exc}"
    return base_url, found, None


def service_state(token: str | None) -> tuple[str | None, bool | None]:
    """(``pid N`` of the process that started ``WANDB_SERVICE``'s service, whether it lives)."""
    if not token:
        return None, None
    match = _SERVICE_TOKEN.match(token)
    if match is None:
        return "unreadable", None
    import psutil

    pid = int(match["pid"])
    alive = psutil.pid_exists(pid)
    if alive and match["kind"] == "unix":
        alive = os.path.exists(match["where"])
    return f"pid {pid}", alive
