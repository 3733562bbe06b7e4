"""Kills its own parent (gpusweep's launcher) with SIGKILL, then goes on running.

What a crashed node agent or an OOM killer choosing the launcher would do: the orchestrator
must still end the trial's tree, and record that the exit status is unknown.
"""

import os
import signal
import time

os.kill(os.getppid(), signal.SIGKILL)
print("launcher killed", flush=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(120)
