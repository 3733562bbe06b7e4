"""The sweep's journal: one JSON line when a trial starts and one when it ends, fsynced.

It is what ``--resume`` rebuilds a sweep from after the orchestrator died, even by SIGKILL in
the middle of a write: a line that does not parse (a torn last line) is skipped, never fatal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

from gpusweep.records.model import TrialOrigin, TrialRecord


@dataclass(frozen=True)
class StartEntry:
    """A trial's start line (with its process group once its ``pid`` line came)."""

    run: str
    params: dict[str, Any] = field(default_factory=dict)
    token: str | None = None  # what every process of the trial carries in its environment
    t: float | None = None  # unix time of the start
    origin: TrialOrigin | None = None
    retry_of: str | None = None
    rerun_of: str | None = None
    pgid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The journal line; ``rerun_of`` only where there is one, as it always was."""
        entry = {"event": "start", "run": self.run, "params": self.params,
                 "token": self.token, "t": self.t,
                 "origin": None if self.origin is None else self.origin.value,
                 "retry_of": self.retry_of}
        if self.rerun_of:
            entry["rerun_of"] = self.rerun_of
        return entry

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> StartEntry:
        return cls(run=str(entry.get("run")), params=entry.get("params") or {},
                   token=entry.get("token"), t=entry.get("t"),
                   origin=TrialOrigin.parse(entry.get("origin")),
                   retry_of=entry.get("retry_of"), rerun_of=entry.get("rerun_of"),
                   pgid=entry.get("pgid"))


@dataclass(frozen=True)
class EndEntry:
    """A trial's end line: its whole record and its metric history (for the engine)."""

    record: TrialRecord
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Replay:
    """The journal read back: every start in order, every end, and the starts never ended."""

    starts: list[StartEntry] = field(default_factory=list)
    ends: list[EndEntry] = field(default_factory=list)
    unended: list[StartEntry] = field(default_factory=list)

    @property
    def retried(self) -> set[str]:
        """Runs that a later trial says it retries (``retry_of`` in its start)."""
        return {str(s.retry_of) for s in self.starts if s.retry_of}

    @property
    def tokens(self) -> set[str]:
        return {s.token for s in self.starts if s.token}


def replay(entries: list[dict[str, Any]]) -> Replay:
    """Typed entries from :meth:`Journal.read`; an end whose record does not parse is
    skipped like a torn line (its trial then counts as never ended)."""
    order: list[StartEntry] = []
    ends: list[EndEntry] = []
    open_runs: dict[str, StartEntry] = {}
    for entry in entries:
        run = str(entry.get("run"))
        if entry["event"] == "start":
            start = StartEntry.from_dict(entry)
            open_runs[run] = start
            order.append(start)
        elif entry["event"] == "pid" and run in open_runs:
            open_runs[run] = replace(open_runs[run], pgid=entry.get("pgid"))
        elif entry["event"] == "end" and isinstance(entry.get("record"), dict):
            try:
                record = TrialRecord.from_dict(entry["record"])
            except (TypeError, ValueError, KeyError):
                continue
            open_runs.pop(run, None)
            ends.append(EndEntry(record, entry.get("history") or []))
    return Replay(order, ends, list(open_runs.values()))


class Journal:
    """Append-only JSON lines, each flushed and fsynced before the call returns."""

    def __init__(self, path: str) -> None:
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if _ends_without_newline(fd):
                line = "\n" + line  # a torn line before us stays alone on its line
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every complete entry, in order; torn or garbled lines are ignored."""
        if not os.path.exists(self.path):
            return []
        entries = []
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "event" in entry:
                    entries.append(entry)
        return entries


def _ends_without_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"
