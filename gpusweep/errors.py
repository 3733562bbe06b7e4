"""Exit codes and the one exception that means "the user's input is wrong"."""

from __future__ import annotations

import errno
import os

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_GPU_DIRTY = 3
EXIT_FLAPPING = 4
EXIT_RECORDS = 5
EXIT_SWEEP_GONE = 6  # cloud mode: the W&B sweep was deleted (or the agent unknown) meanwhile
EXIT_INTERRUPTED = 130


class BadInput(Exception):
    """Bad input: printed as one line naming the file and key, exit 2, no traceback."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class SweepAborted(Exception):
    """The sweep stopped on purpose before its end (dirty GPU, flapping, full disk)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def start_error(exc: OSError, trial_dir: str) -> SweepAborted:
    """A trial that could not be started: its files could not be written (exit 5, like any
    record), or the command itself could not run (exit 2, bad input)."""
    where = str(exc.filename or "")
    if where.startswith(os.path.dirname(trial_dir)) or exc.errno in DISK_ERRNOS:
        return SweepAborted(f"error: cannot write the trial's files in {trial_dir}: "
                            f"{exc.strerror or exc}; sweep stopped", EXIT_RECORDS)
    return SweepAborted(f"error: cannot start the trial's command: {exc}", EXIT_BAD_INPUT)
