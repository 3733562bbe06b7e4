"""Crash-safe files: the journal survives a torn line; records are written atomically."""

import os

import yaml

from gpusweep.config import Metric
from gpusweep.records import MetricSummary, TrialRecord, best_trial
from gpusweep.records.atomic import write_yaml
from gpusweep.records.journal import Journal
from gpusweep.records.writer import totals
from gpusweep.status import TrialStatus


def test_torn_last_line_is_ignored_and_the_next_append_starts_clean(tmp_path):
    journal = Journal(str(tmp_path / "journal.jsonl"))
    journal.append({"event": "start", "run": "a"})
    with open(journal.path, "a") as handle:
        handle.write('{"event": "end", "run": "a", "rec')  # SIGKILL mid-write
    assert [e["run"] for e in journal.read()] == ["a"]
    journal.append({"event": "start", "run": "b"})
    assert [e["run"] for e in journal.read()] == ["a", "b"]


def test_garbage_lines_are_skipped(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'not json\n\x00\x00\n[1, 2]\n{"event": "start", "run": "x"}\n')
    assert Journal(str(path)).read() == [{"event": "start", "run": "x"}]


def test_atomic_write_leaves_no_temp_file_and_is_readable(tmp_path):
    path = tmp_path / "memory.yaml"
    write_yaml(str(path), {"run": "abc", "params": {"lr": 0.000123456789}})
    assert yaml.safe_load(path.read_text())["params"]["lr"] == 0.000123456789
    assert os.listdir(tmp_path) == ["memory.yaml"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)


def record(run, status, best):
    return TrialRecord(run=run, params={"x": run}, status=status, exit_code=0, signal=None,
                       started="", ended="", duration_s=1.0,
                       metric=MetricSummary("loss", best, best, 3))


def test_totals_and_best_trial():
    records = [record("a", TrialStatus.FINISHED, 0.5), record("b", TrialStatus.FAILED, None),
               record("c", TrialStatus.STOPPED_EARLY, 0.2), record("d", TrialStatus.FINISHED,
                                                                   float("nan"))]
    result = totals(records, Metric("loss", "minimize"))
    assert result["trials"] == 4 and result["finished"] == 2 and result["failed"] == 1
    assert result["stopped_early"] == 1 and result["timeout"] == 0
    assert result["best"]["run"] == "c"
    assert best_trial(records, Metric("loss", "maximize")).run == "a"


def test_record_round_trips_through_its_dict():
    original = record("a", TrialStatus.TIMEOUT, 1.5)
    assert TrialRecord.from_dict(original.to_dict()) == original
