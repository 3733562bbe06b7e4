"""Signals to the orchestrator, in one place: what makes a sweep stop cleanly.

Ctrl-C (SIGINT), SIGTERM and SIGHUP (the ssh went away) never act inside the handler: the
handler only notes why the sweep must stop, and the runner's loop acts on it between steps,
ending every trial's whole tree within ``grace_s`` and exiting 130. SIGTERM is a scheduler
taking the machine back (Slurm's preemption or ``scancel``, Kubernetes): the trials' runs
are then marked preempting, so the W&B server hands them out again.

The trial side of signals lives beside the bootstrap (``bootstrap/_gpusweep_signals.py``),
and the launcher (``reaper``) takes its signals synchronously with ``sigwaitinfo``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from typing import Any

from gpusweep.status import StopReason

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Handlers = dict[int, Any]  # signal -> the handler that was there before


def stop_reason(signum: int) -> StopReason:
    """Why the sweep stops on this signal: SIGTERM preempts, the others interrupt."""
    return StopReason.PREEMPT if signum == signal.SIGTERM else StopReason.INTERRUPT


def trap(on_signal: Callable[[int], None],
         signals: Iterable[int] = STOP_SIGNALS) -> Handlers:
    """Call ``on_signal(signum)`` for each of ``signals``; returns what was there before,
    for :func:`restore`. Outside the main thread (tests driving the runner directly) no
    handler can be installed: those signals keep theirs."""
    previous: Handlers = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: on_signal(signum))
        except ValueError:  # not the main thread
            pass
    return previous


def restore(previous: Handlers) -> None:
    """Put back the handlers :func:`trap` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
