"""The main process dies while its multiprocessing workers block forever on a queue.

The main raises; Python's exit then joins the non-daemon workers, which wait on a queue that
will never get anything: the trial sits with no CPU, no report and no exit (a W&B example
script's failure). Only the stall rule ends it.
"""

import multiprocessing as mp


def worker(queue) -> None:
    queue.get()  # nothing ever comes


if __name__ == "__main__":
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    workers = [ctx.Process(target=worker, args=(queue,)) for _ in range(2)]
    for w in workers:
        w.start()
    print("workers started", flush=True)
    raise RuntimeError("the main process failed; its workers still wait")
