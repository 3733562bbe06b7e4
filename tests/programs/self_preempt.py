"""Marks its own W&B run preempting (as a script that saw its job being preempted would),
then exits with an error code."""

import sys

import wandb

run = wandb.init()
wandb.log({"loss": 1.0})
run.mark_preempting()
run.finish(exit_code=1)
sys.exit(1)
