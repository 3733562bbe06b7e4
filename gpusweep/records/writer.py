"""The one writer of a sweep directory: config copy, journal lines, memory.yaml, sweep.yaml.

YAML is written from the records here and nowhere else, always atomically (a reader never
sees half a file); the journal's lines are fsynced before a call returns. A record that
cannot be written (disk full, dir removed) stops the sweep cleanly: what was written before
stays valid.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from gpusweep.config import Metric
from gpusweep.errors import EXIT_RECORDS, BadInput, SweepAborted
from gpusweep.records.atomic import to_yaml, write_text, write_yaml
from gpusweep.records.journal import Journal, StartEntry
from gpusweep.records.layout import SweepLayout
from gpusweep.records.model import SweepHeader, TrialRecord, best_trial
from gpusweep.status import TrialStatus


class SweepWriter:
    """Writes one sweep directory; keeps sweep.yaml's rendered rows between rewrites."""

    def __init__(self, layout: SweepLayout) -> None:
        self.layout = layout
        self.journal = Journal(layout.journal)
        self._rows: list[str] = []  # sweep.yaml rows already rendered, one per record

    def prepare(self, resume: bool, config: dict[str, Any], log_dir: str) -> None:
        """Create the sweep dir (or check the resumed one), prove it is writable, and keep
        the sweep file's copy (a new sweep only)."""
        if resume and not os.path.isdir(self.layout.dir):
            raise BadInput(self.layout.dir, "--resume", "no such sweep directory")
        try:
            os.makedirs(self.layout.dir, exist_ok=True)
            with open(self.layout.write_test, "w", encoding="utf-8") as handle:
                handle.write("ok")
            os.unlink(self.layout.write_test)
        except OSError as exc:
            raise BadInput(log_dir, "--log-dir",
                           f"not writable: {exc.strerror or exc}") from None
        if not resume:
            write_yaml(self.layout.config_yaml, config)

    def started(self, entry: StartEntry) -> None:
        with self._writing():
            os.makedirs(self.layout.trial(entry.run).dir, exist_ok=True)
            self.journal.append(entry.to_dict())

    def running(self, run: str, pgid: int | None) -> None:
        with self._writing():
            self.journal.append({"event": "pid", "run": run, "pgid": pgid})

    def ended(self, record: TrialRecord, history: list[dict[str, Any]]) -> None:
        """The journal's end line (what resume trusts), then memory.yaml."""
        with self._writing():
            self.journal.append({"event": "end", "run": record.run,
                                 "record": record.to_dict(), "history": history})
            self._memory_yaml(record)

    def memory_yaml_if_missing(self, record: TrialRecord) -> None:
        """After a restart: the orchestrator died between the journal and memory.yaml."""
        if not os.path.exists(self.layout.trial(record.run).memory_yaml):
            with self._writing():
                self._memory_yaml(record)

    def sweep_yaml(self, header: SweepHeader, records: list[TrialRecord],
                   metric: Metric | None) -> None:
        with self._writing():
            write_sweep(self.layout.sweep_yaml, header, records, metric, self._rows)

    def _memory_yaml(self, record: TrialRecord) -> None:
        paths = self.layout.trial(record.run)
        os.makedirs(paths.dir, exist_ok=True)
        write_trial(paths.memory_yaml, record)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise SweepAborted(f"error: cannot write the sweep's records in {self.layout.dir}: "
                               f"{exc.strerror or exc}; sweep stopped", EXIT_RECORDS) from None


def write_trial(path: str, record: TrialRecord) -> None:
    write_yaml(path, record.to_dict())


def write_sweep(path: str, header: SweepHeader, records: list[TrialRecord],
                metric: Metric | None, rendered_rows: list[str] | None = None) -> None:
    """Rewrite sweep.yaml with every trial so far and the totals.

    ``rendered_rows`` caches each trial's row as YAML text (a row never changes once its
    trial ended): without it, a 500-trial sweep spends most of its time re-rendering rows.
    """
    rows = rendered_rows if rendered_rows is not None else []
    for record in records[len(rows):]:
        rows.append(render_row(record))
    trials = "trials:\n" + "".join(rows) if rows else "trials: []\n"
    # Not fsynced: it grows with the sweep and is rebuilt from the journal, which is.
    write_text(path, to_yaml({"sweep": header.to_dict()}) + trials
               + to_yaml({"totals": totals(records, metric)}), durable=False)


def render_row(record: TrialRecord) -> str:
    """One trial's row as the YAML list item it is in sweep.yaml's ``trials:``."""
    return to_yaml([record.row()])


def totals(records: list[TrialRecord], metric: Metric | None) -> dict[str, Any]:
    """Counts per status and the best trial by its best metric value."""
    counts: dict[str, Any] = {"trials": len(records)}
    for status in TrialStatus:
        counts[status.value] = sum(1 for r in records if r.status is status)
    counts["best"] = None
    best = best_trial(records, metric)
    if best is not None:
        counts["best"] = {"run": best.run, "metric": best.metric.best, "params": best.params}
    return counts
