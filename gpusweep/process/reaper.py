"""The per-trial launcher: a subreaper that runs one trial and ends every process it left.

The orchestrator starts it as ``python -I -S reaper.py STATUS_FD PARENT_PID GRACE_S CGROUP --
ARGV...`` (standard library only and no ``site``, so it starts in milliseconds). It:

- becomes a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, as tini ``-s`` and Ray's
  raylet do): every orphan of the trial, however it detached (a double fork, ``setsid``, an
  empty environment), is reparented to it instead of init, so it stays in this tree;
- asks the kernel for ``PARENT_DEATH_SIGNAL`` when the orchestrator dies
  (``PR_SET_PDEATHSIG``) and then stops the tree as a normal stop would. The kernel sends that
  signal when the *thread* that forked us ends, too: it counts only when ``getppid()``
  changed, i.e. the orchestrator process itself is gone;
- runs ARGV as its only child in a new session (the trial leads its own process group), with
  exactly the environment, working directory and standard streams it was given itself, and,
  with a CGROUP directory, in that cgroup v2 (the launcher itself stays outside it: its own
  memory is no part of the trial's);
- on SIGTERM, SIGINT or SIGHUP (the orchestrator's stop), or once the orchestrator died:
  SIGTERM to the trial's process group, up to GRACE_S for it to leave, SIGKILL; then the same
  for every other descendant (outside the group: daemons, wandb's service) and every other
  process in the cgroup within what is left of GRACE_S; then ``cgroup.kill``, which ends
  whatever is left in the cgroup at once;
- exits once the trial exited and no child is left, with the trial's own exit status: a
  death by signal is raised again on itself, so ``Popen.returncode`` is ``-SIGSEGV`` for a
  segfault.

It tells the orchestrator what happens on STATUS_FD, one line per event: ``pid N`` (the trial
was exec'd), ``error ERRNO`` (it could not be), ``nocgroup ERRNO`` (it runs outside its
cgroup), ``nosubreaper ERRNO``, ``exit STATUS`` (waitpid's raw status of the trial),
``signalled PID group|outside`` (first signal to each process), ``leftover PID`` (alive after
SIGKILL) and ``done``.
"""

import _signal as signal  # the C module: ``signal`` adds enums, 4 ms more at every start
import ctypes
import errno
import os
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36  # prctl(2), Linux 3.4+
SYS_CLONE3 = 435  # the same number on every architecture (Linux 5.3+)
CLONE_INTO_CGROUP = 0x200000000  # clone3(2), Linux 5.7+
PARENT_DEATH_SIGNAL = signal.SIGUSR2
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
WAITED = frozenset({signal.SIGCHLD, PARENT_DEATH_SIGNAL, *STOP_SIGNALS})
KILL_WAIT_S = 5.0  # after SIGKILL: what is still there is stuck in the kernel
EXEC_FAILED = 127
HAS_CHILDREN_FILES = os.path.exists(f"/proc/self/task/{os.getpid()}/children")  # PROC_CHILDREN


