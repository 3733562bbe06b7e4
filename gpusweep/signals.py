"""Signals to the orchestrator, in one place: what makes a sweep stop cleanly.

Ctrl-C (SIGINT), SIGTERM and SIGHUP (the ssh went away) never act inside the handler: the
handler only notes why the sweep must stop, and the runner's loop acts on it between steps,
ending every trial's whole tree within ``grace_s`` and exiting 130. SIGTERM is a scheduler
taking the machine back (Slurm's preemption or ``scancel``, Kubernetes): the trials' runs
are then marked preempting, so the W&B server hands them out again.

:func:`deadline` bounds a blocking step of a parent-side process with SIGALRM (the W&B
summary subprocess). The trial side of signals lives beside the bootstrap
(``bootstrap/_gpusweep_signals.py``), and the launcher (``reaper``) takes its signals
synchronously with ``sigwaitinfo``.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterable, Iterator
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


@contextlib.contextmanager
def deadline(seconds: float, message: str) -> Iterator[None]:
    """Raise ``TimeoutError(message)`` in the block once it has run ``seconds`` (SIGALRM, so
    whole seconds, at least one; the main thread only). A blocking call that never returns
    (a W&B service that does not answer) is cut short too, which a check between steps is
    not. The alarm is cancelled and the handler put back when the block ends."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(message)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(max(1, int(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
