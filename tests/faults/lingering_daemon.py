"""The daemon every detachment fault leaves behind: ignores SIGTERM, holds memory, lives on.

``python lingering_daemon.py PIDFILE MB``: holds MB megabytes of written (resident) memory,
writes what it has (``PIDFILE.json``: its pid, parent, process group and session, whether
it still carries the trial's token) and then its pid to PIDFILE, both atomically, and
sleeps. Its argv names PIDFILE, so a test can find it whatever its environment says (it
usually has none).

Ids come from ``/proc/self``, which is the orchestrator's view even when the daemon runs in a
PID namespace of its own (where ``os.getpid()`` would say 1). It ends by itself after
``MAX_LIFE_S``, so that a test that fails never leaves it on the machine for good.
"""

import json
import os
import signal
import sys
import time

MAX_LIFE_S = 600.0  # far longer than any sweep that tests it


def write_atomically(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def own_ids() -> dict:
    """pid, parent, process group and session as the orchestrator's PID namespace sees
    them."""
    with open("/proc/self/stat", "rb") as handle:
        data = handle.read()
    fields = data[data.rfind(b")") + 2:].split()
    return {"pid": int(os.readlink("/proc/self")), "ppid": int(fields[1]),
            "pgid": int(fields[2]), "sid": int(fields[3])}


signal.signal(signal.SIGTERM, signal.SIG_IGN)
pidfile, mb = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + MAX_LIFE_S
ballast = b"\1" * (mb << 20)  # written, so resident: what a leaked worker holds
ids = own_ids()
write_atomically(pidfile + ".json", json.dumps(
    {**ids, "token": "GPUSWEEP_TRIAL_TOKEN" in os.environ, "environ": sorted(os.environ)}))
write_atomically(pidfile, str(ids["pid"]))
while time.monotonic() < deadline:
    time.sleep(1)