class Launcher:
    """The launcher's state: the trial's pid and exit status, and what it told the parent."""

    def __init__(self, status_fd: int, cgroup: str | None) -> None:
        self.status_fd = status_fd
        self.cgroup = cgroup
        self.trial_pid = 0
        self.trial_status: int | None = None
        self.signalled: set[int] = set()

    def send(self, line: str) -> None:
        """One status line to the orchestrator; nobody to tell once it is gone."""
        try:
            os.write(self.status_fd, line.encode() + b"\n")
        except OSError:
            pass

    def reap(self) -> bool:
        """Reap every exited child (the trial's status is kept); True when none is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False
            if pid == self.trial_pid:
                self.trial_status = status
                self.send(f"exit {status}")

    def reap_all(self, deadline: float) -> None:
        """Reap until no child is left (or the deadline): a process that just died is a
        zombie, gone for the stop, but still ours to reap, the trial's exit status with it."""
        while not self.reap() and time.monotonic() < deadline:
            signal.sigtimedwait({signal.SIGCHLD}, 0.05)

    # -- stopping the tree ---------------------------------------------------------------
    def stop_tree(self, grace_s: float) -> None:
        """SIGTERM to the trial's group, grace, SIGKILL; then the other descendants within the
        rest of the grace period; then whatever forked meanwhile, and the cgroup."""
        deadline = time.monotonic() + grace_s
        self._escalate(lambda: self._live(group=True), "group", deadline)
        self._escalate(lambda: self._live(group=False), "outside", deadline)
        for _ in range(3):  # forked during the grace period: no second chance
            late = self._live(group=None)
            if not late:
                break
            self._signal(late, signal.SIGKILL, "outside")
            self._wait_gone(lambda: self._live(group=None), time.monotonic() + KILL_WAIT_S)
        if self.cgroup and self._live(group=None):
            _write(os.path.join(self.cgroup, "cgroup.kill"), "1")
            self._wait_gone(lambda: self._live(group=None), time.monotonic() + KILL_WAIT_S)
        for pid in self._live(group=None):
            self.send(f"leftover {pid}")

    def _escalate(self, live, where: str, deadline: float) -> None:
        procs = live()
        if not procs:
            return
        self._signal(procs, signal.SIGTERM, where)
        if self._wait_gone(live, deadline):
            self._signal(live(), signal.SIGKILL, where)
            self._wait_gone(live, time.monotonic() + KILL_WAIT_S)

    def _signal(self, pids: list[int], sig: int, where: str) -> None:
        """One signal to each process: the group at once (a second SIGTERM would cut the
        trial's own ``finally`` short), each process outside it on its own. The last SIGKILL
        goes to the whole cgroup too: ``cgroup.kill`` leaves no fork a chance to escape."""
        if sig == signal.SIGKILL and where == "outside" and self.cgroup:
            _write(os.path.join(self.cgroup, "cgroup.kill"), "1")
        if where == "group":
            try:
                os.killpg(self.trial_pid, sig)
            except OSError:
                pass
        for pid in pids:
            if pid not in self.signalled:
                self.signalled.add(pid)
                self.send(f"signalled {pid} {where}")
            if where != "group":
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    def _wait_gone(self, live, deadline: float) -> list[int]:
        """Reap and wait until ``live()`` is empty or the deadline passed; the survivors."""
        delay = 0.002
        while True:
            self.reap()
            alive = live()
            left = deadline - time.monotonic()
            if not alive or left <= 0:
                return alive
            signal.sigtimedwait({signal.SIGCHLD}, min(delay, left))
            delay = min(delay * 2, 0.05)

    def _live(self, group: bool | None) -> list[int]:
        """The trial's live processes: every descendant and, with a cgroup, whatever else is
        in it (what got away from the subreaper, if this could not become one); in the
        trial's process group (True), outside it (False), all (None)."""
        found = descendants(os.getpid())
        if self.cgroup:
            for pid in cgroup_procs(self.cgroup):
                stat = None if pid in found else _stat(pid)
                if stat is not None and stat[0] not in (b"Z", b"X"):
                    found[pid] = stat[2]
        return [pid for pid, pgrp in found.items()
                if group is None or (pgrp == self.trial_pid) == group]


def descendants(root: int) -> dict[int, int]:
    """Every live (not zombie) process below ``root``, with its process group."""
    found: dict[int, int] = {}
    stack = children(root)
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        stat = _stat(pid)
        if stat is None:
            continue
        state, _, pgrp = stat
        if state not in (b"Z", b"X"):
            found[pid] = pgrp
        stack += children(pid)
    return found


def _stat(pid: int) -> tuple[bytes, int, int] | None:
    """(state, ppid, process group) from ``/proc/<pid>/stat``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()  # the command name may hold ") "
    return fields[0], int(fields[1]), int(fields[2])


def children(pid: int) -> list[int]:
    """Direct children of ``pid``: its threads' ``children`` files, else a scan of /proc."""
    if not HAS_CHILDREN_FILES:
        return [p for p in _all_pids() if (_stat(p) or (b"", 0, 0))[1] == pid]
    result: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return result
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                result += [int(x) for x in handle.read().split()]
        except OSError:
            continue
    return result


def cgroup_procs(cgroup: str) -> list[int]:
    """The pids in a cgroup v2 (none when it is gone)."""
    try:
        with open(os.path.join(cgroup, "cgroup.procs"), "rb") as handle:
            return [int(x) for x in handle.read().split()]
    except (OSError, ValueError):
        return []


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(text)
    except OSError:
        pass


def own_environment() -> dict[bytes, bytes]:
    """Exactly the environment this process was started with.

    Read from ``/proc/self/environ``, not ``os.environ``: CPython may already have changed
    that (a C locale is coerced by setting ``LC_CTYPE``, PEP 538), and the trial must get the
    environment the orchestrator gave, byte for byte.
    """
    with open("/proc/self/environ", "rb") as handle:
        raw = handle.read()
    env: dict[bytes, bytes] = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            env[key] = value
    return env


