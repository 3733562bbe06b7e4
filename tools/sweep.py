#!/usr/bin/env python
"""Run a W&B sweep with GPU-safe trial isolation: ``python tools/sweep.py --sweep-config FILE``.

A thin entry point; the logic lives in ``gpusweep``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpusweep.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
