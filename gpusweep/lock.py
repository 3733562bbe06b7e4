"""One orchestrator per sweep directory: a lock file holding the owner's pid.

``flock`` makes the lock die with its owner, even on SIGKILL, so a stale lock from a dead
process is simply taken over; the pid inside only serves the message.
"""

from __future__ import annotations

import fcntl
import os

from gpusweep.errors import BadInput
from gpusweep.records.layout import SweepLayout


class SweepLock:
    def __init__(self, sweep_dir: str) -> None:
        self.path = SweepLayout(sweep_dir).lock
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BadInput(os.path.dirname(self.path), "lock",
                           f"another orchestrator (pid {owner}) is running this sweep") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Unlock; the file stays (unlinking it could let two owners hold two files)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
