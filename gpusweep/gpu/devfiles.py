"""Which processes hold a CUDA context, seen through their open device files.

NVML names GPU processes by PID, and inside a container without ``--pid=host`` those are
host PIDs that match none of ours. A process with a CUDA context has ``/dev/nvidia-uvm``
open (with ``/dev/nvidiactl`` and ``/dev/nvidia<N>``), which ``/proc/<pid>/fd`` shows in any
PID namespace; forked DataLoader workers that inherited the context show it too. NVML users
without CUDA (our own orchestrator, wandb's GPU stats, nvidia-smi) open ``nvidiactl`` and
``nvidia<N>`` but not ``nvidia-uvm``, so only ``nvidia-uvm`` counts. It tells who holds the
GPU, not how much.

``GPUSWEEP_DEVICE_DIR`` (default ``/dev``) is where those files live; the tests' simulated
GPU puts its own there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

DEVICE_DIR_ENV = "GPUSWEEP_DEVICE_DIR"
CONTEXT_FILE = "nvidia-uvm"


def context_file(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return os.path.join(environ.get(DEVICE_DIR_ENV) or "/dev", CONTEXT_FILE)


def holds_context(pid: int, target: str | None = None) -> bool | None:
    """Whether ``pid`` has the CUDA context file open; None when its fds cannot be read
    (another user's process); False for a process that is gone."""
    target = target or context_file()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}") == target:
                return True
        except OSError:  # closed meanwhile, or the process left
            continue
    return False


def context_holders(pids: Iterable[int]) -> tuple[set[int], set[int]]:
    """(the pids holding a CUDA context, the pids whose fds could not be read)."""
    target = context_file()
    holders: set[int] = set()
    unreadable: set[int] = set()
    for pid in pids:
        held = holds_context(pid, target)
        if held:
            holders.add(pid)
        elif held is None:
            unreadable.add(pid)
    return holders, unreadable
