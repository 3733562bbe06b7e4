"""The sweep directory: its config copy, journal, one memory.yaml per trial, and sweep.yaml.

Every way of running trials (the local engine loop, W&B cloud sweeps) records through this
one object, so the records look the same whoever proposed the params.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import time
from collections.abc import Iterator
from typing import Any

from gpusweep import records as rec
from gpusweep.atomic import write_yaml
from gpusweep.config import SweepSpec
from gpusweep.containment import end_orphan
from gpusweep.controller import RunView
from gpusweep.errors import EXIT_RECORDS, BadInput, SweepAborted
from gpusweep.journal import Journal
from gpusweep.records import CleanupRecord, SweepHeader, TrialRecord
from gpusweep.status import ENGINE_STATE, TrialStatus
from gpusweep.sweepdir import read_yaml
from gpusweep.trialrun import RunningTrial, iso_from_unix, now_iso


class SweepRecorder:
    """Owns ``<log-dir>/<sweep-id>/`` and the list of ended trials."""

    def __init__(self, log_dir: str, sweep_id: str, spec: SweepSpec,
                 config_file: str | None = None, project: str | None = None,
                 entity: str | None = None) -> None:
        self.log_dir = log_dir
        self.sweep_id = sweep_id
        self.spec = spec
        # Absolute: the trials get these paths in their environment and may chdir.
        self.dir = os.path.abspath(os.path.join(log_dir, sweep_id))
        self.journal = Journal(os.path.join(self.dir, "journal.jsonl"))
        self.records: list[TrialRecord] = []
        self.reruns_started = 0  # re-runs of trials our death killed, read back by restore
        self.origins: dict[str, str | None] = {}  # run -> where its params came from
        self.rerun_of: set[str] = set()  # trials already run again after a restart
        self._rows: list[str] = []  # sweep.yaml rows already rendered, one per record
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.header = SweepHeader(
            id=sweep_id, name=spec.name, config=spec.raw, method=spec.method,
            metric=None if spec.metric is None else
            {"name": spec.metric.name, "goal": spec.metric.goal},
            started=now_iso(), config_file=config_file, project=project, entity=entity)

    def prepare(self, resume: bool) -> None:
        """Create the sweep dir (or check the resumed one) and prove it is writable."""
        if resume and not os.path.isdir(self.dir):
            raise BadInput(self.dir, "--resume", "no such sweep directory")
        try:
            os.makedirs(self.dir, exist_ok=True)
            probe = os.path.join(self.dir, ".write-test")
            with open(probe, "w", encoding="utf-8") as handle:
                handle.write("ok")
            os.unlink(probe)
        except OSError as exc:
            raise BadInput(self.log_dir, "--log-dir",
                           f"not writable: {exc.strerror or exc}") from None
        if not resume:
            write_yaml(os.path.join(self.dir, "config.yaml"), self.spec.raw)

    def views(self) -> list[RunView]:
        """The engine's view of every ended trial.

        A grid point counts as done under the params the engine proposed, also when the
        memory model ran the trial with a smaller batch (else the grid proposes it forever).
        """
        grid = self.spec.method == "grid"
        return [RunView(r.run, (r.proposed if grid and r.proposed else r.params),
                        ENGINE_STATE[r.status], self.histories.get(r.run, []))
                for r in self.records]

    def trial_started(self, trial: RunningTrial, origin: str | None = None,
                      rerun_of: str | None = None) -> None:
        with self._writing():
            os.makedirs(trial.paths.dir, exist_ok=True)
            entry = {"event": "start", "run": trial.run_id, "params": trial.params,
                     "token": trial.token, "t": time.time(), "origin": origin,
                     "retry_of": trial.retry_of}
            if rerun_of:
                entry["rerun_of"] = rerun_of
            self.journal.append(entry)

    def trial_running(self, trial: RunningTrial) -> None:
        with self._writing():
            self.journal.append({"event": "pid", "run": trial.run_id, "pgid": trial.pid})

    def trial_ended(self, record: TrialRecord, history: list[dict[str, Any]]) -> None:
        """The journal's end line (what resume trusts), memory.yaml, then sweep.yaml."""
        self.records.append(record)
        self.histories[record.run] = list(history)
        with self._writing():
            self.journal.append({"event": "end", "run": record.run,
                                 "record": record.to_dict(),
                                 "history": self.histories[record.run]})
            self._write_memory_yaml(record)
        self.write_sweep("running")

    def _write_memory_yaml(self, record: TrialRecord) -> None:
        trial_dir = os.path.join(self.dir, record.run)
        os.makedirs(trial_dir, exist_ok=True)
        rec.write_trial(os.path.join(trial_dir, "memory.yaml"), record)

    def close_orphan(self, entry: dict[str, Any], grace_s: float) -> tuple[TrialRecord, set[int]]:
        """A trial that was running when the orchestrator died: end whatever carries its token
        or is still in its cgroup (never its old process group alone: after a reboot that
        number may be anyone's), record it ``killed``; returns the record and the pids that
        were ended. Its launcher has normally ended its tree already."""
        ended = end_orphan(f"{self.sweep_id}-{entry['run']}", entry.get("token"), grace_s)
        gc.collect()
        started = entry.get("t")
        record = TrialRecord(
            run=entry["run"], params=entry.get("params") or {}, status=TrialStatus.KILLED,
            exit_code=None, signal=None,
            started="" if started is None else iso_from_unix(started),
            ended=now_iso(), duration_s=0.0, retry_of=entry.get("retry_of"),
            cleanup=CleanupRecord(processes_killed=ended.processes_killed,
                                  escapees_killed=ended.escapees_killed,
                                  wait_s=0.0, clean=not ended.leftover),
            error="the orchestrator stopped while this trial ran; re-run under a new id")
        self.trial_ended(record, [])
        return record, set(ended.ended_pids)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A record that cannot be written (disk full, dir removed) stops the sweep cleanly;
        what was written before stays valid, since every write is atomic."""
        try:
            yield
        except OSError as exc:
            raise SweepAborted(f"error: cannot write the sweep's records in {self.dir}: "
                               f"{exc.strerror or exc}; sweep stopped", EXIT_RECORDS) from None

    def restore(self) -> list[dict[str, Any]]:
        """Load ended trials from the journal; return the start entries that never ended."""
        previous = read_yaml(os.path.join(self.dir, "sweep.yaml")) or {}
        first_start = (previous.get("sweep") or {}).get("started")
        if first_start:  # the sweep started then, not at this resume
            self.header = dataclasses.replace(self.header, started=first_start)
        started: dict[str, dict[str, Any]] = {}
        for entry in self.journal.read():
            run = entry.get("run")
            if entry["event"] == "start":
                started[run] = dict(entry)
                self.reruns_started += entry.get("origin") == "rerun"
                self.origins[run] = entry.get("origin")
                if entry.get("rerun_of"):
                    self.rerun_of.add(entry["rerun_of"])
            elif entry["event"] == "pid" and run in started:
                started[run]["pgid"] = entry.get("pgid")
            elif entry["event"] == "end" and isinstance(entry.get("record"), dict):
                started.pop(run, None)
                record = TrialRecord.from_dict(entry["record"])
                self.records.append(record)
                self.histories[run] = entry.get("history") or []
                if not os.path.exists(os.path.join(self.dir, run, "memory.yaml")):
                    with self._writing():  # killed between the journal and memory.yaml
                        self._write_memory_yaml(record)
        return list(started.values())

    def write_sweep(self, state: str, wall_s: float | None = None) -> None:
        ended = None if state == "running" else now_iso()
        self.header = dataclasses.replace(self.header, state=state, ended=ended,
                                          wall_s=None if wall_s is None else round(wall_s, 3))
        with self._writing():
            rec.write_sweep(os.path.join(self.dir, "sweep.yaml"), self.header, self.records,
                            self.spec.metric, self._rows)
