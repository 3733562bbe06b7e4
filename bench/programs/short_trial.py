"""A short trial for the overhead benchmark.

On a GPU it really allocates and frees CUDA memory (``--mb``), then exits without calling
``empty_cache``: what the driver must give back is the whole context plus the cache. On CPU it
does no torch at all, so the figure is the orchestrator's own overhead.
"""

import argparse
import time

parser = argparse.ArgumentParser()
parser.add_argument("--mb", type=int, default=512)
parser.add_argument("--seconds", type=float, default=0.2)
parser.add_argument("--i", type=int, default=0)
args = parser.parse_args()

try:
    import pynvml

    pynvml.nvmlInit()
    has_gpu = pynvml.nvmlDeviceGetCount() > 0
except Exception:
    has_gpu = False

if has_gpu:
    import torch

    block = torch.empty(args.mb * 2**20, dtype=torch.uint8, device="cuda")
    block.fill_(1)
    torch.cuda.synchronize()
    del block  # freed to torch's cache, not to the driver: the process exit gives it back
time.sleep(args.seconds)
print("done", flush=True)
