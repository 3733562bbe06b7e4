"""Kills its own parent (gpusweep's launcher) with SIGKILL, then goes on running.

What a crashed node agent or an OOM killer choosing the launcher would do: the orchestrator
must still end the trial's tree, and record that the exit status is unknown.

``--daemon``: first leaves a daemon as ``detach.py --how=setsid`` does (no token, its own
session), and lets the monitor see it below the launcher for a while before the kill: once
the launcher is gone, that daemon is adopted by init, and only what the orchestrator saw (or
the trial's cgroup) still names it.
"""

import os
import signal
import sys
import time

from detach import via_setsid

if "--daemon" in sys.argv:
    pidfile = os.path.join(os.environ["GPUSWEEP_TRIAL_DIR"], "daemon.pid")
    via_setsid(pidfile, 20)
    deadline = time.monotonic() + 60
    while not os.path.exists(pidfile) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(2.0)  # many of the monitor's samples (10 Hz)
os.kill(os.getppid(), signal.SIGKILL)
print("launcher killed", flush=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(120)
