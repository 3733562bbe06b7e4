"""The sweep report: ``gpusweep report <log-dir>/<sweep-id>``.

Reads a sweep directory (:mod:`gpusweep.records.reader`), draws the pictures
(:mod:`gpusweep.report.plots`) under ``<sweep-dir>/report/`` and writes ``report.md``
that shows them beside the summary table and the memory model (:mod:`gpusweep.memfit`).
It only reads the records, so it works on a finished, interrupted or still running sweep,
with or without a GPU.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpusweep import memfit
from gpusweep.errors import EXIT_BAD_INPUT, EXIT_OK, BadInput
from gpusweep.params import flatten, varied_params
from gpusweep.records import TrialRecord
from gpusweep.records.atomic import write_text
from gpusweep.records.layout import MEMORY_YAML, REPORT_MD, SweepLayout
from gpusweep.records.reader import SweepData, fit_features, load_sweep_dir
from gpusweep.status import TrialStatus

PLOTS = ("timeline", "concurrency", "peaks", "metric", "fit")


@dataclass(frozen=True)
class Report:
    dir: str
    images: dict[str, str]  # plot key -> file name under report/
    markdown: str


def build(path: str, features: Sequence[str] | None = None) -> Report:
    """Draw every plot and write report.md; the report's files."""
    from gpusweep.report import plots  # matplotlib only here, never in the sweep itself
    from gpusweep.report.concurrency import concurrency

    data = load_sweep_dir(path, command="report")
    out = SweepLayout(path).report_dir
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise BadInput(out, "report", f"cannot write: {exc.strerror or exc}") from None
    if features:
        _check_features(path, features, data.records)
    fit = memfit.memory_fit(data.records, list(features or fit_features(data.config)))
    images: dict[str, str] = {}
    drawers = (("timeline", plots.memory_timeline), ("concurrency", concurrency),
               ("peaks", plots.peak_bars),
               ("metric", plots.metric_vs_params))
    for key, draw in drawers:
        if data.records and draw(data, os.path.join(out, f"{key}.png")):
            images[key] = f"{key}.png"
    if fit.model is not None:
        plots.predicted_vs_actual(fit, os.path.join(out, "fit.png"))
        images["fit"] = "fit.png"
    for key in PLOTS:  # a picture from an earlier report that this one has no data for
        if key not in images and os.path.exists(os.path.join(out, f"{key}.png")):
            os.unlink(os.path.join(out, f"{key}.png"))
    markdown = render_markdown(data, fit, images)
    write_text(os.path.join(out, REPORT_MD), markdown)
    return Report(out, images, markdown)


def _check_features(path: str, features: Sequence[str], records: Sequence[Any]) -> None:
    """``--features`` must name the trials' params: a typo would give an empty model."""
    names = sorted({name for record in records for name in flatten(record.params)})
    for feature in features:
        if names and feature not in names:
            raise BadInput(path, "--features", f"{feature!r} is not a param of this sweep's "
                           f"trials (params: {', '.join(names)})")


def render_markdown(data: SweepData, fit: memfit.Fit, images: Mapping[str, str]) -> str:
    """report.md: the sweep in a few lines, the pictures, the model, one row per trial."""
    header = data.header
    lines = [f"# Sweep {header.name or header.id} ({header.id})", ""]
    counts: dict[str, int] = {}
    for record in data.records:
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in counts.items())
    metric = data.metric
    lines.append(f"State **{header.state.value}**, method {header.method}, "
                 + (f"metric `{metric['name']}` ({metric.get('goal')}), " if metric else "")
                 + f"{len(data.records)} trials ({tally or 'none'}). "
                 f"Started {header.started}, ended {header.ended or '-'}. "
                 + ("GPU: " + _gpu_name(data.records) if data.has_gpu else
                    "No GPU: memory is the host RSS of each trial's process tree."))
    best = data.best()
    if best is not None:
        lines += ["", f"Best: `{best.run}` {metric['name']} = {_fmt(best.metric.best)} "
                  f"with {_params_text(flatten(best.params))}."]
    if data.missing:
        lines += ["", f"Left out (memory.yaml missing or unreadable): {', '.join(data.missing)}."]
    for key, title, caption in sections(data.has_gpu):
        if key in images:
            lines += ["", f"## {title}", "", f"![{title}]({images[key]})", "", caption]
        if key == "fit":
            lines += ([""] if key in images else ["", f"## {title}", ""]) + _fit_lines(fit)
    lines += ["", "## Trials", ""] + trial_table(data, fit)
    return "\n".join(lines) + "\n"


def sections(has_gpu: bool) -> list[tuple[str, str, str]]:
    """(image key, title, caption) of each picture, in the order report.md shows them."""
    memory = "GPU used (whole device, and the trial's own processes dashed) and host RSS" \
        if has_gpu else "Host RSS (summed over each trial's process tree)"
    wait = " and shaded spans the wait for a clean GPU after each trial" if has_gpu else ""
    peaks = ("GPU: the trial's own processes as NVML sees them; host: summed RSS of its "
             "process tree." if has_gpu else "Summed RSS of each trial's process tree.")
    return [
        ("timeline", "Memory over the sweep",
         f"{memory} over wall time since the first trial started, coloured by the trial's "
         f"status; dotted lines mark trial starts (numbered as in the table){wait}."),
        ("concurrency", "Trials at once",
         "How many trials were running (process started, not exited) over wall time: with "
         "--slots auto, the count it reached on this machine; each trial's record gives the "
         "most that ran beside it (beside)."),
        ("peaks", "Peak memory per trial", f"{peaks} Coloured by status."),
        ("metric", "Metric vs params",
         "The best value each trial reached, one panel per param that varies (categories for "
         "non-numeric params); the star is the best trial. Trials without a value are left "
         "out."),
        ("fit", "Predicted vs actual peak memory",
         "Hollow: the model fit on all trials. Filled: what a model fit only on the trials "
         "that had ended before each one predicted at its launch (the runner's view). "
         "Shaded: within 20%."),
    ]


