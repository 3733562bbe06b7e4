"""The live table rendered into an 80-column log (not a terminal), as ``make sweep | tee``."""

from __future__ import annotations

import io
from dataclasses import replace
from types import SimpleNamespace

from rich.console import Console

from gpusweep.display import LiveDisplay
from gpusweep.records import CleanupRecord, HostRecord, MetricSummary, TrialRecord
from gpusweep.status import TrialStatus


def _record(run: str, status: TrialStatus, slot: int) -> TrialRecord:
    return TrialRecord(run=run, params={"batch_size": 128, "hidden": 128, "lr": 0.0008522},
                       status=status, exit_code=0, signal=None, started="", ended="",
                       duration_s=1.0, slot=slot,
                       metric=MetricSummary("val_loss", 0.2, 0.1063871, 3),
                       host=HostRecord(peak_rss_mb=1234.4),
                       cleanup=CleanupRecord(wait_s=12.25))


def _render(slots: int) -> list[str]:
    runner = SimpleNamespace(
        spec=SimpleNamespace(metric=SimpleNamespace(name="val_loss"),
                             engine={"parameters": {}}),
        slots=list(range(slots)), running=[],
        records=[_record("aaaaaaa1", TrialStatus.SKIPPED_NO_FIT, 1),
                 _record("bbbbbbb2", TrialStatus.STOPPED_EARLY, 0)])
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    console.print(LiveDisplay(console)._render(runner, with_tail=False))
    return out.getvalue().splitlines()


def test_slot_column_follows_the_number_and_every_cell_fits_80_columns():
    lines = _render(slots=2)
    assert all(len(line) <= 80 for line in lines)
    assert any(line.split()[:2] == ["#", "slot"] for line in lines if line.strip())
    rows = [line.split() for line in lines if "aaaaaaa1" in line or "bbbbbbb2" in line]
    assert [row[:3] for row in rows] == [["1", "1", "aaaaaaa1"], ["2", "0", "bbbbbbb2"]]
    assert rows[0][-4:] == ["skipped_no_fit", "0.1064", "-", "1234"]  # nothing cut off


def test_without_slots_no_slot_column_and_the_wait_fits():
    lines = _render(slots=1)
    assert not any("slot" in line for line in lines)
    rows = [line.split() for line in lines if "aaaaaaa1" in line]
    assert rows[0][-5:] == ["skipped_no_fit", "0.1064", "-", "1234", "12.25"]


def test_a_secret_named_param_is_masked_in_the_table_and_the_output_tail(tmp_path):
    log = tmp_path / "output.log"
    log.write_text("starting\nconnecting with sekrit-running-42\n")
    record = replace(_record("aaaaaaa1", TrialStatus.FINISHED, 0),
                     params={"api_token": "sekrit-ended-41", "lr": 0.001})
    running = SimpleNamespace(
        monitor=SimpleNamespace(peaks=SimpleNamespace(gpu_tree_mb=None, rss_mb=10.0)),
        events=SimpleNamespace(metric_values=[]), stopping=False, slot=0, run_id="ccccccc3",
        params={"auth.password": "sekrit-running-42", "lr": 0.01},
        paths=SimpleNamespace(output_log=str(log)))
    runner = SimpleNamespace(
        spec=SimpleNamespace(metric=SimpleNamespace(name="val_loss"),
                             engine={"parameters": {}}),
        slots=[0], running=[running], records=[record])
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    console.print(LiveDisplay(console)._render(runner))
    shown = out.getvalue()
    assert "sekrit" not in shown
    assert "api_token=***" in shown and "password=***" in shown and "lr=0.001" in shown
    assert "connecting with ***" in shown  # the trial printed it; the tail masks it
