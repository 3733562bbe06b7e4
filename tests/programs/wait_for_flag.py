"""Reports once, then waits (up to 60 s) until the file ``--flag`` exists, then ends."""

import argparse
import os
import time

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--flag", required=True)
args = parser.parse_args()

with trial.session():
    trial.report(step=0, loss=args.x)
    deadline = time.monotonic() + 60
    while not os.path.exists(args.flag) and time.monotonic() < deadline:
        time.sleep(0.1)
    trial.report(step=1, loss=args.x)
