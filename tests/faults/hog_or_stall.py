"""Two faults for one sweep, chosen by ``--what``: ``hog`` grows its RSS by 50 MB every 50 ms
(as rss_hog.py), ``stall`` reports once and then blocks in a call that uses no CPU (as
stall.py). Cloud sweeps have one program, so both guards are tried in one sweep."""

import argparse
import threading
import time

from gpusweep import trial

parser = argparse.ArgumentParser()
parser.add_argument("--what", choices=("hog", "stall"), required=True)
args = parser.parse_args()

hoard = []
with trial.session():
    trial.report(step=0, loss=1.0)
    if args.what == "stall":
        print("waiting on an event nobody sets", flush=True)
        threading.Event().wait()
    for _ in range(120):
        hoard.append(bytearray(50 * 2**20))  # bytearray touches every page: real RSS
        time.sleep(0.05)
