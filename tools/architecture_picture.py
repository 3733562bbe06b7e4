"""Draw docs/img/architecture.png: the data's path through gpusweep's modules.

``python tools/architecture_picture.py [OUT.png]``. The boxes and arrows below are written by
hand from the imports and calls (docs/ARCHITECTURE.md tells the same path in words); rerun this
when a module moves. Matplotlib's Agg canvas, no display needed.
"""

from __future__ import annotations

import os
import sys

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

OUT = os.path.join(os.path.dirname(__file__), "..", "docs", "img", "architecture.png")

FLOW, DECIDE, PROBE, CHILD, DISK = "#dbe8f7", "#dcefd9", "#fbe3c8", "#eadcf2", "#eeeeee"

# One box: a line with its name, centre x and y on a 32 x 40 sheet, width, colour and title,
# then its lines of files, indented.
BOXES_TABLE = """
yaml      5     38.2  7    DISK    sweep YAML + command line
    my_sweep.yaml, argv
cli       5     35.6  9    FLOW    command line
    cli.py, preflight.py
    wb/cloud_cli.py, wb/agent_cli.py
config    5     32.6  9    FLOW    sweep file
    config.py, isolation.py
    typedconfig.py, macros.py, params.py
source    5     29.2  9    FLOW    where trials come from
    source.py, local_source.py
    controller.py, engine.py, lightstats.py
    wb/cloud_source.py, wb/agent_channel.py
runner    5     25.4  9    FLOW    the session
    runner.py, session.py, recorder.py, lock.py
    trialstart.py, trialend.py, sweepend.py
    resume.py, signals.py, slots.py, slotfill.py
trialrun  5     21.8  9    FLOW    one trial
    trialrun.py, trialaccount.py
    trialwatch.py, events.py
launcher  5     18.4  9    FLOW    start it, held
    process/launcher.py (wb/env.py)
    process/containment.py, trialprocess.py
reaper    5     15.0  9    FLOW    its launcher (a subreaper)
    process/reaper.py, process/cgroup.py
trial     5     10.4  9    CHILD   the trial process
    user program
    bootstrap/sitecustomize.py
    trial.py, wb/trial.py
    bootstrap/_gpusweep_child.py
decide    18    25.4  8.5  DECIDE  decisions
    admission.py, memfit.py, autoslots.py
    guards.py, oom.py, leak.py, flapping.py
    status.py, trialrecord.py
monitor   18    20.5  8.5  PROBE   watching it
    process/monitor.py, process/proctree.py
    hostmemory.py, gpu/track.py
gpu       27.5  17.5  6.5  PROBE   the GPU (NVML)
    gpu/device.py, gpu/scan.py
    gpu/visible.py, gpu/devfiles.py
cleanup   18    15.2  8.5  FLOW    ending it
    cleanup.py (end_tree)
    gpu/wait.py, gpu/view.py, gpu/baseline.py
writer    18    8.5   8.5  FLOW    the one writer
    records/writer.py, journal.py, atomic.py
    records/layout.py, records/model.py
sweepdir  18    3.2   8.5  DISK    the sweep directory
    journal.jsonl, sweep.yaml, config.yaml
    <run-id>/memory.yaml, memory.csv, ...
reader    27.5  3.2   6.5  FLOW    the one reader
    records/reader.py
report    27.5  9.5   6.5  FLOW    after the sweep
    report/build.py, plots.py
    concurrency.py, report/check.py
    wb/summary.py, wb/sync.py
resume    27.5  31.0  6.5  FLOW    --resume
    resume.py ends orphans
    recorder.py replays
    the journal
"""

# One arrow a line: from, to, and its label (if any).
ARROWS_TABLE = """
yaml      cli
cli       config    SweepSpec
config    source
source    runner    next params, stops
runner    trialrun  TrialPlan
trialrun  launcher  argv, env
launcher  reaper    status pipe
reaper    trial     its only child
runner    decide    admit?
trialrun  decide    stop? status?
trialrun  monitor   samples
monitor   gpu
cleanup   gpu
trialrun  cleanup   finish
cleanup   writer    TrialRecord, through recorder.py
writer    sweepdir
sweepdir  reader
reader    report
resume    runner
"""
COLOURS = {"FLOW": FLOW, "DECIDE": DECIDE, "PROBE": PROBE, "CHILD": CHILD, "DISK": DISK}


