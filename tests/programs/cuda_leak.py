"""Allocates --mb MB on the GPU, keeps it in a global, reports, exits without freeing it."""

import argparse
import os
import time

import torch

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--mb", type=int, default=512)
parser.add_argument("--hold", type=float, default=1.0)
args = parser.parse_args()

LEAKED = torch.empty(args.mb * 1024 * 1024, dtype=torch.uint8, device="cuda")
LEAKED.fill_(1)
torch.cuda.synchronize()
trial.report(step=0, held_mb=float(args.mb))
print(f"holding {args.mb} MB on the GPU", flush=True)
time.sleep(args.hold)  # the monitor samples at 10 Hz: let it see the peak
os._exit(0)  # no finally, no atexit, no empty_cache
