"""The sweep report: on a real sweep through tools/sweep.py (host only, no GPU here) and on a
synthetic sweep directory with GPU numbers, so both drawing paths run."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, program

from gpusweep import cli, memfit
from gpusweep.records.reader import load_sweep_dir
from gpusweep.report import build as report

PLOTS = ("timeline.png", "concurrency.png", "peaks.png", "metric.png", "fit.png")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and proof that it is a PNG)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


def assert_sensible_pngs(report_dir: Path, names) -> None:
    for name in names:
        path = report_dir / name
        width, height = png_size(path)
        assert 400 <= width <= 2000 and 300 <= height <= 1600, (name, width, height)
        assert 5_000 < path.stat().st_size < 400_000, name


def table_rows(markdown: str) -> list[str]:
    lines = markdown.split("## Trials", 1)[1].splitlines()
    return [line for line in lines if line.startswith("| ") and not line.startswith("| #")]


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "sweep.py"), "report", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


# -- a real sweep, no GPU ----------------------------------------------------------------
@pytest.mark.slow
def test_report_of_a_real_sweep_with_a_failed_and_a_stopped_trial(write_sweep, run_sweep):
    config = {
        "name": "report-test",
        "program": program("ballast.py"),
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"batch_size": {"values": [8, 64]}, "hidden": {"values": [64, 256]},
                       "epochs": {"value": 3}, "sleep": {"value": 0.2},
                       "limit_mb": {"value": 100}},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
        "isolation": {"stop": {"grace_s": 1}},
    }
    result = run_sweep(write_sweep(config))
    assert result.returncode == 0, result.proc.stderr
    statuses = [row["status"] for row in result.sweep["trials"]]
    assert "failed" in statuses and "stopped_early" in statuses, statuses

    proc = run_report(str(result.sweep_dir), "--features", "batch_size,hidden")
    assert proc.returncode == 0, proc.stderr
    out = result.sweep_dir / "report"
    assert "report.md" in proc.stdout
    assert_sensible_pngs(out, PLOTS)
    markdown = (out / "report.md").read_text()
    for name in PLOTS:
        assert f"]({name})" in markdown
    assert len(table_rows(markdown)) == len(statuses) == 4
    assert "No GPU" in markdown and "GPU peak" not in markdown
    assert "MemoryError" in markdown  # the failed trial says why
    assert "peak host MB ~" in markdown
    typo = run_report(str(result.sweep_dir), "--features", "batch_sise")
    assert typo.returncode == 2 and "'batch_sise' is not a param" in typo.stderr


def test_bad_sweep_dir_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "nope", tmp_path, tmp_path / "file"):
        assert cli.main(["report", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {bad}: report: ")
    assert not (tmp_path / "report").exists()  # nothing written into a non-sweep


# -- a synthetic sweep with a GPU --------------------------------------------------------
def gpu_law(batch: int, hidden: int) -> float:
    return 300.0 + 0.9 * batch ** 0.9 * hidden ** 0.6


TRIALS = [  # run, batch, hidden, status, loss, wait_s
    ("a1", 32, 128, "finished", 0.31, 0.8),
    ("b2", 64, 128, "finished", 0.27, 1.5),
    ("c3", 128, 256, "stopped_early", 0.40, 2.5),
    ("d4", 256, 512, "failed", None, 4.0),  # an OOM: no metric, its peak is a lower bound
    ("e5", 64, 512, "timeout", 0.35, 1.0),
    ("f6", 16, 64, "finished", 0.29, 0.5),
]
BASELINE = 450.0


def write_gpu_sweep(root: Path, fit_features: list[str] | None = None, slots: int = 1) -> Path:
    """A sweep directory as a GPU sweep leaves it: YAML records and memory.csv samples."""
    sweep_dir = root / "gpusweep-synth"
    sweep_dir.mkdir()
    isolation = {"fit": {"features": fit_features}} if fit_features else {}
    config = {"name": "synthetic-gpu", "method": "random", "isolation": isolation,
              "metric": {"name": "val_loss", "goal": "minimize"}}
    t = 1_800_000_000.0
    rows = []
    for i, (run, batch, hidden, status, loss, wait_s) in enumerate(TRIALS):
        duration = 6.0 if status != "failed" else 1.5
        peak = gpu_law(batch, hidden)
        params = {"train": {"batch_size": batch, "lr": 10 ** -(batch % 3 + 2)},
                  "model": {"hidden": hidden, "act": "gelu" if hidden > 128 else "relu"}}
        timeline = {"start": t, "exit": t + duration, "wait_start": t + duration + 0.3,
                    "wait_end": t + duration + 0.3 + wait_s}
        record = {
            "run": run, "params": params, "status": status,
            "exit_code": 0 if status == "finished" else 1, "signal": None,
            "started": "2027-01-15T10:00:00+00:00", "ended": "2027-01-15T10:00:07+00:00",
            "duration_s": duration, "slot": i % slots,
            "metric": {"name": "val_loss", "last": loss, "best": loss,
                       "reports": 0 if loss is None else 5},
            "gpu": {"device": "NVIDIA H100 80GB HBM3", "index": i % slots,
                    "baseline_mb": BASELINE,
                    "peak_used_mb": BASELINE + peak, "peak_tree_mb": peak,
                    "torch_peak_allocated_mb": peak - 320, "torch_peak_reserved_mb": peak - 280,
                    "residual_mb": 0.0},
            "host": {"peak_rss_mb": 900.0 + batch}, "command": ["python", "train.py"],
            "cleanup": {"processes_killed": 0, "escapees_killed": 0, "wait_s": wait_s,
                        "clean": True},
            "error": "torch.OutOfMemoryError: CUDA out of memory" if status == "failed" else None,
            "timeline": timeline,
        }
        trial_dir = sweep_dir / run
        trial_dir.mkdir()
        (trial_dir / "memory.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
        (trial_dir / "memory.csv").write_text(samples_csv(duration, peak, batch))
        rows.append({"run": run, "params": params, "status": status, "metric": loss})
        t = timeline["wait_end"] + 0.4 if (i + 1) % slots == 0 else t  # slots start together
    sweep = {"sweep": {"id": "gpusweep-synth", "name": "synthetic-gpu", "config": config,
                       "method": "random", "metric": config["metric"],
                       "started": "2027-01-15T10:00:00+00:00",
                       "ended": "2027-01-15T10:01:00+00:00", "state": "finished"},
             "trials": rows, "totals": {"trials": len(rows)}}
    (sweep_dir / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    return sweep_dir


def samples_csv(duration: float, peak: float, batch: int) -> str:
    """A ramp to the peak in the first fifth, a plateau, the tree gone after the exit."""
    lines = ["t,rss_mb,gpu_used_mb,gpu_tree_mb"]
    steps = int(duration * 10) + 3
    for i in range(steps):
        t = i * 0.1
        if t <= duration:
            tree = peak * min(1.0, 0.25 + t / (0.2 * duration)) * (1 - 0.03 * math.sin(3 * t))
            rss = 900.0 + batch - 40.0 * math.exp(-t)
        else:
            tree, rss = 0.0, 0.0
        lines.append(f"{t:.3f},{rss:.1f},{BASELINE + tree:.1f},{tree:.1f}")
    return "\n".join(lines) + "\n"


def test_report_of_a_gpu_sweep_draws_gpu_and_host(tmp_path):
    sweep_dir = write_gpu_sweep(tmp_path, ["train.batch_size", "model.hidden"])
    data = load_sweep_dir(str(sweep_dir))
    assert data.has_gpu and len(data.records) == 6
    built = report.build(str(sweep_dir))
    out = sweep_dir / "report"
    assert sorted(built.images.values()) == sorted(PLOTS)
    assert_sensible_pngs(out, PLOTS)
    markdown = (out / "report.md").read_text()
    assert len(table_rows(markdown)) == 6
    assert "GPU peak (MB)" in markdown and "wait (s)" in markdown
    assert "NVIDIA H100" in markdown
    assert "peak gpu MB ~" in markdown and "train.batch_size^" in markdown
    assert "CUDA out of memory" in markdown
    assert "Same in every trial" not in markdown  # every param varies here
    rebuilt = report.build(str(sweep_dir), ["model.act"])  # not a number: no fit any more
    assert "fit" not in rebuilt.images and not (out / "fit.png").exists()


def test_without_features_the_fit_is_skipped_with_a_note(tmp_path):
    data = load_sweep_dir(str(write_gpu_sweep(tmp_path)))
    fit = memfit.memory_fit(data.records, report.fit_features(data.config))
    assert fit.model is None
    markdown = report.render_markdown(data, fit, {"timeline": "timeline.png"})
    assert "Skipped: no features to fit" in markdown and "](fit.png)" not in markdown
    assert "predicted at launch" not in markdown and len(table_rows(markdown)) == 6


def test_with_too_few_usable_trials_the_fit_is_skipped(tmp_path):
    data = load_sweep_dir(str(write_gpu_sweep(tmp_path)))
    fit = memfit.memory_fit(data.records, ["train.batch_size", "no.such.param"])
    assert fit.model is None and "too few trials" in fit.note
    assert "Skipped: too few trials" in report.render_markdown(data, fit, {})


def test_report_of_a_sweep_with_no_trials_yet(tmp_path):
    sweep = {"sweep": {"id": "s0", "name": None, "config": {}, "method": "grid",
                       "metric": None, "started": "now", "ended": None, "state": "running"},
             "trials": []}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    built = report.build(str(tmp_path))
    assert built.images == {} and "0 trials" in built.markdown
    assert table_rows(built.markdown) == []


def test_memory_fit_uses_gpu_peaks_and_predicts_before_launch():
    from gpusweep.records import TrialRecord

    records = [TrialRecord.from_dict({
        "run": run, "params": {"b": b, "h": h}, "status": status, "exit_code": 0,
        "signal": None, "started": "", "ended": "", "duration_s": 1.0,
        "gpu": {"peak_tree_mb": gpu_law(b, h)}, "host": {"peak_rss_mb": 100.0}})
        for run, b, h, status, _, _ in TRIALS]
    fit = memfit.memory_fit(records, ["b", "h"])
    assert fit.model.source == "gpu" and fit.model.n == 5  # the failed trial is left out
    assert fit.before[:2] == (None, None) and all(p is not None for p in fit.before[2:])
    assert memfit.median_abs_error(fit.fitted, fit.observed) < 0.1


def test_a_sweep_with_two_slots_on_two_gpus_draws(tmp_path):
    sweep_dir = write_gpu_sweep(tmp_path, ["train.batch_size", "model.hidden"], slots=2)
    data = load_sweep_dir(str(sweep_dir))
    assert {r.slot for r in data.records} == {0, 1}
    built = report.build(str(sweep_dir))
    assert_sensible_pngs(sweep_dir / "report", PLOTS)
    assert "## Trials at once" in built.markdown and built.images["concurrency"]


def test_every_status_has_its_own_colour():
    from gpusweep.report.plots import OTHER_COLOR, STATUS_COLORS
    from gpusweep.status import TrialStatus

    assert set(STATUS_COLORS) == {s.value for s in TrialStatus}
    colours = list(STATUS_COLORS.values())
    assert len(set(colours)) == len(colours) and OTHER_COLOR not in colours


def test_trial_numbers_that_start_together_are_stacked_not_dropped():
    from gpusweep.report.plots import label_levels

    # two slots: trials 1 and 2 start together, so do 3 and 4; 5 is alone
    assert label_levels([0.0, 0.1, 5.0, 5.05, 10.0], gap=1.0) == [0, 1, 0, 1, 0]
    assert label_levels([0.0, 0.0, 0.0, 0.0], gap=1.0, levels=3) == [0, 1, 2, None]


def test_log_ticks_thin_out_over_wide_ranges():
    from gpusweep.report.plots import log_subs

    assert log_subs(0.0003, 0.003) == (1.0, 2.0, 5.0)  # a decade: 1, 2, 5
    assert log_subs(10, 500) == (1.0, 3.0)
    assert log_subs(2e-5, 0.1) == (1.0,)  # 3.7 decades: 0.0005 and 0.001 would collide
