"""A trial that needs secrets (as W&B needs its key) and must see them, without printing them.

With ``--x 3`` it fails after its first report with the token in the exception's message,
as a client library's error may quote it. Exits 3 if ``--token`` (given through
``${envvar:...}``) or ``WANDB_API_KEY`` did not arrive.
"""

import argparse
import os

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--token", default="")
args = parser.parse_args()

with trial.session():
    if not args.token or args.token != os.environ.get("MY_SERVICE_TOKEN"):
        raise SystemExit(3)
    if len(os.environ.get("WANDB_API_KEY", "")) != 40:
        raise SystemExit(3)
    for epoch in range(2):
        trial.report(step=epoch, loss=args.x + epoch)
        print(f"epoch {epoch} ok", flush=True)
        if args.x == 3:
            raise RuntimeError(f"service rejected token {os.environ['MY_SERVICE_TOKEN']}")
