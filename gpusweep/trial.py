"""The trial side of gpusweep: what a training program calls from inside its subprocess.

The orchestrator and the trial talk through the environment and files only (no shared
memory): the launcher sets ``GPUSWEEP_EVENTS`` and the trial appends one JSON line per event
to that file. Importing this module is cheap on purpose: it imports neither torch nor wandb.
It looks at torch only when the program already has (``sys.modules``), so a trial never pays
for a CUDA start-up it did not ask for; wandb is imported at the first report, which also
starts the trial's W&B run (``gpusweep.wb.trial``; not with ``WANDB_MODE=disabled``).

Typical use::

    from gpusweep import trial

    def main():
        with trial.session():           # cleanup in a finally, SIGTERM becomes an exception
            for epoch in range(epochs):
                ...
                trial.report(step=epoch, val_loss=val_loss)
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from gpusweep.bootstrap import loaded
from gpusweep.bootstrap._gpusweep_contract import EVENTS_ENV, TOKEN_ENV, TRIAL_DIR_ENV
from gpusweep.bootstrap._gpusweep_secrets import redact

# The instances the bootstrap (sitecustomize) loaded, where it did: one state per process.
_child = loaded("_gpusweep_child")
_signals = loaded("_gpusweep_signals")

__all__ = ["EVENTS_ENV", "PARAM_PATH_ENV", "TOKEN_ENV", "TRIAL_DIR_ENV", "Terminated", "params",
           "redact_exception", "release_cuda_memory", "report", "report_error", "session"]
PARAM_PATH_ENV = "WANDB_SWEEP_PARAM_PATH"
_reports = 0

if os.environ.get(EVENTS_ENV):  # inside an orchestrated trial: stack dumps, leak profiling
    _child.install_stack_dump()
    _child.start_leak_profile()


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM arrives inside :func:`session`.

    A subclass of SystemExit so that ``except Exception`` in user code does not swallow it
    and the ``finally`` blocks still run; the process then exits with 128 + SIGTERM.
    """

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def params() -> dict[str, Any]:
    """The trial's parameters as a flat dict, read from W&B's sweep param file.

    Programs that take their parameters from argv (``${args}``) do not need this.
    """
    path = os.environ.get(PARAM_PATH_ENV)
    if not path or not os.path.exists(path):
        return {}
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return {k: v["value"] for k, v in data.items() if isinstance(v, dict) and "value" in v}


def report(step: int | None = None, **metrics: Any) -> None:
    """Record metrics for this step; the orchestrator reads them for Hyperband and records.

    Each report also carries the trial's own memory: the torch CUDA peaks since the previous
    report (when torch is imported and CUDA is initialised) and the process RSS.
    """
    global _reports
    memory = _child.own_memory(reset=True)
    event = {"kind": "report", "t": time.time(), "step": step, "metrics": _plain(metrics)}
    event["memory"] = memory
    _child.append_event(event)
    _log_to_wandb(step, event["metrics"], memory)
    _child.leak_checkpoint(_reports)
    _reports += 1


def report_error(exc: BaseException) -> None:
    """Record the exception that is ending the trial (its type decides OOM vs failure)."""
    _child.append_event(
        {
            "kind": "error",
            "t": time.time(),
            "type": type(exc).__name__,
            "message": redact(str(exc))[:2000],  # it may quote a key
            "memory": _child.own_memory(),
        }
    )


def redact_exception(exc: BaseException) -> None:
    """Mask secret values in the string arguments of ``exc`` and of the exceptions it
    chains, in place: every later print of it (Python's traceback in ``output.log``,
    wandb's copy of the console) then shows ``***``. A message may quote a key."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        except Exception:
            pass
        current = current.__cause__ or current.__context__


def release_cuda_memory() -> None:
    """Give back what this process holds on the GPU before it exits; best effort.

    gc first (tensors in reference cycles), then the caching allocator's free blocks, then
    wait for queued kernels, then CUDA IPC handles. Each CUDA step runs only when CUDA was
    initialised (calling this must never create a CUDA context), and each is guarded: after
    a sticky CUDA error (an illegal address, a device-side assert) every later CUDA call
    raises again, and the error that ended the trial must stay the one reported.
    """
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None or not _child.cuda_initialised(torch):
        return
    for step in ("empty_cache", "synchronize", "ipc_collect"):
        try:
            getattr(torch.cuda, step)()
        except Exception:  # the CUDA context is broken: the process exit frees it
            continue


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Wrap a training main so that cleanup runs on success, exception and SIGTERM.

    SIGTERM (the orchestrator's polite stop) is turned into :class:`Terminated` in the main
    thread so the ``finally`` runs; the exception that ends the trial is reported first so the
    orchestrator can tell an OOM from any other failure.
    """
    previous = _signals.on_sigterm(_terminate)
    ending: BaseException | None = None
    try:
        yield
    except Terminated as exc:
        ending = exc
        raise
    except BaseException as exc:
        ending = exc
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            redact_exception(exc)
            report_error(exc)
        raise
    finally:
        try:
            release_cuda_memory()
        finally:
            _child.write_leak_report()
            _finish_wandb(ending)
            _signals.restore_sigterm(previous)


def _log_to_wandb(step: int | None, metrics: dict[str, Any], memory: dict[str, Any]) -> None:
    """Every report also goes to the trial's W&B run (``gpusweep.wb.trial``, imported on
    first use): only inside a trial, and not with ``WANDB_MODE=disabled``."""
    if not os.environ.get(EVENTS_ENV) or os.environ.get("WANDB_MODE") == "disabled":
        return
    from gpusweep.wb import trial as wandb_trial

    wandb_trial.log(step, metrics, memory)


def _finish_wandb(ending: BaseException | None) -> None:
    """Finish the W&B run the reports started, if they started one (its module is imported
    only then), with the exit code of the exception ending the session."""
    wandb_trial = sys.modules.get("gpusweep.wb.trial")
    if wandb_trial is not None:
        wandb_trial.finish(ending)


def _terminate(signum: int) -> None:
    raise Terminated()


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON-friendly Python values (tensors and numpy scalars via .item())."""
    return {key: _child.to_python(value) for key, value in metrics.items()}
