"""The report's picture of how many trials ran at once over the sweep (``--slots auto``
finds that number as it goes; this shows what it found). Only the report imports this."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from gpusweep.report.plots import DPI, _time_scale
from gpusweep.slotfill import running_at

if TYPE_CHECKING:
    from gpusweep.records.reader import SweepData


def concurrency(data: SweepData, path: str) -> bool:
    """Trials running (process started, not yet exited) over wall time, as a step line;
    False when no trial has a start and an exit."""
    steps = running_at(data.records)
    if not steps:
        return False
    t0 = steps[0][0]
    scale, unit = _time_scale(steps[-1][0] - t0)
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.step([(t - t0) / scale for t, _ in steps], [n for _, n in steps], where="post",
            color="#1f77b4")
    most = max(n for _, n in steps)
    ax.set_ylim(0, most + 0.5)
    ax.set_yticks(range(0, most + 1))
    ax.set_xlabel(f"wall time since the first trial started ({unit})")
    ax.set_ylabel("trials running")
    ax.grid(alpha=0.3)
    fig.suptitle(f"Trials at once (at most {most})", fontsize=12)
    fig.savefig(path, dpi=DPI)
    return True
