"""Reports the metric every ``--every`` seconds for ``--steps`` steps (a trial to stop late)."""

import argparse
import time

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--every", type=float, default=0.1)
args = parser.parse_args()

with trial.session():
    for step in range(args.steps):
        trial.report(step=step, loss=args.x + 1.0 / (step + 1))
        time.sleep(args.every)
