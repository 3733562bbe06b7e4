"""The child-side runtime shared by ``gpusweep.trial`` and the trial bootstrap.

Standard library only, and never fatal: it also runs inside trials that do not import
gpusweep at all (through the bootstrap ``sitecustomize`` the launcher puts on their
``PYTHONPATH``), possibly under another interpreter than the orchestrator's.

- events: one JSON line appended per event to ``GPUSWEEP_EVENTS``;
- stack dumps: faulthandler on SIGUSR1 for every thread, announced as an event, so the
  orchestrator can get a stalled trial's stacks into its output.log before ending it;
- leak profiles (``GPUSWEEP_PROFILE_LEAKS=1``): tracemalloc snapshots at two points (the
  first report past the warm-up, and the trial's end) and the lines that grew most, largest
  growth first (sorting by ``abs()`` would put a shrinking cache above the leak), written to
  ``<trial-dir>/leaks.txt``;
- the trial's own memory (RSS, torch's CUDA peaks) and the numbers of a report, the same for
  ``gpusweep.trial.report`` and for a ``wandb.log`` the bootstrap turns into a report.

Its siblings: ``_gpusweep_contract`` (the names both sides agree on), ``_gpusweep_secrets``
(masking) and ``_gpusweep_signals`` (SIGTERM inside the trial).
"""

from __future__ import annotations

import os
import signal
import sys

if __package__:  # gpusweep.bootstrap._gpusweep_child: the trial API, the orchestrator's tests
    from gpusweep.bootstrap import _gpusweep_contract as contract
else:  # top-level, beside the bootstrap on the trial's PYTHONPATH
    import _gpusweep_contract as contract

STACK_SIGNAL = signal.SIGUSR1
# The wrappers the bootstrap puts on wandb keep the wrapped function under this attribute, so
# the trial API (which writes its own events) logs to W&B without a second event.
ORIGINAL_ATTR = "_gpusweep_original"
_MB = 1024.0 * 1024.0
# Loaded at every trial's start-up by the bootstrap: json, threading and time are imported
# when first needed, not here.
_state: dict = {"stack_pid": None, "baseline": None, "baseline_step": None, "lock": None,
                "reports": 0}


def append_event(event: dict) -> None:
    """Append one event line to the events file (flushed per line); no-op without it."""
    path = os.environ.get(contract.EVENTS_ENV)
    if not path:
        return
    import json
    import threading

    if _state["lock"] is None:
        _state["lock"] = threading.Lock()
    line = json.dumps(event, default=_json_default) + "\n"
    with _state["lock"], open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


def install_stack_dump() -> bool:
    """Dump every thread's Python stack to stderr on SIGUSR1, unless the program uses it.

    Announced as a ``stackdump`` event with this pid: the orchestrator signals only processes
    that announced, since SIGUSR1's default action would kill the others.
    """
    if not os.environ.get(contract.EVENTS_ENV) or _state["stack_pid"] == os.getpid():
        return False
    try:
        import faulthandler

        if signal.getsignal(STACK_SIGNAL) not in (signal.SIG_DFL, None):
            return False
        faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True)
    except (ImportError, ValueError, RuntimeError, OSError, AttributeError):
        return False
    import time

    _state["stack_pid"] = os.getpid()
    # Written by hand, not with json: this runs at every trial's start-up.
    _append_line(f'{{"kind": "stackdump", "t": {time.time():.3f}, "pid": {os.getpid()}, '
                 f'"signal": "{STACK_SIGNAL.name}"}}\n')
    return True


def _append_line(line: str) -> None:
    """One short line in one write (O_APPEND keeps concurrent writers' lines whole)."""
    path = os.environ.get(contract.EVENTS_ENV)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def profiling_leaks() -> bool:
    return os.environ.get(contract.PROFILE_LEAKS_ENV) == "1"


def start_leak_profile() -> None:
    """Start tracemalloc early (one frame per trace: lines are what the report groups by);
    the report is written at the trial's end (``session()`` or interpreter exit)."""
    if not profiling_leaks():
        return
    import atexit
    import tracemalloc

    if not tracemalloc.is_tracing():
        tracemalloc.start(1)
        atexit.register(write_leak_report)


def leak_checkpoint(report_index: int | None = None, warmup: int | None = None) -> None:
    """Take the first snapshot at the first report past the warm-up (the second point is
    the trial's end, in :func:`write_leak_report`). Reports are counted here when the caller
    does not give the index."""
    if report_index is None:
        report_index = _state["reports"]
        _state["reports"] += 1
    if not profiling_leaks() or _state["baseline"] is not None:
        return
    import tracemalloc

    if not tracemalloc.is_tracing():
        return
    if warmup is None:
        warmup = int(os.environ.get(contract.LEAK_WARMUP_ENV, contract.DEFAULT_LEAK_WARMUP))
    if report_index >= warmup:
        _state["baseline"] = _filtered(tracemalloc.take_snapshot())
        _state["baseline_step"] = report_index