def _fit_lines(fit: memfit.Fit) -> list[str]:
    if fit.model is None:
        return [f"Skipped: {fit.note}."]
    lines = [f"`{fit.model.describe()}`", ""]
    for label, predicted in (("fit on all trials", fit.fitted),
                             ("before launch", fit.before)):
        error = memfit.median_abs_error(predicted, fit.observed)
        if error is not None:
            lines.append(f"- median |error|, {label}: {error:.1%}")
    return lines


def trial_table(data: SweepData, fit: memfit.Fit) -> list[str]:
    """The summary table: one row per trial, only the params that vary across trials."""
    flat = [flatten(r.params) for r in data.records]
    varied = varied_params(flat)
    fixed = {k: v for k, v in (flat[0] if flat else {}).items() if k not in varied}
    predicted = {o.run: p for o, p in zip(fit.observed, fit.before, strict=True)} \
        if fit.model is not None else {}
    metric = (data.metric or {}).get("name", "metric")
    gpu = data.has_gpu
    head = ["#", "run", "status", *varied, metric, "duration (s)",
            *(["GPU peak (MB)"] if gpu else []), "host peak (MB)", *(["wait (s)"] if gpu else []),
            *(["energy (J)", "GPU util mean / peak (%)"] if gpu else [])]
    if fit.model is not None:
        head += ["predicted at launch (MB)", "error"]
    head.append("note")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (record, params) in enumerate(zip(data.records, flat, strict=True), start=1):
        cells = [str(i), f"[{record.run}]({_rel(record.run)})", record.status.value]
        cells += [_fmt(params.get(k)) for k in varied]
        cells += [_fmt(record.metric.best), _fmt(record.duration_s, 1)]
        cells += [_fmt(record.gpu.peak_tree_mb, 0)] if gpu else []
        cells += [_fmt(record.host.peak_rss_mb, 0)]
        cells += [_fmt(record.cleanup.wait_s, 1)] if gpu else []
        if gpu:
            cells += [_fmt(record.gpu.energy_j, 0), f"{_fmt(record.gpu.util_mean_pct, 0)} / "
                      f"{_fmt(record.gpu.util_peak_pct, 0)}"]
        if fit.model is not None:
            guess = predicted.get(record.run)
            actual = memfit.peak_of(record, fit.model.source)
            error = memfit.relative_error(guess, actual)
            cells += [_fmt(guess, 0), _percent(error)]
        cells.append(_note(record))
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if fixed:
        rows += ["", f"Same in every trial: {_params_text(fixed)}."]
    return rows


def _percent(error: float | None) -> str:
    if error is None:
        return "-"
    return "0%" if round(error * 100) == 0 else f"{error:+.0%}"


def _rel(run: str) -> str:
    return f"../{run}/{MEMORY_YAML}"


def _note(record: TrialRecord) -> str:
    """Why a trial failed (its signal or last error line), and a GPU that stayed dirty."""
    notes = []
    if record.status is TrialStatus.FAILED:
        last = [line.strip() for line in (record.error or "").splitlines() if line.strip()]
        notes.append(record.signal or (last[-1][:80] if last else f"exit {record.exit_code}"))
    if record.cleanup.clean is False:
        notes.append(f"GPU not clean ({_fmt(record.gpu.residual_mb, 0)} MB left)")
    elif record.cleanup.clean is None:
        notes.append("GPU clean unknown" + (f": {record.cleanup.reason}"
                                            if record.cleanup.reason else ""))
    return "; ".join(notes)


def _gpu_name(records: Sequence[TrialRecord]) -> str:
    names = sorted({r.gpu.device for r in records if r.gpu.peak_used_mb is not None})
    return ", ".join(names) or "yes"


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    if digits is not None:
        return f"{value:,.{digits}f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def parse_args(argv: Sequence[str], prog: str = "gpusweep report") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Draw a sweep's memory and metrics as PNGs and report.md under "
        "<sweep-dir>/report/.")
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="<log-dir>/<sweep-id>")
    parser.add_argument("--features", metavar="A,B",
                        help="params the memory model fits peak memory on (dotted names); "
                        "default: the sweep's isolation.fit.features")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str], prog: str = "gpusweep report") -> int:
    """``report SWEEP_DIR [--features a,b]``: 0 when written, 2 when the dir is not a sweep."""
    args = parse_args(argv, prog)
    features = [f.strip() for f in args.features.split(",") if f.strip()] \
        if args.features else None
    try:
        report = build(args.sweep_dir, features)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"report: {os.path.join(report.dir, REPORT_MD)} "
          f"({len(report.images)} plots: {', '.join(report.images.values())})")
    return EXIT_OK
