"""A sweep directory as the report reads it: sweep.yaml, and each trial's memory.yaml and
memory.csv.

Reading only: it works on a finished, interrupted or still running sweep. A trial whose
memory.yaml is missing or unreadable is listed, not fatal; a directory that is not a sweep is
a :class:`BadInput` naming it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from gpusweep.config import Metric
from gpusweep.errors import BadInput
from gpusweep.records import TrialRecord, best_trial


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
class SweepData:
    """Everything the report draws, read from one sweep directory."""

    dir: str
    header: dict[str, Any]
    records: list[TrialRecord]
    samples: dict[str, Samples]
    config: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # rows whose memory.yaml is gone

    @property
    def has_gpu(self) -> bool:
        return any(r.gpu.peak_used_mb is not None for r in self.records) or \
            any(s.has_gpu for s in self.samples.values())

    @property
    def metric(self) -> dict[str, Any] | None:
        metric = self.header.get("metric")
        return metric if isinstance(metric, dict) and metric.get("name") else None

    def best(self) -> TrialRecord | None:
        """The trial with the best value of the sweep's metric (None without a metric)."""
        metric = self.metric
        if metric is None:
            return None
        goal = "maximize" if metric.get("goal") == "maximize" else "minimize"
        return best_trial(self.records, Metric(str(metric["name"]), goal))


def load_sweep_dir(path: str) -> SweepData:
    """Read a sweep directory; BadInput naming the directory when it is not one."""
    sweep_yaml = os.path.join(path, "sweep.yaml")
    if not os.path.isdir(path):
        problem = "not a directory" if os.path.exists(path) else "no such directory"
        raise BadInput(path, "report", problem)
    if not os.path.isfile(sweep_yaml):
        raise BadInput(path, "report", "not a sweep directory (no sweep.yaml)")
    try:
        with open(sweep_yaml, encoding="utf-8") as handle:
            sweep = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(sweep_yaml, "", f"unreadable: {exc}") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("sweep"), dict):
        raise BadInput(sweep_yaml, "sweep", "missing: not a gpusweep sweep.yaml")
    records, missing, samples = [], [], {}
    for row in sweep.get("trials") or []:
        run = str(row.get("run"))
        record = _read_record(os.path.join(path, run, "memory.yaml"))
        if record is None:
            missing.append(run)
            continue
        records.append(record)
        samples[run] = read_samples(os.path.join(path, run, "memory.csv"))
    header = sweep["sweep"]
    config = header.get("config") if isinstance(header.get("config"), dict) else {}
    return SweepData(path, header, records, samples, config, missing)


def read_yaml(path: str) -> Any:
    """A record file's content, or None when it is missing or unreadable (never fatal:
    whoever reads a sweep dir reads one that may still be written, or cut short)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None


def _read_record(path: str) -> TrialRecord | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return TrialRecord.from_dict(yaml.safe_load(handle))
    except (OSError, yaml.YAMLError, TypeError, ValueError, KeyError, AttributeError):
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


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def fit_features(config: Mapping[str, Any]) -> list[str]:
    """``isolation.fit.features`` of the sweep config, if it declares any."""
    isolation = config.get("isolation")
    fit = isolation.get("fit") if isinstance(isolation, dict) else None
    features = fit.get("features") if isinstance(fit, dict) else None
    if isinstance(features, str):
        features = [features]
    return [str(f) for f in features] if isinstance(features, list) else []


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted names: ``{model: {hidden: 8}}`` -> ``{model.hidden: 8}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def varied_params(flat: Sequence[Mapping[str, Any]]) -> list[str]:
    """Param names whose value differs between trials, in first-seen order."""
    names: list[str] = []
    for params in flat:
        names += [k for k in params if k not in names]
    return [k for k in names if len({repr(p.get(k)) for p in flat}) > 1]
