"""Has a service outside its tree start a daemon for it, with its own environment.

What ``tmux new-window``, ``screen -X`` or a job server already running do: the daemon is
the service's child, never the trial's descendant nor in its cgroup, so no subreaper holds
it; it keeps the trial's environment, token included, which is what the token scan (the
second net) finds. ``--spool DIR``: where the service (started by the test) takes requests.
"""

import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--spool", required=True)
parser.add_argument("--x", default=None)  # the sweep's grid parameter
args = parser.parse_args()
pidfile = os.path.join(os.environ["GPUSWEEP_TRIAL_DIR"], "daemon.pid")
request = os.path.join(args.spool, f"{os.getpid()}.json")
with open(request + ".tmp", "w") as handle:
    json.dump({"pidfile": pidfile, "environ": dict(os.environ)}, handle)
os.replace(request + ".tmp", request)
deadline = time.monotonic() + 60
while not os.path.exists(pidfile):
    if time.monotonic() > deadline:
        sys.exit("the service did not start the daemon")
    time.sleep(0.01)

from gpusweep import trial  # noqa: E402

trial.report(step=0, loss=1.0)
print("a daemon was started by the service", flush=True)
