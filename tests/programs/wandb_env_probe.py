"""An unmodified W&B script that says which wandb service it inherited, then logs twice."""

import os
import sys

inherited = os.environ.get("WANDB_SERVICE")
print(f"inherited WANDB_SERVICE: {inherited}", flush=True)

import wandb  # noqa: E402

run = wandb.init()
for step in range(2):
    wandb.log({"loss": float(run.config.get("x", 0)) + step})
run.finish()
sys.exit(0)
