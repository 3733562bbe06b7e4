"""Dies by a SIGKILL nobody in gpusweep sent, with little memory in use."""

import os
import signal

print("killing myself", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
