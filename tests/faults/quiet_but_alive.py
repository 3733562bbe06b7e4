"""Looks stalled to a careless rule and is not: the stall rule must never fire on it.

``--how`` says how it stays alive for ``--seconds`` before it exits 0:

- ``compute``: the main process computes and never reports;
- ``child``: the main process waits (no CPU at all) while a child it started computes: the
  whole tree counts;
- ``report``: nothing computes (it sleeps), but it reports every ``--every`` seconds.
"""

import argparse
import os
import subprocess
import sys
import time


def compute(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        total += sum(range(10_000))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--how", choices=["compute", "child", "report"])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--every", type=float, default=0.3)
    parser.add_argument("--compute-only", action="store_true")  # the child's own mode
    args = parser.parse_args()
    if args.compute_only or args.how == "compute":
        compute(args.seconds)
    elif args.how == "child":
        subprocess.run([sys.executable, os.path.abspath(__file__), "--compute-only",
                        "--seconds", str(args.seconds)], check=True, timeout=args.seconds + 60)
    else:
        from gpusweep import trial

        deadline = time.monotonic() + args.seconds
        step = 0
        while time.monotonic() < deadline:
            trial.report(step=step, loss=1.0 / (step + 1))
            step += 1
            time.sleep(args.every)
    print(f"alive for {args.seconds:g} s ({args.how})", flush=True)


if __name__ == "__main__":
    main()
