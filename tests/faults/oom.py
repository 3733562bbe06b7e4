"""CUDA OOM at large batch: a real torch.OutOfMemoryError on a GPU; on CPU the same
exception type and message, raised where the allocation would fail.

Batches above --fits (default 64) do not fit. ``--no-api`` skips gpusweep.trial, so the OOM
is only visible in the output (the traceback), like an unmodified W&B script.
"""

import argparse
import sys

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--batch_size", type=int, default=256)
parser.add_argument("--fits", type=int, default=64)
parser.add_argument("--no-api", action="store_true")
args = parser.parse_args()


def allocate() -> None:
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        # batch == 2 * fits asks for the whole device: a real CUDA OOM.
        nbytes = int(total * args.batch_size / (2 * args.fits))
        block = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        print(f"allocated {nbytes / 2**20:.0f} MB", flush=True)
        del block
    elif args.batch_size > args.fits:
        raise torch.OutOfMemoryError(
            f"CUDA out of memory. Tried to allocate {args.batch_size * 64} MiB "
            "(simulated on a CPU machine: same exception type and message)")
    print(f"batch {args.batch_size} fits", flush=True)


if args.no_api:
    allocate()
    sys.exit(0)

from gpusweep import trial  # noqa: E402

with trial.session():
    allocate()
    trial.report(step=0, loss=1.0 / args.batch_size)
