"""``python -m gpusweep``: the same program as the ``gpusweep`` command."""

import sys

from gpusweep.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m gpusweep"))
