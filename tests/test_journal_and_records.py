"""Crash-safe files: the journal survives a torn line; records are written atomically."""

import os

import yaml

from gpusweep.config import Metric
from gpusweep.records import CleanupRecord, MetricSummary, TrialRecord, best_trial
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
                       metric=MetricSummary("loss", best, best, 3),
                       cleanup=CleanupRecord(clean=True))  # a trial proven clean


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


def test_the_writer_and_the_reader_agree_and_yaml_keeps_the_strings(tmp_path):
    from gpusweep.records import SweepHeader, SweepState, TrialOrigin
    from gpusweep.records.journal import StartEntry
    from gpusweep.records.layout import SweepLayout
    from gpusweep.records.reader import load_sweep_dir, read_journal
    from gpusweep.records.writer import SweepWriter

    layout = SweepLayout(str(tmp_path / "s1"))
    writer = SweepWriter(layout)
    writer.prepare(False, {"method": "grid"}, str(tmp_path))
    writer.started(StartEntry(run="a", params={"x": "a"}, token="t", t=1.0,
                              origin=TrialOrigin.OOM_RETRY, retry_of="z"))
    writer.running("a", 123)
    writer.started(StartEntry(run="b", params={"x": "b"}, token="u", t=2.0))
    ended = record("a", TrialStatus.FINISHED, 0.5)
    writer.ended(ended, [{"loss": 0.5}])
    header = SweepHeader(id="s1", name=None, config={"method": "grid"}, method="grid",
                         metric={"name": "loss", "goal": "minimize"}, started="then",
                         state=SweepState.INTERRUPTED)
    writer.sweep_yaml(header, [ended], Metric("loss", "minimize"))

    with open(layout.sweep_yaml) as handle:
        raw = yaml.safe_load(handle)
    assert raw["sweep"]["state"] == "interrupted" and raw["trials"][0]["status"] == "finished"
    with open(layout.journal) as handle:
        assert '"origin": "oom-retry"' in handle.read()
    data = load_sweep_dir(layout.dir)
    assert data.header == header and data.records == [ended] and data.missing == []
    journal = read_journal(layout.dir)
    assert [s.origin for s in journal.starts] == [TrialOrigin.OOM_RETRY, None]
    assert [s.run for s in journal.unended] == ["b"] and journal.retried == {"z"}
    assert journal.ends[0].record == ended and journal.ends[0].history == [{"loss": 0.5}]


def test_the_check_lists_a_started_trial_that_sweep_yaml_lacks(tmp_path):
    from gpusweep.records import SweepHeader
    from gpusweep.records.journal import StartEntry
    from gpusweep.records.layout import SweepLayout
    from gpusweep.records.writer import SweepWriter
    from gpusweep.report.check import load, problems

    writer = SweepWriter(SweepLayout(str(tmp_path)))
    writer.started(StartEntry(run="a", token="t"))
    writer.started(StartEntry(run="b", token="u"))
    ended = record("a", TrialStatus.FINISHED, 0.5)
    writer.ended(ended, [])
    writer.sweep_yaml(SweepHeader(id="s", name=None, config={}, method="grid", metric=None,
                                  started=""), [ended], None)
    sweep, trials, journal = load(str(tmp_path))
    assert [(t.run, t.record is not None) for t in trials] == [("a", True), ("b", False)]
    assert problems(sweep, trials, journal, set()) == [
        "sweep state is 'running', not 'finished'", "b: no memory.yaml"]


def test_the_check_says_unreadable_for_a_malformed_memory_yaml_and_missing_for_none(tmp_path,
                                                                                    capsys):
    from gpusweep.records import SweepHeader
    from gpusweep.records.layout import SweepLayout
    from gpusweep.records.reader import load_sweep_dir
    from gpusweep.records.writer import SweepWriter
    from gpusweep.report import check

    layout = SweepLayout(str(tmp_path))
    writer = SweepWriter(layout)
    trials = [record("a", TrialStatus.FINISHED, 0.5), record("b", TrialStatus.FINISHED, 0.7)]
    for ended in trials:
        writer.ended(ended, [])
    writer.sweep_yaml(SweepHeader(id="s", name=None, config={}, method="grid", metric=None,
                                  started=""), trials, None)
    with open(layout.trial("a").memory_yaml, "w") as handle:
        handle.write("run: a\nstatus: [unclosed\n")
    os.remove(layout.trial("b").memory_yaml)
    rows = load_sweep_dir(layout.dir, samples=False).rows
    assert rows[0].unreadable.startswith("ParserError") and rows[1].unreadable is None
    assert check.main([layout.dir]) == 1
    out = capsys.readouterr().out
    assert "FAIL: a: memory.yaml unreadable: ParserError" in out
    assert "FAIL: a: no memory.yaml" not in out and "FAIL: b: no memory.yaml" in out
