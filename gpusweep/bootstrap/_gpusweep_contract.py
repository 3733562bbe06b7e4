"""The names the orchestrator and a trial process agree on, in one place (stdlib only).

The parent talks to the child through the environment and files only. The parent imports
this as ``gpusweep.bootstrap._gpusweep_contract``; inside a trial the bootstrap imports it
under its top-level name, as its sibling on ``PYTHONPATH`` (the trial may run under another
interpreter than the orchestrator's, without gpusweep installed). Names only: importing it
costs nothing at a trial's start-up.
"""

# The environment the launcher sets for every trial.
EVENTS_ENV = "GPUSWEEP_EVENTS"  # the JSON-lines file the trial appends its events to
TRIAL_DIR_ENV = "GPUSWEEP_TRIAL_DIR"  # <sweep-dir>/<run-id>/
TOKEN_ENV = "GPUSWEEP_TRIAL_TOKEN"  # a random id: finds the trial's escapees by environment
SWEEP_ID_ENV = "GPUSWEEP_SWEEP_ID"  # locally, the sweep's id (WANDB_SWEEP_ID is the server's)
PROFILE_LEAKS_ENV = "GPUSWEEP_PROFILE_LEAKS"  # "1": tracemalloc from the first line
LEAK_WARMUP_ENV = "GPUSWEEP_LEAK_WARMUP"  # reports before the leak profile's first snapshot
DEFAULT_LEAK_WARMUP = 2

# Files in the trial's directory that one side writes and the other reads.
PREEMPT_MARKER = "preempt"  # the parent, before a preempted trial's SIGTERM
LEAKS_FILE = "leaks.txt"  # the child, with GPUSWEEP_PROFILE_LEAKS=1
