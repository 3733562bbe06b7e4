"""Host-RAM hog: grows its RSS by 50 MB every 50 ms (up to 6 GB) until something stops it."""

import time

from gpusweep import trial

hoard = []
with trial.session():
    trial.report(step=0, loss=1.0)
    for _ in range(120):
        hoard.append(bytearray(50 * 2**20))  # bytearray touches every page: real RSS
        time.sleep(0.05)
