"""The report's pictures, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each function takes what :mod:`gpusweep.report.build` read from the sweep directory and writes one
PNG; it returns False when there is nothing to draw. Only the report imports this module, so
the sweep itself never pays for matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from gpusweep import memfit
from gpusweep.params import flatten, varied_params
from gpusweep.status import TrialStatus

if TYPE_CHECKING:
    from gpusweep.memfit import Fit
    from gpusweep.records import TrialRecord
    from gpusweep.records.reader import SweepData

DPI = 110
_COLORS = {  # one distinct colour per status (a test checks that none is missing)
    TrialStatus.FINISHED: "#2a9d4b",
    TrialStatus.STOPPED_EARLY: "#3b75c4",
    TrialStatus.TIMEOUT: "#e08a00",
    TrialStatus.FAILED: "#d0312d",
    TrialStatus.KILLED: "#8e5bb5",
    TrialStatus.OOM: "#8c564b",
    TrialStatus.HOST_OOM: "#e377c2",
    TrialStatus.STALLED: "#b5b01e",
    TrialStatus.SKIPPED_NO_FIT: "#17becf",
    TrialStatus.STOPPED: "#1f3f7a",
    TrialStatus.PREEMPTED: "#bcbd22",
}
STATUS_COLORS = {status.value: _COLORS[status] for status in TrialStatus}
OTHER_COLOR = "#7f7f7f"  # a status written by a newer gpusweep
SLOT_MARKERS = "os^Dvp*h"  # with several slots, each trial's peak is marked by its slot's
WAIT_COLOR = "#f2c14e"


def status_color(status: str) -> str:
    return STATUS_COLORS.get(status, OTHER_COLOR)


def _status_legend(statuses: Sequence[str], kind: str = "line") -> list[Any]:
    handles = []
    order = list(STATUS_COLORS)
    for status in sorted(set(statuses), key=lambda s: (s not in order, order.index(s)
                                                       if s in order else 0, s)):
        color = status_color(status)
        label = status.replace("_", " ")
        handles.append(Line2D([], [], color=color, lw=2, label=label) if kind == "line"
                       else Patch(facecolor=color, label=label))
    return handles


def _save(fig: Figure, path: str) -> None:
    fig.savefig(path, dpi=DPI)


def _time_scale(span_s: float) -> tuple[float, str]:
    """Seconds for short sweeps, minutes or hours for long ones."""
    if span_s > 3 * 3600:
        return 3600.0, "h"
    if span_s > 15 * 60:
        return 60.0, "min"
    return 1.0, "s"


# -- (a) the memory timeline -------------------------------------------------------------
def memory_timeline(data: SweepData, path: str) -> bool:
    """GPU used (when there is a GPU) and host RSS over the sweep's wall time."""
    trials = [(i, r) for i, r in enumerate(data.records, start=1) if _start(r) is not None]
    if not trials:
        return False
    t0 = min(_start(r) for _, r in trials)
    ends = [_end(r, data) for _, r in trials]
    scale, unit = _time_scale(max(ends) - t0)
    rows = ["gpu", "host"] if data.has_gpu else ["host"]
    slots = sorted({r.slot for _, r in trials})
    marker = {slot: SLOT_MARKERS[i % len(SLOT_MARKERS)] for i, slot in enumerate(slots)} \
        if len(slots) > 1 else {}
    fig = Figure(figsize=(11, 2.0 + 2.4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows, strict=True):
        for _, record in trials:
            _draw_trial(ax, row, record, data, t0, scale, marker.get(record.slot))
        ax.set_ylabel("GPU used (MB)" if row == "gpu" else "host RSS (MB)")
        ax.set_ylim(bottom=0)
        ax.margins(x=0.01)
        ax.grid(axis="y", alpha=0.3)
        if row == "gpu":
            _draw_baseline(ax, data.records)
    starts = [(record.timeline.start - t0) / scale for _, record in trials]
    levels = label_levels(starts, 0.025 * (max(ends) - t0) / scale)
    for (index, record), level in zip(trials, levels, strict=True):
        _draw_phases(axes, index, record, t0, scale, level, data.has_gpu)
    axes[-1].set_xlabel(f"wall time since the first trial started ({unit})")
    handles = _status_legend([r.status.value for _, r in trials])
    if data.has_gpu and any(_wait_span(r) for _, r in trials):
        handles.append(Patch(facecolor=WAIT_COLOR, alpha=0.35, label="GPU wait"))
    if data.has_gpu:
        handles += [Line2D([], [], color="k", lw=1.6, label="device used"),
                    Line2D([], [], color="k", lw=1, ls="--", label="trial's processes")]
    handles += [Line2D([], [], marker=m, ls="", color="k", markersize=6,
                       label=f"slot {slot} peak{_slot_device(data.records, slot)}")
                for slot, m in marker.items()]
    what = "GPU and host memory" if data.has_gpu else "Host memory (no GPU)"
    fig.suptitle(f"{what} over the sweep, {len(trials)} trials", fontsize=12)
    rows_needed = math.ceil(len(handles) / 6)  # at most 6 entries a row, rows evenly filled
    fig.legend(handles=handles, loc="outside lower center",
               ncol=math.ceil(len(handles) / rows_needed),
               frameon=False, fontsize=9)
    _save(fig, path)
    return True


def label_levels(starts: Sequence[float], gap: float, levels: int = 3) -> list[int | None]:
    """The row (0 = nearest the plot) of each trial's number above the timeline: the lowest
    row where it stands ``gap`` clear of the last number there; None when all rows are full
    (trials started together in many slots). Keeps every number readable, none overlapping."""
    last = [-math.inf] * levels
    result: list[int | None] = []
    for start in starts:
        level = next((i for i in range(levels) if start - last[i] >= gap), None)
        if level is not None:
            last[level] = start
        result.append(level)
    return result


def _slot_device(records: Sequence[TrialRecord], slot: int) -> str:
    """`` (GPU 1)`` when the slot's trials ran on a GPU, else nothing."""
    for record in records:
        if record.slot == slot and record.gpu.index is not None:
            return f" (GPU {record.gpu.index})"
    return ""


def _start(record: TrialRecord) -> float | None:
    return record.timeline.start


def _end(record: TrialRecord, data: SweepData) -> float:
    line = record.timeline
    samples = data.samples.get(record.run)
    last = samples.t[-1] if samples and samples.t else record.duration_s
    candidates = [line.wait_end, line.exit, (line.start or 0.0) + last]
    return max(c for c in candidates if c is not None)


def _wait_span(record: TrialRecord) -> tuple[float, float] | None:
    line = record.timeline
    if line.wait_start is None or line.wait_end is None or line.wait_end <= line.wait_start:
        return None
    return line.wait_start, line.wait_end


def _draw_trial(ax: Any, row: str, record: TrialRecord, data: SweepData, t0: float,
                scale: float, marker: str | None) -> None:
    samples = data.samples.get(record.run)
    if samples is None or not samples.t:
        return
    x = (record.timeline.start - t0 + np.asarray(samples.t)) / scale
    color = status_color(record.status.value)
    y = samples.rss_mb if row == "host" else samples.gpu_used_mb
    ax.plot(x, y, color=color, lw=1.6)
    ax.fill_between(x, y, color=color, alpha=0.12, lw=0)
    if row == "gpu":
        ax.plot(x, samples.gpu_tree_mb, color=color, lw=1, ls="--")
    values = np.asarray(y, dtype=float)
    if marker and np.isfinite(values).any():  # which slot ran it, at its peak
        top = int(np.nanargmax(values))
        ax.plot([x[top]], [values[top]], marker=marker, ls="", color=color, markersize=6,
                markeredgecolor="k", markeredgewidth=0.6, zorder=4)


def _draw_baseline(ax: Any, records: Sequence[TrialRecord]) -> None:
    baselines = [r.gpu.baseline_mb for r in records if r.gpu.baseline_mb is not None]
    if baselines:
        ax.axhline(baselines[0], color="k", lw=0.8, ls=":", alpha=0.7)
        ax.annotate("baseline", (1.0, baselines[0]), xycoords=("axes fraction", "data"),
                    xytext=(3, 0), textcoords="offset points", ha="left", va="center",
                    fontsize=8, alpha=0.8)


def _draw_phases(axes: Sequence[Any], index: int, record: TrialRecord, t0: float,
                 scale: float, level: int | None, waits: bool) -> None:
    """The trial's start line and number, and its GPU wait (none without a GPU: no wait)."""
    start = (record.timeline.start - t0) / scale
    wait = _wait_span(record) if waits else None
    for ax in axes:
        ax.axvline(start, color="#555555", lw=0.7, ls=":", alpha=0.8)
        if wait:
            ax.axvspan((wait[0] - t0) / scale, (wait[1] - t0) / scale, color=WAIT_COLOR,
                       alpha=0.35, lw=0)
    if level is not None:
        axes[0].annotate(str(index), (start, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(0, 2 + 10 * level), textcoords="offset points",
                         ha="center", va="bottom", fontsize=8, color="#333333")


# -- (b) peak memory per trial -----------------------------------------------------------
def peak_bars(data: SweepData, path: str) -> bool:
    """One bar per trial: GPU peak of its processes (when any) and its host RSS peak."""
    records = data.records
    rows = [("GPU peak of the trial's processes (MB)", [r.gpu.peak_tree_mb for r in records])]
    if not data.has_gpu:
        rows = []
    rows.append(("host RSS peak (MB)", [r.host.peak_rss_mb for r in records]))
    n = len(records)
    fig = Figure(figsize=(min(4 + 0.45 * n, 14), 1.6 + 2.4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(n)
    colors = [status_color(r.status.value) for r in records]
    for ax, (label, values) in zip(axes, rows, strict=True):
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(x, np.nan_to_num(heights), color=colors, width=0.7)
        if n <= 24:
            texts = ["n/a" if v is None else f"{v:,.0f}" for v in values]
            ax.bar_label(bars, labels=texts, fontsize=7, padding=2)
        ax.set_ylabel(label)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(x, _trial_labels(records), rotation=45 if n > 8 else 0,
                        ha="right" if n > 8 else "center", fontsize=8)
    axes[-1].set_xlabel("trial (number and run id, as in the table)")
    step = max(1, math.ceil(n / 40))
    for i, tick in enumerate(axes[-1].get_xticklabels()):
        tick.set_visible(i % step == 0)
    fig.suptitle("Peak memory per trial", fontsize=12)
    fig.legend(handles=_status_legend([r.status.value for r in records], "patch"),
               loc="outside lower center", ncol=5, frameon=False, fontsize=9)
    _save(fig, path)
    return True


def _trial_labels(records: Sequence[TrialRecord]) -> list[str]:
    return [f"{i}\n{r.run}" if len(records) <= 8 else f"{i} {r.run}"
            for i, r in enumerate(records, start=1)]


# -- (c) metric vs each param ------------------------------------------------------------
def metric_vs_params(data: SweepData, path: str) -> bool:
    """The best metric of each trial against each param that varies, one small panel each."""
    metric = data.metric
    scored = [r for r in data.records
              if r.metric.best is not None and math.isfinite(r.metric.best)]
    if metric is None or not scored:
        return False
    flat = [flatten(r.params) for r in scored]
    names = varied_params([flatten(r.params) for r in data.records]) or list(flat[0])[:1]
    if not names:
        return False
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.9 * cols + 0.6, 3.0 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    best = data.best()
    y = [r.metric.best for r in scored]
    colors = [status_color(r.status.value) for r in scored]
    for ax, name in zip(axes, names, strict=False):
        values = [p.get(name) for p in flat]
        x = _param_axis(ax, values)
        ax.scatter(x, y, c=colors, s=36, edgecolor="white", linewidth=0.6, zorder=3)
        if best is not None and best in scored:
            i = scored.index(best)
            ax.scatter([x[i]], [y[i]], marker="*", s=220, facecolor="none",
                       edgecolor="k", linewidth=1.1, zorder=4)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel(f"{metric['name']} (best per trial)")
    handles = _status_legend([r.status.value for r in scored], "patch")
    handles.append(Line2D([], [], marker="*", ls="", markerfacecolor="none",
                          markeredgecolor="k", markersize=12, label="best trial"))
    left_out = len(data.records) - len(scored)
    note = f", {left_out} without a value left out" if left_out else ""
    fig.suptitle(f"{metric['name']} ({metric.get('goal', 'minimize')}) vs params{note}",
                 fontsize=12)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles),
               frameon=False, fontsize=9)
    _save(fig, path)
    return True


def _param_axis(ax: Any, values: Sequence[Any]) -> list[float]:
    """x positions: numbers as numbers (log axis over wide positive ranges), else categories."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        positive = [v for v in values if v > 0]
        if len(positive) == len(values) and max(positive) / min(positive) >= 8:
            ax.set_xscale("log")
            _log_ticks(ax.xaxis, min(positive), max(positive))
        distinct = sorted(set(values))
        if len(distinct) <= 8 and all(float(v).is_integer() for v in distinct):
            ax.set_xticks(distinct)  # a few sizes (batch, hidden): tick exactly those
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        return [float(v) for v in values]
    categories = sorted({repr(v) for v in values})
    labels = {c: c.strip("'") for c in categories}
    ax.set_xticks(range(len(categories)), [labels[c] for c in categories],
                  rotation=30 if len(categories) > 4 else 0)
    ax.set_xlim(-0.6, len(categories) - 0.4)
    rng = np.random.default_rng(0)  # a little jitter so equal points stay visible
    return [categories.index(repr(v)) + rng.uniform(-0.12, 0.12) for v in values]


def log_subs(low: float, high: float) -> tuple[float, ...]:
    """Ticks at 1, 2 and 5 times each power of ten over about a decade, 1 and 3 over up to
    two and a half, decades only beyond: denser ticks would run into each other
    (0.00050.001 on a 3.9-inch panel)."""
    decades = math.log10(high / low)
    return (1.0, 2.0, 5.0) if decades <= 1.2 else (1.0, 3.0) if decades <= 2.5 else (1.0,)


def _log_ticks(axis: Any, low: float, high: float) -> None:
    axis.set_major_locator(LogLocator(subs=log_subs(low, high), numticks=7))
    axis.set_minor_locator(NullLocator())


# -- (d) predicted vs actual peak --------------------------------------------------------
def predicted_vs_actual(fit: Fit, path: str) -> bool:
    """The memory model's predictions against the peaks the trials really had."""
    model = fit.model
    if model is None:
        return False
    actual = [o.peak_mb for o in fit.observed]
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.subplots()
    series = (("fit on all trials", fit.fitted, dict(facecolor="none", edgecolor="#3b75c4")),
              ("before launch (earlier trials only)", fit.before,
               dict(facecolor="#e08a00", edgecolor="white")))
    shown = list(actual)
    for label, predicted, style in series:
        pairs = [(a, p) for a, p in zip(actual, predicted, strict=True) if p is not None]
        if not pairs:
            continue
        error = memfit.median_abs_error(predicted, fit.observed)
        ax.scatter(*zip(*pairs, strict=True), s=48, linewidth=1.3, zorder=3,
                   label=f"{label}: median |error| {error:.0%}", **style)
        shown += [p for _, p in pairs]
    low, high = min(shown) / 1.3, max(shown) * 1.3
    line = np.geomspace(low, high, 50)
    ax.plot(line, line, color="k", lw=0.9, label="predicted = actual")
    ax.fill_between(line, line / 1.2, line * 1.2, color="k", alpha=0.07, lw=0,
                    label="within 20%")
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high))
    for axis in (ax.xaxis, ax.yaxis):
        _log_ticks(axis, low, high)
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.4g}"))
    source = "GPU" if model.source == "gpu" else "host RSS"
    ax.set_xlabel(f"actual peak {source} (MB)")
    ax.set_ylabel(f"predicted peak {source} (MB)")
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    terms = " × ".join(f"{n}^{e:.2f}" for n, e in zip(model.features, model.exponents,
                                                       strict=True))
    base = f"{model.base_mb:.0f} + " if model.base_mb > 0 else ""
    ax.set_title(f"Peak {source}: predicted vs actual ({model.n} trials)\n"
                 f"{base}{math.exp(model.intercept):.3g} × {terms or '1'} MB", fontsize=10)
    _save(fig, path)
    return True
