"""On a real GPU: the daemon of the incident, or a dead trial holding its CUDA context.

``--how=daemon``: double fork, ``setsid`` and exec with an empty environment (``env -i``);
the daemon allocates ``--mb`` MB on the GPU, ignores SIGTERM and lives on (with its
environment gone, ``CUDA_VISIBLE_DEVICES`` is gone too: CUDA's device 0). The trial waits
until it holds its memory, reports once and exits 0.

``--how=dead``: the trial itself allocates ``--mb`` MB, reports once and hangs: no report, no
CPU, the device idle, its memory held. Only the stall rule ends it.
"""

import argparse
import os
import sys
import threading
import time


def hold_forever(mb: int, pidfile: str | None) -> None:
    import torch  # CUDA only here, after the forks

    held = torch.ones(mb * 1024 * 1024, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    if pidfile:
        with open(pidfile + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.replace(pidfile + ".tmp", pidfile)
    threading.Event().wait()  # no CPU, no kernel: the device idle
    del held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--how", choices=["daemon", "dead"], default="daemon")
    parser.add_argument("--mb", type=int, default=1024)
    parser.add_argument("--as-daemon")  # the daemon's own mode: its pid file
    parser.add_argument("--x", default=None)  # the sweep's grid parameter
    args = parser.parse_args()
    if args.as_daemon:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        hold_forever(args.mb, args.as_daemon)
    from gpusweep import trial

    if args.how == "dead":
        trial.report(step=0, loss=1.0)
        hold_forever(args.mb, None)
    pidfile = os.path.join(os.environ["GPUSWEEP_TRIAL_DIR"], "daemon.pid")
    argv = [sys.executable, os.path.abspath(__file__), "--as-daemon", pidfile,
            "--mb", str(args.mb)]
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve(sys.executable, argv, {})
        os._exit(0)
    os.waitpid(child, 0)
    deadline = time.monotonic() + 300
    while not os.path.exists(pidfile):
        if time.monotonic() > deadline:
            sys.exit("the daemon did not get its GPU memory")
        time.sleep(0.05)
    trial.report(step=0, loss=1.0)
    print("the daemon holds the GPU", flush=True)


if __name__ == "__main__":
    main()
