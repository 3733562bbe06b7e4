"""A trial on a SIMULATED GPU: holds --mb MB on the device its CUDA_VISIBLE_DEVICES names.

It opens the simulated device files (as a CUDA context would) and registers the memory with
the simulated NVML (tests/simnvml), reports one metric and exits after --seconds. Options
model what real trials do to a GPU: a forked worker that inherits the context (--worker_mb),
memory the driver never gives back (--orphan_mb), several process lists (--lists), no GPU
at all (--cpu), trigger files for the scenario (--touch at start, --touch_at_exit),
waiting for a simulated colleague to acknowledge one (--await_file), and a CUDA context
created some time before the first allocation (--alloc_after_s).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simnvml import holder  # noqa: E402
from simnvml.world import load_scenario  # noqa: E402

from gpusweep import trial  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--mb", type=float, default=500.0)
parser.add_argument("--seconds", type=float, default=0.6)
parser.add_argument("--seconds_per_gb", type=float, default=0.0)  # bigger trials run longer
parser.add_argument("--lists", default="compute")
parser.add_argument("--orphan_mb", type=float, default=0.0)
parser.add_argument("--worker_mb", type=float, default=0.0)
parser.add_argument("--cpu", type=int, default=0)  # 1: a trial that never touches the GPU
parser.add_argument("--touch", default="")
parser.add_argument("--touch_at_exit", default="")
parser.add_argument("--await_file", default="")
parser.add_argument("--alloc_after_s", type=float, default=0.0)  # context first, memory later
parser.add_argument("--x", type=float, default=0.0)
args = parser.parse_args()
state = load_scenario()["state_dir"]


def touch(name: str) -> None:
    if name:
        with open(os.path.join(state, name), "w", encoding="utf-8"):
            pass


with trial.session():
    touch(args.touch)
    if args.alloc_after_s and not args.cpu:  # the device files open, nothing allocated yet
        holder.open_context(holder.device_for(), state)
        time.sleep(args.alloc_after_s)
    held = None if args.cpu else holder.hold(args.mb, tuple(args.lists.split(",")),
                                             args.orphan_mb)
    if args.worker_mb and not args.cpu and os.fork() == 0:  # a worker: inherits the context
        holder.hold(args.worker_mb)
        time.sleep(args.seconds + 30)  # outlives the trial until the tree is ended
        os._exit(0)
    deadline = time.monotonic() + 60
    while args.await_file and not os.path.exists(os.path.join(state, args.await_file)) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(args.seconds + args.seconds_per_gb * args.mb / 1000.0)
    trial.report(step=0, loss=(args.x - 1.0) ** 2, held_mb=args.mb)
    touch(args.touch_at_exit)
print("exiting without freeing the simulated GPU memory", flush=True)
