"""The targets of docs/BENCHMARKS.md, checked against measured results, and the page itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOTES = Path(__file__).resolve().parent / "NOTES.md"

# (benchmark, result key, comparison, target, label); a (CPU, GPU) target is chosen by the
# device the benchmark ran on (its result's "gpu": the GPU's name, or None on a CPU).
TARGETS = [
    ("inter_trial_overhead", "overhead_s_median", "<=", (0.3, 0.5),
     "per-trial overhead on {device}, orchestrator start-up excluded (s)"),
    ("inter_trial_overhead", "ratio_vs_fixed", ">=", 10.0, "overhead ratio, fixed 5 s / ours"),
    ("orchestrator_startup", "grid_startup_s_median", "<=", 0.5,
     "start-up to the first trial's launch, grid sweep (s)"),
    ("orchestrator_startup", "random_startup_s_median", "<=", 0.5,
     "start-up to the first trial's launch, random sweep (s)"),
    ("containment_cost", "added_ms_median", "<=", 20.0,
     "the trial launcher's added time per trial, start + stop (ms)"),
    ("containment_cost", "added_ms_cgroup_median", "<=", 20.0,
     "the same with a cgroup v2 per trial, where delegated (ms)"),
    ("monitor_overhead", "cpu_percent_of_core_median", "<", 1.0,
     "monitor CPU at 10 Hz, 8 processes (% of a core)"),
    ("parent_scale", "rss_growth_mb", "<", 20.0, "orchestrator RSS growth over the trials (MB)"),
    ("parent_scale", "overhead_ratio_last_vs_first", "<=", 1.5,
     "overhead, last 50 / first 50 trials (flat = 1)"),
    ("data_pipeline", "warm_speedup", ">=", 20.0, "cache warm start speed-up vs cold"),
    ("data_pipeline", "worker_private_growth_mb_per_epoch", "<", 50.0,
     "DataLoader worker private growth per epoch (MB)"),
    ("data_pipeline", "main_private_growth_mb_per_epoch_0_workers", "<", 50.0,
     "warm start, flat memory: main process private growth per epoch (MB)"),
    ("train_throughput", "gpu_util_percent_gru_1024", ">", 85.0,
     "GPU busy, default GRU at batch 1024 (%)"),
    ("wandb_agent", "heartbeat_max_gap_over_interval", "<", 2.0,
     "cloud agent: longest heartbeat gap while a trial is stopped (15 s grace) / interval"),
]


def check_targets(results: dict[str, dict]) -> list[dict[str, Any]]:
    rows = []
    for bench, key, op, target, label in TARGETS:
        gpu = results.get(bench, {}).get("gpu")
        if isinstance(target, tuple):
            target = target[1] if gpu else target[0]
            label = label.format(device=f"GPU ({gpu})" if gpu else "CPU")
        value = results.get(bench, {}).get(key)
        if value is None:
            met = None
        else:
            met = {"<=": value <= target, ">=": value >= target, "<": value < target,
                   ">": value > target}[op]
        rows.append({"label": label, "target": f"{op} {target:g}", "measured": value,
                     "met": met, "bench": bench})
    return rows


def describe_machine(info: dict) -> str:
    return f"{info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM"


def render(info: dict, results: dict[str, dict], checks: list[dict]) -> str:
    """The page. Each result carries its own date, mode and machine (``--only`` keeps older
    ones); a result without them is from the run ``info`` describes."""
    stamps = {(r.get("date", info["date"]), r.get("mode", info["mode"]))
              for r in results.values()}
    when = (f"{next(iter(stamps))[0]} ({next(iter(stamps))[1]} runs)" if len(stamps) == 1
            else "per benchmark, below (results of different runs)")
    here = describe_machine(info)
    machines = {r.get("machine", here) for r in results.values()}
    machine = (f"{next(iter(machines))}, Python {info['python']}" if len(machines) <= 1
               else "per benchmark, below (results of different machines)")
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python bench/run_all.py`); every figure is a median over "
        "repeats unless its notes say otherwise, measured on the machine below. Tests never "
        "assert timings: the targets are checked here.",
        "",
        f"- date: {when}",
        f"- machine: {machine}",
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
        gpu = result.get("gpu")
        lines += [f"### {name}" + (f" on {gpu}" if gpu else ""), ""]
        stamp = f"{result.get('mode', info['mode'])} run, {result.get('date', info['date'])}"
        if len(machines) > 1:
            stamp += f", {result.get('machine', here)}"
        command = result.get("command")
        if command:
            lines += [f"`{command}` ({result.get('seconds', '?')} s; {stamp})", ""]
        if "error" in result:
            lines += [f"not measured: {result['error']}", ""]
            continue
        tables = {k: v for k, v in result.items() if _is_table(v)}
        scalars = {k: v for k, v in result.items()
                   if k not in tables
                   and k not in ("command", "seconds", "date", "mode", "machine")}
        if scalars:
            lines += ["| key | value |", "| --- | --- |"]
            lines += [f"| {key} | {_cell(value)} |" for key, value in scalars.items()]
            lines.append("")
        for key, rows in tables.items():
            columns = list(dict.fromkeys(c for row in rows.values() for c in row))
            lines += [f"| {key} | " + " | ".join(columns) + " |",
                      "| --- |" + " --- |" * len(columns)]
            lines += [f"| {name} | " + " | ".join(_cell(row[c]) if c in row else "-"
                                                  for c in columns) + " |"
                      for name, row in rows.items()]
            lines.append("")
    lines += run_notes(info, results)
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    return "\n".join(lines) + "\n"


def run_notes(info: dict, results: dict[str, dict]) -> list[str]:
    """What this page's runs were: sizes, modes, and GPU or not, from the results themselves
    (bench/NOTES.md holds only how the figures are taken, true of every run)."""
    from bench.data_pipeline import SIZES

    lines = ["## About these runs", ""]
    if info["gpu"]:
        lines.append(f"- GPU: {info['gpu']}. The GPU figures are in the sections named after "
                     "it; the overhead target there is <= 0.5 s per trial (<= 0.3 s on a CPU).")
    else:
        lines.append("- No GPU: every figure is from the CPU machine above. Not measured: "
                     "`train_throughput`'s GPU busy % (target > 85 % for the default GRU at "
                     "batch 1024), the residual each wait policy leaves on a GPU "
                     "(`inter_trial_overhead`, target <= 0.5 s per trial there), and "
                     "`pytest -m gpu`. On a CUDA machine `make bench` measures them unchanged.")
    for name, result in results.items():
        if "error" in result:
            continue
        size = [f"{result[k]:,} {k}" for k in ("trials", "repeats", "windows", "processes")
                if isinstance(result.get(k), int)]
        if "faults" in result:
            size.append(f"{len(result['faults'])} faults, one run each")
        mode = result.get("mode", info["mode"])
        lines.append(f"- `{name}`: {mode} run" + (f", {', '.join(size)}" if size else ""))
    pipeline = results.get("data_pipeline", {})
    if "windows" in pipeline:
        mode = pipeline.get("mode", info["mode"])
        (tickers, days), other = SIZES[mode], "full" if mode == "quick" else "quick"
        lines.append(
            f"- The data pipeline ran at {pipeline['windows']:,} windows ({tickers} synthetic "
            f"tickers x {days} days); {other} runs use {SIZES[other][0]} x {SIZES[other][1]}.")
    lines.append("- Quick runs (`make bench`) are smaller in every benchmark (fewer trials, "
                 "repeats, samples and windows: the sizes above are this page's own); "
                 "`python bench/run_all.py --full` gives the figures at full size.")
    return lines + [""]


def _is_table(value: Any) -> bool:
    """A dict of dicts (one row per key): rendered as its own table."""
    return isinstance(value, dict) and bool(value) and all(
        isinstance(v, dict) for v in value.values())


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "<br>".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|")
