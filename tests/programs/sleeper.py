"""Reports once, then sleeps (a long trial to interrupt)."""

import argparse
import time

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--seconds", type=float, default=60.0)
args = parser.parse_args()

with trial.session():
    trial.report(step=0, loss=args.x)
    print("sleeping", flush=True)
    time.sleep(args.seconds)
    trial.report(step=1, loss=args.x)
