"""The one reader of a sweep directory: sweep.yaml, each trial's memory.yaml and memory.csv,
and the journal, as typed records.

Reading only: it works on a finished, interrupted or still running sweep. A trial whose
memory.yaml is missing or unreadable is listed, not fatal; a directory that is not a sweep is
a :class:`BadInput` naming it (:func:`load_sweep_dir`), or None (:func:`read_sweep_dir`, for
tools that report a sweep that recorded nothing).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from gpusweep.config import Metric
from gpusweep.errors import BadInput
from gpusweep.records.journal import Journal, Replay, replay
from gpusweep.records.layout import SweepLayout
from gpusweep.records.model import SweepHeader, TrialRecord, best_trial
from gpusweep.status import TrialStatus

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


@dataclass(frozen=True)
class Samples:
    """One trial's memory.csv: seconds since its start and MB (NaN where not measured)."""

    t: tuple[float, ...] = ()
    rss_mb: tuple[float, ...] = ()
    gpu_used_mb: tuple[float, ...] = ()
    gpu_tree_mb: tuple[float, ...] = ()

    @property
    def has_gpu(self) -> bool:
        return any(math.isfinite(v) for v in self.gpu_used_mb)


@dataclass(frozen=True)
class TrialRow:
    """One trial as sweep.yaml lists it, with its memory.yaml (None: missing, unreadable)."""

    run: str
    params: dict[str, Any] = field(default_factory=dict)
    status: TrialStatus | None = None
    record: TrialRecord | None = None
    unreadable: str | None = None  # why its memory.yaml could not be read (None: it is absent)

    @property
    def record_problem(self) -> str | None:
        """What is wrong with the trial's memory.yaml, in words; None when it was read."""
        if self.record is not None:
            return None
        return "no memory.yaml" if self.unreadable is None else \
            f"memory.yaml unreadable: {self.unreadable}"


@dataclass(frozen=True)
class SweepData:
    """One sweep directory, read."""

    dir: str
    header: SweepHeader
    rows: list[TrialRow]
    samples: dict[str, Samples] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> SweepLayout:
        return SweepLayout(self.dir)

    @property
    def config(self) -> dict[str, Any]:
        return self.header.config

    @property
    def records(self) -> list[TrialRecord]:
        """The trials whose memory.yaml was read, in the order they ended."""
        return [row.record for row in self.rows if row.record is not None]

    @property
    def missing(self) -> list[str]:
        """Rows whose memory.yaml is gone or unreadable."""
        return [row.run for row in self.rows if row.record is None]

    @property
    def has_gpu(self) -> bool:
        return any(r.gpu.peak_used_mb is not None for r in self.records) or \
            any(s.has_gpu for s in self.samples.values())

    @property
    def metric(self) -> dict[str, Any] | None:
        metric = self.header.metric
        return metric if isinstance(metric, dict) and metric.get("name") else None

    def best(self) -> TrialRecord | None:
        """The trial with the best value of the sweep's metric (None without a metric)."""
        metric = self.metric
        if metric is None:
            return None
        goal = "maximize" if metric.get("goal") == "maximize" else "minimize"
        return best_trial(self.records, Metric(str(metric["name"]), goal))


def load_sweep_dir(path: str, samples: bool = True, *, command: str = "") -> SweepData:
    """Read a sweep directory; BadInput naming the directory (and ``command``, the caller's
    name for itself: ``report``, ``sync``) when it is not one.

    ``samples``: also read each trial's memory.csv (the report's timelines).
    """
    layout = SweepLayout(path)
    if not os.path.isdir(path):
        problem = "not a directory" if os.path.exists(path) else "no such directory"
        raise BadInput(path, command, problem)
    if not os.path.isfile(layout.sweep_yaml):
        raise BadInput(path, command, "not a sweep directory (no sweep.yaml)")
    try:
        with open(layout.sweep_yaml, encoding="utf-8") as handle:
            sweep = yaml.load(handle, Loader=_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(layout.sweep_yaml, "", f"unreadable: {exc}") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("sweep"), dict):
        raise BadInput(layout.sweep_yaml, "sweep", "missing: not a gpusweep sweep.yaml")
    try:
        header = SweepHeader.from_dict(sweep["sweep"])
    except (TypeError, ValueError) as exc:
        raise BadInput(layout.sweep_yaml, "sweep", f"not a gpusweep sweep.yaml: {exc}") from None
    rows = [_row(layout, entry) for entry in sweep.get("trials") or []
            if isinstance(entry, dict)]
    read = {row.run: read_samples(layout.trial(row.run).memory_csv)
            for row in rows if samples and row.record is not None}
    totals = sweep.get("totals") if isinstance(sweep.get("totals"), dict) else {}
    return SweepData(path, header, rows, read, totals)


