"""Stalls: reports once, then blocks forever in a call that uses no CPU."""

import threading

from gpusweep import trial

with trial.session():
    trial.report(step=0, loss=1.0)
    print("waiting on an event nobody sets", flush=True)
    threading.Event().wait()
