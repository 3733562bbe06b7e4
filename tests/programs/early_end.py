"""Ends at its very start, two ways a trial can leave W&B without a run.

``--mode stop_in_init``: SIGTERM to its own process group as wandb.init() (started by the
first report) begins, as a Hyperband stop right after a first report arrives. Done by
wrapping wandb.init, so the signal lands inside the init every time.
``--mode raise_early``: raises before its first report.
"""

import argparse
import os
import signal

import wandb

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--mode", choices=["stop_in_init", "raise_early"], required=True)
args = parser.parse_args()

real_init = wandb.init


def init_under_stop(*a, **k):
    os.killpg(0, signal.SIGTERM)
    return real_init(*a, **k)


wandb.init = init_under_stop

with trial.session():
    if args.mode == "raise_early":
        raise RuntimeError("broken before the first report")
    trial.report(step=0, loss=1.0)
    raise AssertionError("the stop was not acted on after wandb.init")
