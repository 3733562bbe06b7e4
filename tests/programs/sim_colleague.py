"""Another user's job on a SIMULATED shared GPU: holds --mb MB, and when --when appears in
the scenario's state dir, changes to --then_mb MB and writes <when>.done. Runs until ended
(at most --max_s seconds). With --start_on, it starts holding only once that file appears
(and writes <start_on>.done): a job that starts between trials. Not part of any sweep: no
trial token, its own process group.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simnvml import holder  # noqa: E402
from simnvml.world import load_scenario  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--mb", type=float, default=1000.0)
parser.add_argument("--then_mb", type=float, default=None)
parser.add_argument("--when", default="")
parser.add_argument("--max_s", type=float, default=120.0)
parser.add_argument("--start_on", default="")
args = parser.parse_args()
state = load_scenario()["state_dir"]
deadline = time.monotonic() + args.max_s

if not args.start_on:
    held = holder.hold(args.mb)
with open(os.path.join(state, "colleague.ready"), "w", encoding="utf-8"):
    pass
if args.start_on:
    while not os.path.exists(os.path.join(state, args.start_on)) and time.monotonic() < deadline:
        time.sleep(0.02)
    held = holder.hold(args.mb)
    with open(os.path.join(state, f"{args.start_on}.done"), "w", encoding="utf-8"):
        pass
changed = False
while time.monotonic() < deadline:
    if args.when and not changed and os.path.exists(os.path.join(state, args.when)):
        held.set(args.then_mb)
        with open(os.path.join(state, f"{args.when}.done"), "w", encoding="utf-8"):
            pass
        changed = True
    time.sleep(0.02)
