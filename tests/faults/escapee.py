"""Leaves a grandchild behind: double fork + setsid, and the grandchild ignores SIGTERM.

The grandchild writes its pid to ``$GPUSWEEP_TRIAL_DIR/escapee.pid`` so tests can check it
is gone afterwards.
"""

import os
import signal
import time

pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ballast = bytearray(64 * 1024 * 1024)  # holds memory like a leaked DataLoader worker
        path = os.path.join(os.environ.get("GPUSWEEP_TRIAL_DIR", "."), "escapee.pid")
        with open(path + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
        while True:
            time.sleep(1)
    os._exit(0)
os.waitpid(pid, 0)
path = os.path.join(os.environ.get("GPUSWEEP_TRIAL_DIR", "."), "escapee.pid")
while not os.path.exists(path):
    time.sleep(0.01)
print("parent exits, grandchild lives on", flush=True)
