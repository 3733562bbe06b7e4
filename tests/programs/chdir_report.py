"""Changes directory first (as Hydra used to), then reports: the paths it was given must
still work."""

import os
import tempfile

os.chdir(tempfile.gettempdir())

from gpusweep import trial  # noqa: E402

with trial.session():
    trial.report(step=0, loss=0.5)
    with open(os.path.join(os.environ["GPUSWEEP_TRIAL_DIR"], "cwd.txt"), "w") as handle:
        handle.write(os.getcwd())
