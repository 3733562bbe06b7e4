"""A trial's accounting: what the orchestrator notes about it while it runs, for its record.

Apart from the trial's process (:mod:`gpusweep.trialrun`) so that what the record says (when
each phase happened, why we stopped it, what ending its tree took) is plain data, filled in
by the process side and read by :mod:`gpusweep.trialrecord`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from gpusweep.cleanup import EndResult
from gpusweep.status import StopReason


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def iso_from_unix(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


@dataclass
class TrialAccount:
    """Times, our reason to stop the trial, and each ending of its tree."""

    started_iso: str = ""
    t_start: float = 0.0  # monotonic
    t_exit: float | None = None  # monotonic, once its main process is gone
    stop_reason: StopReason | None = None
    reason_text: str | None = None
    ends: list[EndResult] = field(default_factory=list)
    unix: dict[str, float] = field(default_factory=dict)  # phase -> unix time: the timeline

    def started(self) -> None:
        self.started_iso = now_iso()
        self.t_start = time.monotonic()
        self.phase("start")

    def phase(self, name: str) -> None:
        """Note when a phase of the record's timeline happened (start, exit, wait_*)."""
        self.unix[name] = time.time()

    def exited(self) -> None:
        """The trial's main process is gone (the first time counts)."""
        if self.t_exit is None:
            self.t_exit = time.monotonic()
            self.phase("exit")

    def stop(self, reason: StopReason, text: str | None) -> bool:
        """Our reason to stop it; the first one sticks. True when this one was taken."""
        if self.stop_reason is not None:
            return False
        self.stop_reason, self.reason_text = reason, text
        return True

    def forget_stop(self) -> None:
        """It ended on its own before we signalled anything: its exit decides."""
        self.stop_reason = self.reason_text = None

    def note(self, text: str) -> None:
        """Why it ended when we know and the exit status does not say (a lost launcher)."""
        self.reason_text = self.reason_text or text

    def tree_ended(self, end: EndResult) -> None:
        self.ends.append(end)
        if end.leftover:
            self.reason_text = (self.reason_text or "") + \
                f" (pids {', '.join(map(str, end.leftover))} survived SIGKILL)"

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None or self.t_exit is not None

    def elapsed_s(self, now: float) -> float:
        return now - self.t_start

    def duration_s(self) -> float:
        return round((self.t_exit or time.monotonic()) - self.t_start, 3)
