"""The child-side runtime shared by ``gpusweep.trial`` and the trial bootstrap.

Standard library only, and never fatal: it also runs inside trials that do not import
gpusweep at all (through the bootstrap ``sitecustomize`` the launcher puts on their
``PYTHONPATH``), possibly under another interpreter than the orchestrator's.

- events: one JSON line appended per event to ``GPUSWEEP_EVENTS``;
- stack dumps: faulthandler on SIGUSR1 for every thread, announced as an event, so the
  orchestrator can get a stalled trial's stacks into its output.log before ending it;
- leak profiles (``GPUSWEEP_PROFILE_LEAKS=1``): tracemalloc snapshots at two points (the
  first report past the warm-up, and the trial's end) and the lines that grew most, largest
  growth first (seed 001's report sorted by ``abs()`` and hid its leak), written to
  ``<trial-dir>/leaks.txt``.
"""

from __future__ import annotations

import os
import signal
import sys

STACK_SIGNAL = signal.SIGUSR1
# Loaded at every trial's start-up by the bootstrap: json, threading and time are imported
# when first needed, not here.
_state: dict = {"stack_pid": None, "baseline": None, "baseline_step": None, "lock": None,
                "reports": 0}


def append_event(event: dict) -> None:
    """Append one event line to ``GPUSWEEP_EVENTS`` (flushed per line); no-op without it."""
    path = os.environ.get("GPUSWEEP_EVENTS")
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
    if not os.environ.get("GPUSWEEP_EVENTS") or _state["stack_pid"] == os.getpid():
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
    path = os.environ.get("GPUSWEEP_EVENTS")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def profiling_leaks() -> bool:
    return os.environ.get("GPUSWEEP_PROFILE_LEAKS") == "1"


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
        warmup = int(os.environ.get("GPUSWEEP_LEAK_WARMUP", "2"))
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
    _write_trial_file("leaks.txt", "\n".join(lines) + "\n")


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
    directory = os.environ.get("GPUSWEEP_TRIAL_DIR")
    if not directory:
        return
    path = os.path.join(directory, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


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
