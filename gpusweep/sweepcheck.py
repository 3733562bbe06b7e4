"""Check a finished sweep from its records: ``python -m gpusweep.sweepcheck SWEEP_DIR``.

What ``./test_memory_cleanup.sh`` asserts after running a sweep: every trial has its
``memory.yaml``; every trial ended normally (``finished``, or stopped by Hyperband, or an
OOM that was retried); ``cleanup.clean`` is true everywhere; no process of any trial is
left. It prints the per-trial peak memory table, then one line per problem, and exits 1
if there is any (0 otherwise).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import psutil

from gpusweep.sweepdir import read_yaml

ENDED_NORMALLY = ("finished", "stopped_early")
OOM_STATUSES = ("oom",)  # an OOM is fine once a later trial retried it


def load(sweep_dir: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(sweep.yaml, the trials' memory.yaml in sweep order, the journal's entries)."""
    sweep = read_yaml(os.path.join(sweep_dir, "sweep.yaml")) or {}
    journal = []
    try:
        with open(os.path.join(sweep_dir, "journal.jsonl"), encoding="utf-8") as handle:
            for line in handle:
                try:
                    journal.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    records = []
    for run in _started_runs(sweep, journal):
        record = read_yaml(os.path.join(sweep_dir, run, "memory.yaml"))
        records.append(record if isinstance(record, dict) else {"run": run, "missing": True})
    return sweep, records, journal


def problems(sweep: dict[str, Any], records: list[dict[str, Any]],
             journal: list[dict[str, Any]], live_tokens: set[str]) -> list[str]:
    """Every problem, one line each; empty when the sweep passes."""
    found = []
    if not sweep:
        return ["no sweep.yaml: the sweep did not record anything"]
    if (sweep.get("sweep") or {}).get("state") != "finished":
        found.append(f"sweep state is {(sweep.get('sweep') or {}).get('state')!r}, "
                     "not 'finished'")
    if not records:
        found.append("no trial ran")
    retried = _retried(journal)
    for record in records:
        run = record.get("run")
        if record.get("missing"):
            found.append(f"{run}: no memory.yaml")
            continue
        status = record.get("status")
        if status in OOM_STATUSES and run in retried:
            pass
        elif status not in ENDED_NORMALLY:
            found.append(f"{run}: status {status}" + (f" ({_last_line(record['error'])})"
                                                      if record.get("error") else ""))
        cleanup = record.get("cleanup") or {}
        if cleanup.get("clean") is not True:
            state = "unknown" if cleanup.get("clean") is None else "not clean"
            found.append(f"{run}: cleanup {state} (residual "
                         f"{(record.get('gpu') or {}).get('residual_mb')} MB after "
                         f"{cleanup.get('wait_s')} s"
                         + (f": {cleanup['reason']}" if cleanup.get("reason") else "") + ")")
    for entry in journal:
        if entry.get("event") == "start" and entry.get("token") in live_tokens:
            found.append(f"{entry.get('run')}: a process of this trial is still running")
    return found


def live_trial_tokens(tokens: set[str]) -> set[str]:
    """Which of these trial tokens a live process still carries in its environment."""
    alive = set()
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            token = proc.environ().get("GPUSWEEP_TRIAL_TOKEN")
        except (psutil.Error, OSError):
            continue
        if token in tokens:
            alive.add(token)
    return alive


def peak_table(records: list[dict[str, Any]], metric: str | None) -> str:
    """One row per trial: params, status, metric, peak GPU (tree, torch reserved), host, wait."""
    header = ["run", "params", "status", metric or "metric", "GPU MB", "torch MB", "host MB",
              "wait s", "clean"]
    rows = []
    for r in records:
        if r.get("missing"):
            rows.append([str(r.get("run")), "", "no memory.yaml", "", "", "", "", "", ""])
            continue
        gpu, host, cleanup = r.get("gpu") or {}, r.get("host") or {}, r.get("cleanup") or {}
        params = ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())
        rows.append([r["run"], params, str(r.get("status")),
                     _g((r.get("metric") or {}).get("best")),
                     _num(gpu.get("peak_tree_mb")), _num(gpu.get("torch_peak_reserved_mb")),
                     _num(host.get("peak_rss_mb")), _num(cleanup.get("wait_s"), 2),
                     str(cleanup.get("clean"))])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in (header, *rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m gpusweep.sweepcheck SWEEP_DIR", file=sys.stderr)
        return 2
    sweep, records, journal = load(argv[0])
    tokens = {e["token"] for e in journal if e.get("event") == "start" and e.get("token")}
    found = problems(sweep, records, journal, live_trial_tokens(tokens))
    device = next(((r.get("gpu") or {}).get("device") for r in records
                   if not r.get("missing")), None)
    metric = ((sweep.get("sweep") or {}).get("metric") or {}).get("name")
    print(f"per-trial peak memory (device: {device or '-'}; GPU MB = the trial's processes on "
          "the GPU, torch MB = torch's reserved peak, host MB = RSS of the whole tree)")
    print(peak_table(records, metric))
    if device == "cpu":
        print("no GPU on this machine: GPU columns are empty; processes, host memory and "
              "cleanup were checked")
    for problem in found:
        print(f"FAIL: {problem}")
    print("PASS" if not found else f"FAILED ({len(found)} problem(s))")
    return 1 if found else 0


def _started_runs(sweep: dict[str, Any], journal: list[dict[str, Any]]) -> list[str]:
    runs = [str(row["run"]) for row in sweep.get("trials") or [] if "run" in row]
    for entry in journal:
        if entry.get("event") == "start" and entry.get("run") not in runs:
            runs.append(str(entry.get("run")))
    return runs


def _retried(journal: list[dict[str, Any]]) -> set[str]:
    """Runs that a later trial says it retries (``retry_of`` in its journal start)."""
    return {str(e["retry_of"]) for e in journal if e.get("event") == "start" and
            e.get("retry_of")}


def _last_line(text: str) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def _num(value: Any, digits: int = 0) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _g(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.4g}"


if __name__ == "__main__":
    sys.exit(main())
