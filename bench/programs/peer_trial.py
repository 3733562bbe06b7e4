"""The trivial trial of bench/peers.py: three reports 0.1 s apart, and maybe a daemon.

The same body runs under every runner: as a program (gpusweep, Optuna with a subprocess per
trial) or as a function (Ray Tune, Optuna in-process). It appends one JSON line to
``events`` with the unix times its own work started and ended, so that every runner's
overhead is measured the same way, from outside the runner.

A daemon (``daemon``) is left behind on purpose, the two ways a real trial does it:

- ``setsid``: a child in a new session (``subprocess.Popen(start_new_session=True)``): it
  has left the trial's process group but keeps its environment;
- ``emptyenv``: double fork, ``setsid``, then ``exec`` with an empty environment: the
  classic daemon, reparented at once and carrying nothing of the trial's environment.

Each daemon sleeps ``DAEMON_S`` and carries ``tag`` in its argv, so the benchmark can find
and end whatever the runner left.

    python bench/programs/peer_trial.py --i 0 --events FILE [--daemon setsid] [--tag T]
        [--report gpusweep|stdout]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

REPORTS = 3
INTERVAL_S = 0.1
DAEMON_S = 120  # long past any run, short enough that a lost one ends on its own
SLEEPER = f"import time; time.sleep({DAEMON_S})"


def trial_body(i: int, report: Callable[[int, float], None], events: str,
               daemon: str = "none", tag: str = "peers") -> float:
    """Three reports ``INTERVAL_S`` apart; returns the last value (the objective)."""
    started = time.time()
    if daemon != "none":
        leave_daemon(daemon, f"peers-daemon-{tag}")
    value = 0.0
    for step in range(REPORTS):
        time.sleep(INTERVAL_S)
        value = (i + 1) / (step + 1)
        report(step, value)
    with open(events, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"i": i, "start": started, "end": time.time(),
                                 "pid": os.getpid()}) + "\n")
    return value


def leave_daemon(kind: str, marker: str) -> None:
    argv = [sys.executable, "-c", SLEEPER, marker]
    if kind == "setsid":
        subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    if kind != "emptyenv":
        raise ValueError(f"unknown daemon kind {kind!r}")
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:  # the intermediate child: new session, fork again, and leave
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1024)
        os.execve(sys.executable, argv, {})
    finally:
        os._exit(1)  # only if exec failed


def _report_through(kind: str) -> Callable[[int, float], None]:
    if kind == "gpusweep":
        from gpusweep import trial

        return lambda step, value: trial.report(step=step, loss=value)
    return lambda step, value: print(f"report {step} {value}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--i", type=int, default=0)
    parser.add_argument("--events", required=True)
    parser.add_argument("--daemon", default="none", choices=["none", "setsid", "emptyenv"])
    parser.add_argument("--tag", default="peers")
    parser.add_argument("--report", default="gpusweep", choices=["gpusweep", "stdout"])
    args = parser.parse_args()
    body = lambda: trial_body(args.i, _report_through(args.report), args.events,  # noqa: E731
                              args.daemon, args.tag)
    if args.report == "gpusweep":
        from gpusweep import trial

        with trial.session():
            body()
    else:
        body()


if __name__ == "__main__":
    main()