def spawn(launcher: Launcher, argv: list[str], env: dict[bytes, bytes]) -> None:
    """Fork and exec the trial in its own session (and cgroup); report its pid or the error.

    Like ``subprocess``: a close-on-exec pipe tells whether the exec happened, and the signals
    Python ignores (SIGPIPE, SIGXFSZ) are restored to their defaults for the trial.
    """
    read_end, write_end = os.pipe()
    pid, joined = _fork_into(launcher.cgroup)
    if pid == 0:  # the child: only async-signal-safe-ish steps, then exec
        try:
            os.close(read_end)
            os.setsid()
            if launcher.cgroup and not joined:
                try:
                    with open(os.path.join(launcher.cgroup, "cgroup.procs"), "w") as handle:
                        handle.write("0")
                except OSError as exc:
                    os.write(write_end, b"C%d\n" % (exc.errno or errno.EIO))
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(write_end, b"E%d\n" % (exc.errno or errno.ENOEXEC))
        except BaseException:  # a bad argument (a NUL byte in argv): it cannot be exec'd
            os.write(write_end, b"E%d\n" % errno.ENOEXEC)
        finally:
            os._exit(EXEC_FAILED)
    os.close(write_end)
    report = b""
    while chunk := os.read(read_end, 256):
        report += chunk
    os.close(read_end)
    launcher.trial_pid = pid
    for line in report.split():
        if line.startswith(b"C"):
            launcher.cgroup = None
            launcher.send(f"nocgroup {int(line[1:])}")
        elif line.startswith(b"E"):
            launcher.send(f"error {int(line[1:])}")
            os.waitpid(pid, 0)
            launcher.send("done")
            os._exit(EXEC_FAILED)
    launcher.send(f"pid {pid}")


def _fork_into(cgroup: str | None) -> tuple[int, bool]:
    """fork(), born in ``cgroup`` where the kernel can (``clone3(CLONE_INTO_CGROUP)``, 5.7+):
    moving a process into a cgroup afterwards waits for an RCU grace period, about 10 ms.
    Returns (pid, whether the child is in the cgroup already); 0 in the child.

    A raw clone3 skips Python's fork hooks, which only matter with other threads: this
    process has none, and the child only execs.
    """
    pid = -1
    if cgroup:
        try:
            fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)  # close-on-exec
        except OSError:
            return os.fork(), False
        fields = ["flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack",
                  "stack_size", "tls", "set_tid", "set_tid_size", "cgroup"]
        clone_args = type("CloneArgs", (ctypes.Structure,),
                          {"_fields_": [(name, ctypes.c_uint64) for name in fields]})
        args = clone_args(flags=CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=fd)
        libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held throughout
        libc.syscall.restype = ctypes.c_long
        pid = libc.syscall(SYS_CLONE3, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
        if pid == 0:
            return 0, True
        os.close(fd)
    if pid > 0:
        return pid, True
    return os.fork(), False  # clone3 refused (ENOSYS under some seccomp profiles, old kernel)


def exit_like(status: int | None) -> None:
    """Leave with the trial's exit status; a death by signal is raised again on ourselves
    (without a core file of our own)."""
    if status is None:  # the trial survived even SIGKILL: it is stuck in the kernel
        os._exit(1)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        _prctl(PR_SET_DUMPABLE, 0)
        if sig != signal.SIGKILL:  # its disposition cannot be changed (nor caught)
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # only if its default action does not end a process
    os._exit(os.waitstatus_to_exitcode(status))


def _prctl(option: int, value: int) -> int:
    """prctl(2) through libc; the errno on failure, else 0."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        return ctypes.get_errno() or 1
    return 0


def main(args: list[str]) -> None:
    status_fd, parent, grace_s, cgroup = int(args[0]), int(args[1]), float(args[2]), args[3]
    argv = args[5:]  # args[4] is "--"
    os.set_inheritable(status_fd, False)  # the trial gets only its standard streams
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)  # taken with sigwaitinfo below
    launcher = Launcher(status_fd, cgroup if cgroup != "-" else None)
    failed = _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if failed:
        launcher.send(f"nosubreaper {failed}")
    _prctl(PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL)
    if os.getppid() != parent:  # the orchestrator died before we could watch it
        os._exit(1)
    spawn(launcher, argv, own_environment())
    orphaned = False
    while not (launcher.reap() and launcher.trial_status is not None):
        signo = signal.sigwaitinfo(WAITED).si_signo
        orphaned = signo == PARENT_DEATH_SIGNAL and os.getppid() != parent
        if signo in STOP_SIGNALS or orphaned:
            launcher.stop_tree(grace_s)
            launcher.reap_all(time.monotonic() + KILL_WAIT_S)
            break
    if orphaned and launcher.cgroup:  # nobody else will remove it
        try:
            os.rmdir(launcher.cgroup)
        except OSError:
            pass
    launcher.send("done")
    exit_like(launcher.trial_status)


if __name__ == "__main__":
    main(sys.argv[1:])
