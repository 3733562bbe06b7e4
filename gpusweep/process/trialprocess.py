"""The orchestrator's handle on one trial process, started through its launcher.

The launcher (:mod:`gpusweep.process.reaper`, a stdlib-only program) is the trial's parent and a
child subreaper: orphans of the trial are reparented to it, so they stay in its tree however
they detached, and it ends them when the trial is stopped, or by itself when the orchestrator
dies. This side starts it, reads what it reports on a pipe (the trial's pid, its exit status,
the processes it signalled), and asks it to stop the tree.

The trial's pid (:attr:`TrialProcess.pid`) is what the orchestrator watches: the trial leads
its own process group, so it is also the group's id. :attr:`TrialProcess.returncode` is the
trial's own, as ``Popen.returncode`` would give it (``-11`` for a segfault); None while it
runs, and also when the launcher was killed before it could say (unknown, never a guess).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO

REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")
START_TIMEOUT_S = 30.0  # the launcher's start-up is milliseconds; this is a stuck machine
KILL_WAIT_S = 5.0  # the launcher's own wait after SIGKILL (reaper.KILL_WAIT_S)


class TrialProcess:
    """One trial's launcher and what it reported. Start it with :meth:`launch`."""

    def __init__(self, popen: subprocess.Popen, status_fd: int) -> None:
        self.popen = popen  # the launcher; the trial is its child
        self.pid = 0  # the trial's main process and process group
        self.status: int | None = None  # waitpid's raw status of the trial
        self.signalled: dict[int, str] = {}  # pid -> "group" | "outside", in the order sent
        self.leftover: list[int] = []  # alive after the launcher's SIGKILL
        self.notes: list[str] = []  # what the launcher could not do (cgroup, subreaper)
        self.done = False  # the launcher's last line arrived
        self._eof = False  # the launcher closed the pipe: it ended
        self._fd: int | None = status_fd
        self._buffer = b""
        self._lock = threading.Lock()
        self._error: int | None = None

    @classmethod
    def launch(cls, argv: list[str], env: Mapping[str, str], stdout: IO[bytes], *,
               grace_s: float, cgroup: str | None = None) -> TrialProcess:
        """Start the launcher with the trial's argv and environment; returns once the trial
        was exec'd. An exec failure raises the ``OSError`` that ``subprocess`` would."""
        read_fd, write_fd = os.pipe()
        try:
            popen = subprocess.Popen(
                [sys.executable, "-I", "-S", REAPER, str(write_fd), str(os.getpid()),
                 repr(float(grace_s)), cgroup or "-", "--", *argv],
                env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        process = cls(popen, read_fd)
        process._wait_started(argv[0])
        return process

    def _wait_started(self, program: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.pid and self._error is None and not self._eof:
            if time.monotonic() > deadline:
                self.popen.kill()
                self.popen.wait()
                self.close()
                raise OSError(f"the trial's launcher did not start it in {START_TIMEOUT_S:g} s")
            self._read(0.5)
        if self.pid:
            return
        self.popen.wait()
        self.close()
        if self._error is not None:
            raise OSError(self._error, os.strerror(self._error), program)
        raise OSError(f"the trial's launcher ended (exit code {self.popen.returncode}) before "
                      "starting it")

    # -- while it runs ---------------------------------------------------------------------
    @property
    def launcher_pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The trial's exit code (negative: the signal that ended it), None while unknown."""
        return None if self.status is None else os.waitstatus_to_exitcode(self.status)

    def poll(self, timeout_s: float = 0.0) -> int | None:
        """Read what the launcher reported (waiting up to ``timeout_s`` for news while the
        trial runs); the trial's return code once it exited."""
        if self.status is None:
            self._read(timeout_s)
        return self.returncode

    @property
    def launcher_lost(self) -> bool:
        """The launcher ended without reporting the trial's exit (killed: SIGKILL, the OOM
        killer). The trial may still run, reparented to init: the orchestrator ends it."""
        if self.status is not None or self.popen.poll() is None:
            return False
        self._read(0.0)
        return self.status is None

    def lost_reason(self) -> str:
        """What the record says when the launcher ended before the trial did."""
        return (f"its launcher (pid {self.launcher_pid}) ended first (exit code "
                f"{self.popen.returncode}), so the trial's exit status is unknown; the "
                "orchestrator ended its tree")

    def stop(self, grace_s: float) -> None:
        """Ask the launcher to stop the whole tree (SIGTERM: the trial's group, the grace
        period, SIGKILL, then the rest of the tree) and wait until it has; a launcher that
        does not end in time is killed, and what is left is the orchestrator's to end."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
            except OSError:
                pass
            deadline = time.monotonic() + grace_s + 2 * KILL_WAIT_S + 5.0
            while self.popen.poll() is None and time.monotonic() < deadline:
                self._read(0.01)  # read as it reports: a full pipe would block it
            if self.popen.poll() is None:
                self.popen.kill()
            self.popen.wait()
        self._read(0.0)

    def close(self) -> None:
        """Close the status pipe (after the launcher ended)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # -- the status pipe ---------------------------------------------------------------------
    def _read(self, timeout_s: float) -> None:
        """Take every complete line the launcher wrote (waiting up to ``timeout_s`` for one)."""
        with self._lock:
            if self._fd is None or self._eof:
                return
            ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout_s))
            while ready:
                try:
                    chunk = os.read(self._fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    self._eof = True
                    break
                self._buffer += chunk
                ready, _, _ = select.select([self._fd], [], [], 0)
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                self._take(line.decode("ascii", "replace").split())

    def _take(self, words: list[str]) -> None:
        if not words:
            return
        event, args = words[0], words[1:]
        if event == "pid":
            self.pid = int(args[0])
        elif event == "exit":
            self.status = int(args[0])
        elif event == "signalled":
            self.signalled.setdefault(int(args[0]), args[1])
        elif event == "leftover":
            self.leftover.append(int(args[0]))
        elif event == "error":
            self._error = int(args[0])
        elif event == "nocgroup":
            self.notes.append(f"the trial could not join its cgroup: {os.strerror(int(args[0]))}")
        elif event == "nosubreaper":
            self.notes.append("the launcher could not become a subreaper: "
                              f"{os.strerror(int(args[0]))}")
        elif event == "done":
            self.done = True