def read_sweep_dir(path: str, samples: bool = False) -> SweepData | None:
    """:func:`load_sweep_dir`, or None where there is no readable sweep.yaml."""
    try:
        return load_sweep_dir(path, samples)
    except BadInput:
        return None


def read_header(path: str) -> SweepHeader | None:
    """sweep.yaml's header alone (no trial files read); None where there is none."""
    sweep = read_yaml(SweepLayout(path).sweep_yaml)
    try:
        return SweepHeader.from_dict(sweep["sweep"])
    except (TypeError, ValueError, KeyError):
        return None


def read_journal(path: str) -> Replay:
    """The sweep directory's journal, typed (empty when there is none)."""
    return replay(Journal(SweepLayout(path).journal).read())


def read_trial(path: str, run: str) -> TrialRecord | None:
    """One trial's memory.yaml; None when it is missing or unreadable."""
    return read_trial_row(path, run).record


def read_trial_row(path: str, run: str, params: dict[str, Any] | None = None,
                   status: TrialStatus | None = None) -> TrialRow:
    """One trial's row with its memory.yaml, or with why that could not be read: a file
    that is there but cut short or malformed is not the same as one never written."""
    row = TrialRow(run, params or {}, status)
    memory_yaml = SweepLayout(path).trial(run).memory_yaml
    try:
        with open(memory_yaml, encoding="utf-8") as handle:
            record = TrialRecord.from_dict(yaml.load(handle, Loader=_LOADER))
    except FileNotFoundError:
        return row
    except (OSError, yaml.YAMLError, TypeError, ValueError, KeyError, AttributeError) as exc:
        why = " ".join(str(exc).split())  # YAML's errors span lines: where, then what
        return dataclasses.replace(row, unreadable=f"{type(exc).__name__}: {why}"[:300])
    return dataclasses.replace(row, record=record)


def read_yaml(path: str) -> Any:
    """A record file's content, or None when it is missing or unreadable (never fatal:
    whoever reads a sweep dir reads one that may still be written, or cut short)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_LOADER)
    except (OSError, yaml.YAMLError):
        return None


def read_samples(path: str) -> Samples:
    """Parse memory.csv; empty when absent (a trial that never started its monitor)."""
    columns: dict[str, list[float]] = {"t": [], "rss_mb": [], "gpu_used_mb": [],
                                       "gpu_tree_mb": []}
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                values = {name: _number(row.get(name)) for name in columns}
                if not math.isfinite(values["t"]):
                    continue  # a torn last line
                for name, value in values.items():
                    columns[name].append(value)
    except OSError:
        return Samples()
    return Samples(**{name: tuple(values) for name, values in columns.items()})


def fit_features(config: Mapping[str, Any]) -> list[str]:
    """``isolation.fit.features`` of the sweep config, if it declares any."""
    isolation = config.get("isolation")
    fit = isolation.get("fit") if isinstance(isolation, dict) else None
    features = fit.get("features") if isinstance(fit, dict) else None
    if isinstance(features, str):
        features = [features]
    return [str(f) for f in features] if isinstance(features, list) else []


def _row(layout: SweepLayout, entry: dict[str, Any]) -> TrialRow:
    run = str(entry.get("run"))
    try:
        status = TrialStatus(entry.get("status"))
    except ValueError:
        status = None
    params = entry.get("params") if isinstance(entry.get("params"), dict) else {}
    return read_trial_row(layout.dir, run, params, status)


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
