"""Exit codes and the one exception that means "the user's input is wrong"."""

from __future__ import annotations

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_GPU_DIRTY = 3
EXIT_FLAPPING = 4
EXIT_RECORDS = 5
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
