"""The session's records: the ended trials so far, what the engine sees of them, and the
journal replayed after a restart.

Every way of running trials (the local engine loop, W&B cloud sweeps) records through this
one object, so the records look the same whoever proposed the params; the files themselves
are written by :mod:`gpusweep.records.writer` and read back by :mod:`gpusweep.records.reader`.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from typing import TYPE_CHECKING, Any

from gpusweep.cleanup import EndResult, WaitResult
from gpusweep.config import SweepSpec
from gpusweep.controller import RunView
from gpusweep.process.containment import end_orphan
from gpusweep.records.journal import StartEntry
from gpusweep.records.layout import SweepLayout
from gpusweep.records.model import (
    CleanupRecord,
    SweepHeader,
    SweepState,
    TrialOrigin,
    TrialRecord,
)
from gpusweep.records.reader import read_header, read_journal
from gpusweep.records.writer import SweepWriter
from gpusweep.status import ENGINE_STATE, TrialStatus
from gpusweep.trialaccount import iso_from_unix, now_iso
from gpusweep.trialrecord import cleanup_verdict

if TYPE_CHECKING:
    from gpusweep.trialrun import RunningTrial

NOT_WAITED = ("not measured: no process of it was left at --resume, so no GPU wait ran "
              "for it")


class SweepRecorder:
    """Owns ``<log-dir>/<sweep-id>/`` and the list of ended trials."""

    def __init__(self, log_dir: str, sweep_id: str, spec: SweepSpec,
                 config_file: str | None = None, project: str | None = None,
                 entity: str | None = None) -> None:
        self.log_dir = log_dir
        self.sweep_id = sweep_id
        self.spec = spec
        self.layout = SweepLayout.of(log_dir, sweep_id)
        self.dir = self.layout.dir
        self.writer = SweepWriter(self.layout)
        self.records: list[TrialRecord] = []
        self.reruns_started = 0  # re-runs of trials our death killed, read back by restore
        self.origins: dict[str, TrialOrigin | None] = {}  # run -> where its params came from
        self.rerun_of: set[str] = set()  # trials already run again after a restart
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.header = SweepHeader(
            id=sweep_id, name=spec.name, config=spec.raw, method=spec.method,
            metric=None if spec.metric is None else
            {"name": spec.metric.name, "goal": spec.metric.goal},
            started=now_iso(), config_file=config_file, project=project, entity=entity)

    def prepare(self, resume: bool) -> None:
        """Create the sweep dir (or check the resumed one) and prove it is writable."""
        self.writer.prepare(resume, self.spec.raw, self.log_dir)

    def views(self) -> list[RunView]:
        """The engine's view of every ended trial.

        A grid point counts as done under the params the engine proposed, also when the
        memory model ran the trial with a smaller batch (else the grid proposes it forever).
        """
        grid = self.spec.method == "grid"
        return [RunView(r.run, (r.proposed if grid and r.proposed else r.params),
                        ENGINE_STATE[r.status], self.histories.get(r.run, []))
                for r in self.records]

    def trial_started(self, trial: RunningTrial, origin: TrialOrigin | None = None,
                      rerun_of: str | None = None) -> None:
        self.writer.started(StartEntry(
            run=trial.run_id, params=trial.params, token=trial.token, t=time.time(),
            origin=origin, retry_of=trial.retry_of, rerun_of=rerun_of))

    def trial_running(self, trial: RunningTrial) -> None:
        self.writer.running(trial.run_id, trial.pid)

    def trial_ended(self, record: TrialRecord, history: list[dict[str, Any]]) -> None:
        """The journal's end line (what resume trusts), memory.yaml, then sweep.yaml."""
        self.records.append(record)
        self.histories[record.run] = list(history)
        self.writer.ended(record, self.histories[record.run])
        self.write_sweep(SweepState.RUNNING)

    def end_orphan(self, entry: StartEntry, grace_s: float) -> EndResult:
        """A trial that was running when the orchestrator died: end whatever carries its
        token or is still in its cgroup (never its old process group alone: after a reboot
        that number may be anyone's). Its launcher has normally ended its tree already."""
        ended = end_orphan(f"{self.sweep_id}-{entry.run}", entry.token, grace_s)
        gc.collect()
        return ended

    def orphan_ended(self, entry: StartEntry, ended: EndResult,
                     waits: list[WaitResult]) -> TrialRecord:
        """Record an orphan ``killed``, with the GPU waits that followed its end (none: its
        cleanup is unknown, never clean)."""
        started = entry.t
        record = TrialRecord(
            run=entry.run, params=entry.params, status=TrialStatus.KILLED,
            exit_code=None, signal=None,
            started="" if started is None else iso_from_unix(started),
            ended=now_iso(), duration_s=0.0, retry_of=entry.retry_of,
            cleanup=orphan_cleanup(ended, waits),
            error="the orchestrator stopped while this trial ran; re-run under a new id")
        self.trial_ended(record, [])
        return record

    def restore(self) -> list[StartEntry]:
        """Load ended trials from the journal; return the starts that never ended."""
        previous = read_header(self.dir)
        first_start = previous.started if previous is not None else None
        if first_start:  # the sweep started then, not at this resume
            self.header = dataclasses.replace(self.header, started=first_start)
        journal = read_journal(self.dir)
        for start in journal.starts:
            self.reruns_started += start.origin is TrialOrigin.RERUN
            self.origins[start.run] = start.origin
            if start.rerun_of:
                self.rerun_of.add(start.rerun_of)
        for end in journal.ends:
            self.records.append(end.record)
            self.histories[end.record.run] = end.history
            self.writer.memory_yaml_if_missing(end.record)  # killed between the two
        return journal.unended

    def write_sweep(self, state: SweepState, wall_s: float | None = None) -> None:
        ended = None if state is SweepState.RUNNING else now_iso()
        self.header = dataclasses.replace(self.header, state=state, ended=ended,
                                          wall_s=None if wall_s is None else round(wall_s, 3))
        self.writer.sweep_yaml(self.header, self.records, self.spec.metric)


def orphan_cleanup(ended: EndResult, waits: list[WaitResult]) -> CleanupRecord:
    """An orphan's ``cleanup``: a process that survived SIGKILL is dirty; else the verdict of
    the GPU waits after the orphans were ended (one per device), null where none ran or
    where they disagree (the journal does not say which GPU the trial had)."""
    clean, reason = combined_wait(waits)
    clean, reason = cleanup_verdict(WaitResult(0.0, clean, None, None, (), reason), [ended])
    return CleanupRecord(processes_killed=ended.processes_killed,
                         escapees_killed=ended.escapees_killed,
                         wait_s=round(sum(w.wait_s for w in waits), 3), clean=clean,
                         reason=reason)


def combined_wait(waits: list[WaitResult]) -> tuple[bool | None, str | None]:
    """One verdict from the waits of every device: theirs where they agree, else None."""
    if not waits:
        return None, NOT_WAITED
    verdicts = {w.clean for w in waits}
    reasons = "; ".join(dict.fromkeys(w.reason for w in waits if w.reason)) or None
    if len(verdicts) == 1:
        return verdicts.pop(), reasons
    return None, ("unknown: the GPUs' waits disagree and the journal does not say which GPU "
                  f"it ran on ({reasons or 'no reason given'})")
