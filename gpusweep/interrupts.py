"""Ctrl-C, SIGTERM and SIGHUP during a sweep: a flag the runner's loop reads, never an
exception in the middle of a trial's bookkeeping."""

from __future__ import annotations

import signal
from typing import Any

from gpusweep.status import StopReason


class Interrupts:
    """Ctrl-C, SIGTERM and SIGHUP set :attr:`reason`; the loop stops the trials cleanly
    (whole trees, within ``grace_s``) and exits 130. SIGTERM is a scheduler taking the machine
    back (Slurm's preemption or ``scancel``, Kubernetes): the trials' runs are marked
    preempting, so the W&B server hands them out again."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None  # INTERRUPT, or PREEMPT for SIGTERM
        self._previous: dict[int, Any] = {}

    def _caught(self, signum: int, frame: Any) -> None:
        if self.reason is None:
            self.reason = (StopReason.PREEMPT if signum == signal.SIGTERM
                           else StopReason.INTERRUPT)

    def trap(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # HUP: the ssh went away
            try:
                self._previous[sig] = signal.signal(sig, self._caught)
            except ValueError:  # not the main thread (tests driving the runner directly)
                pass

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
