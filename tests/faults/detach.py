"""Leaves a daemon behind that the token scan cannot see, in one of five ways (``--how``):

- ``setsid``: double fork, ``setsid`` and exec with an empty environment (``env -i``);
- ``closefds``: daemon(3) by hand: double fork, ``setsid``, chdir /, every fd closed, exec
  with a clean environment (what daemonizing libraries do);
- ``helper``: a helper process starts the daemon (own session, empty environment) and exits
  at once, so the daemon's parent is gone before anyone looks;
- ``pgrp``: a grandchild moves to a process group of its own and execs with the trial's token
  removed from its environment (what some container shims do);
- ``pidns``: like ``setsid``, but the daemon runs as the init of a PID namespace of its own
  (``unshare --pid --fork``, with a user namespace when not root), where its pid is 1.

The daemon (``lingering_daemon.py``) ignores SIGTERM and holds ``--mb`` MB. The trial waits
until it runs, writes ``trial.json`` in its directory (its own ids, its parent, the daemon's
ancestors: who adopted it), reports once, sleeps ``--hold`` seconds (ignoring SIGTERM when
``--hold`` is given) and exits 0.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DAEMON = os.path.join(HERE, "lingering_daemon.py")


def daemon_argv(pidfile: str, mb: int) -> list[str]:
    return [sys.executable, DAEMON, pidfile, str(mb)]


def unshare_argv() -> list[str]:
    """``unshare(1)`` into a new PID namespace (the daemon is its init), as any user."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [shutil.which("unshare") or "/usr/bin/unshare", *user, "--pid", "--fork"]


def via_setsid(pidfile: str, mb: int, prefix: tuple[str, ...] = ()) -> None:
    def grandchild() -> None:
        argv = [*prefix, *daemon_argv(pidfile, mb)]
        os.execve(argv[0], argv, {})
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            grandchild()
        os._exit(0)
    os.waitpid(child, 0)


def via_closefds(pidfile: str, mb: int) -> None:
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            os.chdir("/")
            os.umask(0)
            os.closerange(0, os.sysconf("SC_OPEN_MAX"))
            fd = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1, 2):
                if fd != target:
                    os.dup2(fd, target)
            os.execve(sys.executable, daemon_argv(pidfile, mb), {"PATH": "/usr/bin:/bin"})
        os._exit(0)
    os.waitpid(child, 0)


def via_helper(pidfile: str, mb: int) -> None:
    helper = subprocess.Popen([sys.executable, __file__, "--as-helper", pidfile,
                               "--mb", str(mb)])
    helper.wait()


def as_helper(pidfile: str, mb: int) -> None:
    subprocess.Popen(daemon_argv(pidfile, mb), env={}, start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    os._exit(0)  # at once: the daemon's parent is gone


def via_pgrp(pidfile: str, mb: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPUSWEEP_TRIAL_TOKEN"}
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            os.setpgid(0, 0)
            os.execve(sys.executable, daemon_argv(pidfile, mb), env)
        os._exit(0)
    os.waitpid(child, 0)


def ancestors(pid: int) -> list[int]:
    """The daemon's parent, its parent's parent, ... up to init (its parents have exited by
    now, so it hangs below whatever adopted it)."""
    chain: list[int] = []
    while pid > 1 and len(chain) < 64:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        pid = int(data[data.rfind(b")") + 2:].split()[1])
        chain.append(pid)
    return chain


def via_pidns(pidfile: str, mb: int) -> None:
    via_setsid(pidfile, mb, tuple(unshare_argv()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--how", choices=["setsid", "closefds", "helper", "pgrp", "pidns"])
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--as-helper")
    parser.add_argument("--x", default=None)  # the sweep's grid parameter
    args = parser.parse_args()
    if args.as_helper:
        as_helper(args.as_helper, args.mb)
    trial_dir = os.environ["GPUSWEEP_TRIAL_DIR"]
    pidfile = os.path.join(trial_dir, "daemon.pid")
    {"setsid": via_setsid, "closefds": via_closefds, "helper": via_helper,
     "pgrp": via_pgrp, "pidns": via_pidns}[args.how](pidfile, args.mb)
    deadline = time.monotonic() + 60
    while not os.path.exists(pidfile):
        if time.monotonic() > deadline:
            sys.exit(f"the daemon did not start ({args.how})")
        time.sleep(0.01)
    with open(pidfile) as handle:
        daemon = int(handle.read())
    with open(os.path.join(trial_dir, "trial.json"), "w") as handle:
        json.dump({"pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
                   "parent": os.getppid(), "daemon_ancestors": ancestors(daemon)}, handle)
    from gpusweep import trial

    trial.report(step=0, loss=1.0)
    if args.hold:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(args.hold)
    print(f"daemon {daemon} left behind ({args.how})", flush=True)


if __name__ == "__main__":
    main()
