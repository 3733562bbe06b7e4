"""Where everything lives in a sweep directory: every file name, in this one place.

``<log-dir>/<sweep-id>/`` holds the sweep's files (:class:`SweepLayout`) and one directory
per trial, ``<sweep-id>/<run-id>/`` (:class:`TrialPaths`). The writer, the reader and every
tool that opens these files join their paths here, so a name changes in one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gpusweep.bootstrap import _gpusweep_contract as contract

# The sweep's own files.
CONFIG_YAML = "config.yaml"  # the sweep file as given (``--resume`` reads it back)
JOURNAL = "journal.jsonl"  # one fsynced line per trial start, pid and end
SWEEP_YAML = "sweep.yaml"  # header, one row per ended trial, totals
LOCK = "lock"  # held by the one orchestrator running the sweep
WRITE_TEST = ".write-test"  # proves the directory writable before the first trial
SUMMARY_LOG = "summary-run.log"  # the W&B summary subprocess's output
SUMMARY_OUTCOME = "summary-run.yaml"  # its state: writing, written or failed
SUMMARY_LOCK = ".summary.lock"  # one summary writer at a time
REPORT_DIR = "report"  # report.md and its pictures
REPORT_MD = "report.md"
WANDB_DIR = "wandb"  # the trials' offline runs and the summary run
WANDB_DATA_DIR = "data"  # under wandb/: where wandb stages artifact files

# Each trial's files, under its run id.
MEMORY_YAML = "memory.yaml"  # its record
MEMORY_CSV = "memory.csv"  # the monitor's samples
OUTPUT_LOG = "output.log"  # its stdout and stderr
EVENTS = "events.jsonl"  # what the trial process reports (metrics, its own peaks)
PARAM_FILE = "config.yaml"  # its params, for wandb.config
ARGS_JSON = "args.json"  # its params for ``${args_json_file}``
# The parent/child contract's own names (the bootstrap reads them too).
PREEMPT_MARKER = contract.PREEMPT_MARKER  # written before a preempted trial gets its SIGTERM
LEAKS_FILE = contract.LEAKS_FILE  # the trial's tracemalloc report


@dataclass(frozen=True)
class TrialPaths:
    """Where one trial's files live: ``<sweep-dir>/<run-id>/``."""

    sweep_dir: str
    run_id: str

    @property
    def dir(self) -> str:
        return os.path.join(self.sweep_dir, self.run_id)

    @property
    def output_log(self) -> str:
        return os.path.join(self.dir, OUTPUT_LOG)

    @property
    def events(self) -> str:
        return os.path.join(self.dir, EVENTS)

    @property
    def memory_yaml(self) -> str:
        return os.path.join(self.dir, MEMORY_YAML)

    @property
    def memory_csv(self) -> str:
        return os.path.join(self.dir, MEMORY_CSV)

    @property
    def param_file(self) -> str:
        return os.path.join(self.dir, PARAM_FILE)

    @property
    def args_json_file(self) -> str:
        return os.path.join(self.dir, ARGS_JSON)

    @property
    def preempt_marker(self) -> str:
        """Written before a preempted trial gets its SIGTERM (the bootstrap reads it)."""
        return os.path.join(self.dir, PREEMPT_MARKER)


@dataclass(frozen=True)
class SweepLayout:
    """The files of one sweep directory."""

    dir: str

    @classmethod
    def of(cls, log_dir: str, sweep_id: str) -> SweepLayout:
        """Absolute: the trials get these paths in their environment and may chdir."""
        return cls(os.path.abspath(os.path.join(log_dir, sweep_id)))

    def trial(self, run: str) -> TrialPaths:
        return TrialPaths(self.dir, str(run))

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @property
    def config_yaml(self) -> str:
        return self._file(CONFIG_YAML)

    @property
    def journal(self) -> str:
        return self._file(JOURNAL)

    @property
    def sweep_yaml(self) -> str:
        return self._file(SWEEP_YAML)

    @property
    def lock(self) -> str:
        return self._file(LOCK)

    @property
    def write_test(self) -> str:
        return self._file(WRITE_TEST)

    @property
    def summary_log(self) -> str:
        return self._file(SUMMARY_LOG)

    @property
    def summary_outcome(self) -> str:
        return self._file(SUMMARY_OUTCOME)

    @property
    def summary_lock(self) -> str:
        return self._file(SUMMARY_LOCK)

    @property
    def report_dir(self) -> str:
        return self._file(REPORT_DIR)

    @property
    def report_md(self) -> str:
        return os.path.join(self.report_dir, REPORT_MD)

    @property
    def wandb_dir(self) -> str:
        return self._file(WANDB_DIR)

    @property
    def wandb_data_dir(self) -> str:
        return os.path.join(self.wandb_dir, WANDB_DATA_DIR)

    def offline_runs(self, run_id: str) -> str:
        """The glob of the offline run directories of ``run_id`` (one per ``wandb.init``)."""
        return os.path.join(self.wandb_dir, f"offline-run-*-{run_id}")

    @property
    def any_runs(self) -> str:
        """The glob of every run directory under ``wandb/`` (offline or synced)."""
        return os.path.join(self.wandb_dir, "*run-*-*")