def write_leak_report(top: int = 25) -> None:
    """Write ``leaks.txt``: the lines that grew most since the first snapshot, largest
    growth first (sorted by ``size_diff``, not by its absolute value)."""
    if _state["baseline"] is None or _state.get("written"):
        return
    import tracemalloc

    if not tracemalloc.is_tracing():
        return
    _state["written"] = True
    stats = _filtered(tracemalloc.take_snapshot()).compare_to(_state["baseline"], "lineno")
    stats.sort(key=lambda stat: stat.size_diff, reverse=True)  # growth first, not abs()
    lines = [f"# tracemalloc: growth from report {_state['baseline_step']} to the trial's end,",
             "# top lines by size_diff (largest growth first)"]
    lines += [str(stat) for stat in stats[:top]]
    _write_trial_file(contract.LEAKS_FILE, "\n".join(lines) + "\n")


def _filtered(snapshot):  # noqa: ANN001, ANN202 - tracemalloc types, imported lazily
    import tracemalloc

    return snapshot.filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<unknown>"),
        tracemalloc.Filter(False, __file__),
    ))


def _write_trial_file(name: str, text: str) -> None:
    directory = os.environ.get(contract.TRIAL_DIR_ENV)
    if not directory:
        return
    path = os.path.join(directory, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


# -- the trial's own memory and a report's numbers ---------------------------------------
def own_memory(reset: bool = False) -> dict:
    """RSS, and torch's CUDA peaks when torch is imported and CUDA initialised.

    ``reset``: start the peaks again after reading them, so each report's peaks cover the
    time since the previous report (a script reading ``torch.cuda.max_memory_allocated()``
    itself then sees the same window). Never imports torch nor initialises CUDA. After a
    sticky CUDA error the CUDA calls raise too: those figures are then left out (unknown).
    """
    memory: dict = {"rss_mb": rss_mb()}
    torch = sys.modules.get("torch")
    if torch is not None and cuda_initialised(torch):
        try:
            memory["torch_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / _MB
            memory["torch_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / _MB
            memory["torch_allocated_mb"] = torch.cuda.memory_allocated() / _MB
            if reset:
                torch.cuda.reset_peak_memory_stats()
        except Exception:
            pass
    return memory


def cuda_initialised(torch: object) -> bool:
    """Whether this process has a CUDA context (asking creates none)."""
    cuda = getattr(torch, "cuda", None)
    return bool(cuda is not None and hasattr(cuda, "is_initialized") and cuda.is_initialized())


def rss_mb() -> float | None:
    """This process's resident memory (``/proc/self/statm``; psutil where that is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MB
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return psutil.Process().memory_info().rss / _MB
        except Exception:
            return None


def memory_metrics(memory: dict) -> dict:
    """The dashboard names of a report's memory figures (absent ones are left out)."""
    names = {"torch_peak_allocated_mb": "memory/gpu_allocated_mb",
             "torch_peak_reserved_mb": "memory/gpu_reserved_mb", "rss_mb": "memory/rss_mb"}
    return {names[k]: round(v, 1) for k, v in memory.items()
            if k in names and isinstance(v, (int, float))}


def numeric_metrics(data: dict, prefix: str = "") -> dict:
    """Finite numbers of a ``wandb.log`` dict (nested dicts flattened with dots); media,
    tables, strings and the ``memory/*`` figures we added are left out."""
    out: dict = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numeric_metrics(value, f"{name}."))
            continue
        if name.startswith("memory/"):
            continue
        value = number(value)
        if value is not None:
            out[name] = value
    return out


def number(value: object) -> float | int | None:
    """A plain number (a one-element tensor's or numpy value's via ``.item()``); None for
    anything else: booleans, NaN, strings, arrays of more than one element."""
    if isinstance(value, bool) or value is None:
        return None
    if not isinstance(value, (int, float)):
        item = getattr(value, "item", None)
        if not callable(item) or getattr(value, "size", 1) not in (1, None):
            return None
        try:
            value = item()
        except Exception:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value


def to_python(value: object) -> object:
    """A tensor or numpy scalar as a plain Python number (``.item()``); others unchanged."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            pass
    return value


def _json_default(value: object) -> object:
    converted = to_python(value)
    return converted if converted is not value else str(value)
