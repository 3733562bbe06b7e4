"""Leaves a daemon behind that the token scan cannot see, in one of four ways (``--how``):

- ``setsid``: double fork, ``setsid`` and exec with an empty environment (``env -i``);
- ``closefds``: daemon(3) by hand: double fork, ``setsid``, chdir /, every fd closed, exec
  with a clean environment (what daemonizing libraries do);
- ``helper``: a helper process starts the daemon (own session, empty environment) and exits
  at once, so the daemon's parent is gone before anyone looks;
- ``pgrp``: a grandchild moves to a process group of its own and execs with the trial's token
  removed from its environment (what some container shims do).

The daemon (``lingering_daemon.py``) ignores SIGTERM and holds ``--mb`` MB. The trial waits
until it runs, reports once, sleeps ``--hold`` seconds (ignoring SIGTERM when ``--hold`` is
given) and exits 0.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DAEMON = os.path.join(HERE, "lingering_daemon.py")


def daemon_argv(pidfile: str, mb: int) -> list[str]:
    return [sys.executable, DAEMON, pidfile, str(mb)]


def via_setsid(pidfile: str, mb: int) -> None:
    def grandchild() -> None:
        os.execve(sys.executable, daemon_argv(pidfile, mb), {})
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--how", choices=["setsid", "closefds", "helper", "pgrp"])
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--as-helper")
    parser.add_argument("--x", default=None)  # the sweep's grid parameter
    args = parser.parse_args()
    if args.as_helper:
        as_helper(args.as_helper, args.mb)
    pidfile = os.path.join(os.environ["GPUSWEEP_TRIAL_DIR"], "daemon.pid")
    {"setsid": via_setsid, "closefds": via_closefds, "helper": via_helper,
     "pgrp": via_pgrp}[args.how](pidfile, args.mb)
    while not os.path.exists(pidfile):
        time.sleep(0.01)
    from gpusweep import trial

    trial.report(step=0, loss=1.0)
    if args.hold:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(args.hold)
    with open(pidfile) as handle:
        print(f"daemon {handle.read()} left behind ({args.how})", flush=True)


if __name__ == "__main__":
    main()
