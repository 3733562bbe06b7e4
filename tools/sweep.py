#!/usr/bin/env python
"""Run a W&B sweep with GPU-safe trial isolation: ``python tools/sweep.py --sweep-config FILE``.

The checkout's entry point, the same program as the installed ``gpusweep`` command (and
``python -m gpusweep``); the logic lives in ``gpusweep``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpusweep.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="tools/sweep.py"))
