"""W&B's side: the trials' wandb environment, the summary run, cloud mode, sync."""
