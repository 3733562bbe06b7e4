"""A trial on a SIMULATED GPU (tests/simnvml) that neither reports nor uses the CPU.

``--busy 0``: dead, holding its CUDA context: 500 MB on the device, which runs nothing
(NVML: 0 %), forever; only the stall rule ends it. ``--busy 1``: alive, waiting on its GPU
work (the device busy) for ``--seconds``, then it exits 0: the stall rule must not fire.
"""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simnvml import holder  # noqa: E402

from gpusweep import trial  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--busy", type=int, default=0)
parser.add_argument("--seconds", type=float, default=5.0)
args = parser.parse_args()

with trial.session():
    held = holder.hold(500.0, busy=bool(args.busy))
    trial.report(step=0, loss=1.0)
    if args.busy:
        time.sleep(args.seconds)
    else:
        print("holding the GPU, running nothing", flush=True)
        threading.Event().wait()
print("the GPU work is done", flush=True)
