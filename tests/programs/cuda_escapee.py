"""The incident's ghost: a grandchild that left the trial's session holds GPU memory forever.

Double fork + setsid; the grandchild ignores SIGTERM, allocates --mb MB on the GPU and
writes its pid to ``$GPUSWEEP_TRIAL_DIR/escapee.pid``; the trial itself exits at once.
"""

import argparse
import os
import signal
import time

parser = argparse.ArgumentParser()
parser.add_argument("--mb", type=int, default=512)
args = parser.parse_args()
path = os.path.join(os.environ.get("GPUSWEEP_TRIAL_DIR", "."), "escapee.pid")

pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        import torch  # CUDA only in the grandchild, after the forks

        held = torch.ones(args.mb * 1024 * 1024, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        with open(path + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
        while True:
            time.sleep(1)
    os._exit(0)
os.waitpid(pid, 0)
deadline = time.monotonic() + 120
while not os.path.exists(path) and time.monotonic() < deadline:
    time.sleep(0.05)
print("trial exits; its grandchild keeps GPU memory", flush=True)
