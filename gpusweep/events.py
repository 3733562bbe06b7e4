"""Reading what a trial reports: the JSON lines it appends to ``GPUSWEEP_EVENTS``."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any


class EventTail:
    """Reads new complete lines of a file that another process appends to.

    A line without its newline yet (the writer is mid-write) waits for the next read.
    """

    def __init__(self, path: str, from_end: bool = False) -> None:
        """``from_end``: skip what the file already holds (a run handed out again)."""
        self.path = path
        self._offset = 0
        if from_end:
            try:
                self._offset = os.path.getsize(path)
            except OSError:
                pass
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


@dataclass
class TrialEvents:
    """What the orchestrator keeps of a trial's events while it runs."""

    metric_name: str | None
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics of each report
    metric_values: list[float] = field(default_factory=list)
    torch_peak_allocated_mb: float | None = None
    torch_peak_reserved_mb: float | None = None
    report_memory: list[dict[str, Any]] = field(default_factory=list)  # memory of each report
    errors: list[dict[str, Any]] = field(default_factory=list)
    stackdump_pids: set[int] = field(default_factory=set)  # processes that dump on SIGUSR1
    reports: int = 0
    preempting: bool = False  # the trial marked its W&B run preempting
    wandb_run: dict[str, Any] | None = None  # {id, dir} of the W&B run the trial wrote

    def add(self, event: dict[str, Any]) -> bool:
        """Take one event; True when it brought a new value of the sweep's metric.

        A malformed event (a trial writing its own lines) is taken for what it holds and
        never raises: a trial's bad output must not end the sweep."""
        memory = {key: value for key, value in _mapping(event.get("memory")).items()
                  if _is_finite_number(value)}
        self.torch_peak_allocated_mb = _max(self.torch_peak_allocated_mb,
                                            memory.get("torch_peak_allocated_mb"))
        self.torch_peak_reserved_mb = _max(self.torch_peak_reserved_mb,
                                           memory.get("torch_peak_reserved_mb"))
        kind = event.get("kind")
        if kind == "error":
            self.errors.append(event)
            return False
        if kind == "stackdump" and isinstance(event.get("pid"), int):
            self.stackdump_pids.add(event["pid"])
            return False
        if kind == "preempting":
            self.preempting = True
            return False
        if kind == "wandb_run" and isinstance(event.get("dir"), str):
            self.wandb_run = {"id": str(event.get("id")), "dir": event["dir"]}
            return False
        if kind != "report":
            return False
        self.reports += 1
        self.report_memory.append(memory)
        metrics = _mapping(event.get("metrics"))
        self.history.append(metrics)
        value = metrics.get(self.metric_name) if self.metric_name else None
        if _is_finite_number(value):
            self.metric_values.append(float(value))
            return True
        return False


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _max(current: float | None, value: Any) -> float | None:
    if not _is_finite_number(value):
        return current
    return float(value) if current is None else max(current, float(value))


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
