"""Stalls without the trial API (no gpusweep import): only the bootstrap can dump its stacks."""

import threading
import time


def wait_forever() -> None:
    threading.Event().wait()


print("started", flush=True)
time.sleep(0.2)
wait_forever()
