"""The main process dies while its multiprocessing workers block forever on a queue.

The main raises; Python's exit then joins the non-daemon workers, which wait on a queue that
will never get anything: the trial sits with no CPU, no report and no exit (a W&B example
script's failure). Only the stall rule ends it.

``--wandb``: as that script does, the main first starts a W&B run (offline, whatever the
sweep's mode), so wandb's service (``wandb-core``) lives on in the trial's tree and does its
own background work while the trial is dead: that must not keep it alive.
"""

import multiprocessing as mp
import sys


def worker(queue) -> None:
    queue.get()  # nothing ever comes


if __name__ == "__main__":
    if "--wandb" in sys.argv:
        import wandb

        run = wandb.init(mode="offline")
        run.log({"loss": 1.0})
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    workers = [ctx.Process(target=worker, args=(queue,)) for _ in range(2)]
    for w in workers:
        w.start()
    print("workers started", flush=True)
    raise RuntimeError("the main process failed; its workers still wait")
