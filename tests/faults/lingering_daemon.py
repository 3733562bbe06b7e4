"""The daemon every detachment fault leaves behind: ignores SIGTERM, holds memory, lives on.

``python lingering_daemon.py PIDFILE MB``: writes its pid to PIDFILE (atomically), holds MB
megabytes of written (resident) memory and sleeps forever. Its argv names PIDFILE, so a test
can find it whatever its environment says (it usually has none).
"""

import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
pidfile, mb = sys.argv[1], int(sys.argv[2])
ballast = b"\1" * (mb << 20)  # written, so resident: what a leaked worker holds
with open(pidfile + ".tmp", "w") as handle:
    handle.write(str(os.getpid()))
os.replace(pidfile + ".tmp", pidfile)
while True:
    time.sleep(1)
