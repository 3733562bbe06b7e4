"""A fast trial (no torch): reports loss = (x - 3)^2 + noise-free decay once per epoch."""

import argparse
import time

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()

with trial.session():
    for epoch in range(args.epochs):
        loss = (args.x - 3.0) ** 2 + 1.0 / (epoch + 1)
        trial.report(step=epoch, loss=loss)
        print(f"epoch {epoch} loss {loss}", flush=True)
        time.sleep(args.sleep)
