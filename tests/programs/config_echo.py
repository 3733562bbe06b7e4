"""Reports which --config_file it was given (tools/train.py takes one)."""

import argparse

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--config_file", required=True)
parser.add_argument("--x", type=float, default=0.0)
args = parser.parse_args()

with trial.session():
    print(f"config_file={args.config_file}", flush=True)
    trial.report(step=0, loss=args.x)
