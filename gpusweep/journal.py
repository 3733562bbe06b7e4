"""The sweep's journal: one JSON line when a trial starts and one when it ends, fsynced.

It is what ``--resume`` rebuilds a sweep from after the orchestrator died, even by SIGKILL in
the middle of a write: a line that does not parse (a torn last line) is skipped, never fatal.
"""

from __future__ import annotations

import json
import os
from typing import Any


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