def boxes(table: str) -> dict[str, tuple[float, float, float, str, str, list[str]]]:
    """The boxes of ``table``: name -> (x, y, width, colour, title, lines of files)."""
    found: dict[str, tuple[float, float, float, str, str, list[str]]] = {}
    files: list[str] = []
    for line in table.strip("\n").splitlines():
        if line.startswith(" "):
            files.append(line.strip())  # a line of the box above
            continue
        name, x, y, width, colour, *title = line.split()
        files = []
        found[name] = (float(x), float(y), float(width), COLOURS[colour], " ".join(title), files)
    return found


def arrows(table: str) -> list[tuple[str, str, str]]:
    """The arrows of ``table``: (from, to, label)."""
    found = []
    for line in table.strip().splitlines():
        start, end, *label = line.split()
        found.append((start, end, " ".join(label)))
    return found


BOXES = boxes(BOXES_TABLE)
ARROWS = arrows(ARROWS_TABLE)


def anchor(name: str, toward: str) -> tuple[float, float]:
    """The middle of the side of box ``name`` that faces box ``toward``."""
    x, y, w, *_ = BOXES[name]
    tx, ty, *_ = BOXES[toward]
    h = box_height(name)
    if abs(tx - x) > abs(ty - y) * 1.2:
        return (x + w / 2 if tx > x else x - w / 2), y
    return x, (y - h / 2 if ty < y else y + h / 2)


def box_height(name: str) -> float:
    return 0.75 + 0.55 * len(BOXES[name][5])


def draw(out: str) -> None:
    fig = Figure(figsize=(13, 15.5), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 32)
    ax.set_ylim(0, 40)
    ax.axis("off")
    for name, (x, y, w, colour, title, files) in BOXES.items():
        h = box_height(name)
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.15",
                                    facecolor=colour, edgecolor="#555555", linewidth=1))
        ax.text(x, y + h / 2 - 0.45, title, ha="center", va="center", fontsize=11,
                fontweight="bold")
        ax.text(x, y - 0.3, "\n".join(files), ha="center", va="center", fontsize=8.5,
                family="monospace", linespacing=1.35)
    for start, end, label in ARROWS:
        a, b = anchor(start, end), anchor(end, start)
        ax.annotate("", xy=b, xytext=a, arrowprops={
            "arrowstyle": "-|>", "color": "#333333", "lw": 1.2,
            "shrinkA": 2, "shrinkB": 2})
        if label:
            ax.text((a[0] + b[0]) / 2 + 0.25, (a[1] + b[1]) / 2, label, fontsize=8.5,
                    color="#1f4e79", ha="left" if a[0] == b[0] else "center", va="bottom")
    # reader -> resume, round the right edge of the sheet.
    ax.plot([30.75, 31.3, 31.3, 30.75], [3.2, 3.2, 31.0, 31.0], color="#333333", lw=1.2)
    ax.annotate("", xy=(30.8, 31.0), xytext=(31.3, 31.0), arrowprops={
        "arrowstyle": "-|>", "color": "#333333", "lw": 1.2})
    # The contract: the environment in, files out, no imports between the two sides.
    ax.annotate("", xy=(10.9, 12.0), xytext=(10.9, 17.6), arrowprops={
        "arrowstyle": "-|>", "color": "#7b3f99", "lw": 1.2, "linestyle": "--"})
    ax.text(11.1, 16.9, "env GPUSWEEP_*\nconfig.yaml\nargs.json\npreempt",
            fontsize=7.5, color="#7b3f99", va="top")
    ax.annotate("", xy=(9.7, 21.0), xytext=(9.7, 10.6), arrowprops={
        "arrowstyle": "-|>", "color": "#7b3f99", "lw": 1.2, "linestyle": "--",
        "connectionstyle": "arc3,rad=0.12"})
    ax.text(5, 8.2, "files out: events.jsonl, output.log, leaks.txt", fontsize=8,
            color="#7b3f99", ha="center", va="top")
    legend = [(FLOW, "the data's path"), (DECIDE, "decisions (pure functions)"),
              (PROBE, "probes of the machine"), (CHILD, "inside the trial (stdlib only)"),
              (DISK, "files")]
    for i, (colour, text) in enumerate(legend):
        ax.add_patch(FancyBboxPatch((23.2, 38.6 - i * 0.9), 0.7, 0.5, boxstyle="round,pad=0.05",
                                    facecolor=colour, edgecolor="#555555"))
        ax.text(24.2, 38.85 - i * 0.9, text, fontsize=9, va="center")
    ax.text(13, 39.3, "gpusweep: the data's path", fontsize=15, fontweight="bold",
            ha="center")
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    draw(sys.argv[1] if len(sys.argv) > 1 else OUT)
