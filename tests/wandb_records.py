"""Read back what wandb wrote offline, so tests assert on the run itself, not on a side file.

wandb has no public reader for ``run-<id>.wandb``. The file is a LevelDB-style log (the
format of wandb's former ``datastore``): a 7-byte header (``:W&B``, magic, version), then
32 KiB blocks of chunks, each with a 7-byte header (crc32c, length, type: full, first,
middle, last) around a serialized ``wandb.proto.wandb_internal_pb2.Record``. The protobuf
classes are wandb's own; only the framing is read here (checksums are not verified).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


@dataclass
class OfflineRun:
    """The parts of an offline run the tests look at."""

    run_id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    sweep_id: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    preempting: bool = False  # the run was marked preempting (run.mark_preempting())
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    args: list[str] = field(default_factory=list)


def read_run(run_dir: Path) -> OfflineRun:
    """Parse ``<run_dir>/run-<id>.wandb`` into an :class:`OfflineRun`."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = Path(run_dir).glob("run-*.wandb")
    run = OfflineRun()
    for raw in raw_records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.group = r.run_id, r.project, r.run_group
            run.job_type, run.sweep_id, run.tags = r.job_type, r.sweep_id, list(r.tags)
            _update(run.config, r.config.update)
        elif kind == "config":
            _update(run.config, record.config.update)
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            _update(run.summary, record.summary.update)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
        elif kind == "preempting":
            run.preempting = True
        elif kind == "artifact":
            a = record.artifact
            run.artifacts.append({"name": a.name, "type": a.type,
                                  "files": [e.path for e in a.manifest.contents]})
        elif kind == "environment":
            run.args.extend(record.environment.args)
    run.config.pop("_wandb", None)
    return run


def offline_runs(sweep_dir: Path) -> dict[str, Path]:
    """Run id -> offline run directory, for every run wandb wrote under a sweep dir."""
    runs = {}
    for run_dir in (Path(sweep_dir) / "wandb").glob("offline-run-*"):
        runs[run_dir.name.split("-", 3)[3]] = run_dir  # offline-run-<date>_<time>-<id>
    return runs


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _items(items: Any) -> dict[str, Any]:
    return {_key(i): json.loads(i.value_json) for i in items}


def _update(target: dict[str, Any], items: Any) -> None:
    for item in items:
        if item.nested_key and len(item.nested_key) > 1:
            continue  # wandb's own bookkeeping (_wandb.runtime)
        target[_key(item)] = json.loads(item.value_json)
