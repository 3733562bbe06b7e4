"""Holds host memory that grows with its size params, like activations: batch_size x hidden.

Allocates ``batch_size * hidden / 128`` MB in four steps (touched, so it counts in RSS),
reports a loss once per epoch (smaller batches do better, so Hyperband stops big ones), and
fails like an OOM (MemoryError, exit 1) on the step that would pass ``--limit_mb``.
No torch: fast, and the memory model has a real law to find.
"""

import argparse
import time

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--batch_size", type=int, default=16)
parser.add_argument("--hidden", type=int, default=64)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.2)
parser.add_argument("--limit_mb", type=float, default=1e9)
args = parser.parse_args()

with trial.session():
    need_mb = args.batch_size * args.hidden / 128
    held = []
    for epoch in range(args.epochs):
        for step in range(4 if epoch == 0 else 0):  # ramp up, as the first batches do
            if need_mb * (step + 1) / 4 > args.limit_mb:
                raise MemoryError(f"wanted {need_mb:.0f} MB, limit {args.limit_mb:.0f} MB")
            held.append(bytearray(b"\x01") * int(need_mb * 1024 * 1024 / 4))
            time.sleep(args.sleep / 4)
        loss = 1.0 / (epoch + 1) + args.batch_size / 64 + 8.0 / args.hidden ** 0.5
        trial.report(step=epoch, loss=loss)
        time.sleep(args.sleep)
