"""Leaks 3 MB of Python objects per step into a global list (a metric history kept forever)."""

import argparse
import time

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--leak_mb", type=float, default=3.0)
args = parser.parse_args()

KEPT = []


def metric_step(step: int) -> float:
    KEPT.append([bytes(1024) for _ in range(int(args.leak_mb * 1024))])  # the leak
    return 1.0 / (step + 1)


with trial.session():
    for step in range(args.steps):
        trial.report(step=step, loss=metric_step(step))
        time.sleep(0.02)
