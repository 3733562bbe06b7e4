"""The targets of docs/BENCHMARKS.md, checked against measured results, and the page itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOTES = Path(__file__).resolve().parent / "NOTES.md"

# (benchmark, result key, comparison, target, label)
TARGETS = [
    ("inter_trial_overhead", "overhead_s_median", "<=", 0.3, "per-trial overhead on CPU (s)"),
    ("inter_trial_overhead", "ratio_vs_fixed", ">=", 10.0, "overhead ratio, fixed 5 s / ours"),
    ("monitor_overhead", "cpu_percent_of_core_median", "<", 1.0,
     "monitor CPU at 10 Hz, 8 processes (% of a core)"),
    ("parent_scale", "rss_growth_mb", "<", 20.0, "orchestrator RSS growth over the trials (MB)"),
    ("parent_scale", "overhead_ratio_last_vs_first", "<=", 1.5,
     "overhead, last 50 / first 50 trials (flat = 1)"),
    ("data_pipeline", "warm_speedup", ">=", 20.0, "cache warm start speed-up vs cold"),
    ("data_pipeline", "worker_private_growth_mb_per_epoch", "<", 50.0,
     "DataLoader worker private growth per epoch (MB)"),
    ("train_throughput", "gpu_util_percent_gru_1024", ">", 85.0,
     "GPU busy, default GRU at batch 1024 (%)"),
]


def check_targets(results: dict[str, dict]) -> list[dict[str, Any]]:
    rows = []
    for bench, key, op, target, label in TARGETS:
        value = results.get(bench, {}).get(key)
        if value is None:
            met = None
        else:
            met = {"<=": value <= target, ">=": value >= target, "<": value < target,
                   ">": value > target}[op]
        rows.append({"label": label, "target": f"{op} {target:g}", "measured": value,
                     "met": met, "bench": bench})
    return rows


def render(info: dict, results: dict[str, dict], checks: list[dict]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python bench/run_all.py`); every figure is a median over "
        "repeats, measured on the machine below. Tests never assert timings: the targets are "
        "checked here.",
        "",
        f"- date: {info['date']} ({info['mode']} runs)",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, "
        f"Python {info['python']}",
        f"- GPU: {info['gpu'] or 'none (figures below are CPU-only)'}",
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "| --- | --- | --- | --- |",
    ]
    for row in checks:
        measured = "-" if row["measured"] is None else f"{row['measured']:g}"
        met = {True: "yes", False: "**no**", None: "not measured"}[row["met"]]
        if row["met"] is None and row["bench"] == "train_throughput" and not info["gpu"]:
            met = "needs a GPU"
        lines.append(f"| {row['label']} | {row['target']} | {measured} | {met} |")
    lines += ["", "## Results", ""]
    for name, result in results.items():
        lines += [f"### {name}", ""]
        command = result.get("command")
        if command:
            lines += [f"`{command}` ({result.get('seconds', '?')} s)", ""]
        if "error" in result:
            lines += [f"not measured: {result['error']}", ""]
            continue
        tables = {k: v for k, v in result.items() if _is_table(v)}
        scalars = {k: v for k, v in result.items()
                   if k not in tables and k not in ("command", "seconds")}
        if scalars:
            lines += ["| key | value |", "| --- | --- |"]
            lines += [f"| {key} | {_cell(value)} |" for key, value in scalars.items()]
            lines.append("")
        for key, rows in tables.items():
            columns = list(dict.fromkeys(c for row in rows.values() for c in row))
            lines += [f"| {key} | " + " | ".join(columns) + " |",
                      "| --- |" + " --- |" * len(columns)]
            lines += [f"| {name} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |"
                      for name, row in rows.items()]
            lines.append("")
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    """A dict of dicts (one row per key): rendered as its own table."""
    return isinstance(value, dict) and bool(value) and all(
        isinstance(v, dict) for v in value.values())


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "<br>".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|")
