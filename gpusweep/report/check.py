"""Check a finished sweep from its records: ``python -m gpusweep.report.check SWEEP_DIR``.

What ``./test_memory_cleanup.sh`` asserts after running a sweep: every trial has its
``memory.yaml``; every trial ended normally (``finished``, or stopped by Hyperband, or an
OOM that was retried); ``cleanup.clean`` is true everywhere; no process of any trial is
left. It prints the per-trial peak memory table, then one line per problem, and exits 1
if there is any (0 otherwise).
"""

from __future__ import annotations

import dataclasses
import sys

import psutil

from gpusweep.bootstrap._gpusweep_contract import TOKEN_ENV
from gpusweep.records import SweepState, TrialRecord
from gpusweep.records.journal import Replay
from gpusweep.records.reader import (
    SweepData,
    TrialRow,
    read_journal,
    read_sweep_dir,
    read_trial_row,
)
from gpusweep.status import TrialStatus

ENDED_NORMALLY = (TrialStatus.FINISHED, TrialStatus.STOPPED_EARLY)
OOM_STATUSES = (TrialStatus.OOM,)  # an OOM is fine once a later trial retried it


def load(sweep_dir: str) -> tuple[SweepData | None, list[TrialRow], Replay]:
    """(sweep.yaml, every trial that started in sweep order, the journal), through the
    sweep directory's reader: sweep.yaml's rows, then the journal's starts it lacks."""
    sweep = read_sweep_dir(sweep_dir)
    journal = read_journal(sweep_dir)
    trials = list(sweep.rows) if sweep is not None else []
    listed = {row.run for row in trials}
    for start in journal.starts:
        if start.run not in listed:
            listed.add(start.run)
            row = read_trial_row(sweep_dir, start.run, start.params)
            status = None if row.record is None else row.record.status
            trials.append(dataclasses.replace(row, status=status))
    return sweep, trials, journal


def problems(sweep: SweepData | None, trials: list[TrialRow], journal: Replay,
             live_tokens: set[str]) -> list[str]:
    """Every problem, one line each; empty when the sweep passes."""
    found = []
    if sweep is None:
        return ["no sweep.yaml: the sweep did not record anything"]
    if sweep.header.state is not SweepState.FINISHED:
        found.append(f"sweep state is {sweep.header.state.value!r}, not 'finished'")
    if not trials:
        found.append("no trial ran")
    retried = journal.retried
    for row in trials:
        record = row.record
        if record is None:
            found.append(f"{row.run}: {row.record_problem}")
            continue
        found += _trial_problems(record, retried)
    for start in journal.starts:
        if start.token in live_tokens:
            found.append(f"{start.run}: a process of this trial is still running")
    return found


def _trial_problems(record: TrialRecord, retried: set[str]) -> list[str]:
    found = []
    status = record.status
    if status in OOM_STATUSES and record.run in retried:
        pass
    elif status not in ENDED_NORMALLY:
        found.append(f"{record.run}: status {status.value}"
                     + (f" ({_last_line(record.error)})" if record.error else ""))
    cleanup = record.cleanup
    if cleanup.clean is not True:
        state = "unknown" if cleanup.clean is None else "not clean"
        found.append(f"{record.run}: cleanup {state} (residual {record.gpu.residual_mb} MB "
                     f"after {cleanup.wait_s} s"
                     + (f": {cleanup.reason}" if cleanup.reason else "") + ")")
    return found


def live_trial_tokens(tokens: set[str]) -> set[str]:
    """Which of these trial tokens a live process still carries in its environment."""
    alive = set()
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            token = proc.environ().get(TOKEN_ENV)
        except (psutil.Error, OSError):
            continue
        if token in tokens:
            alive.add(token)
    return alive


def peak_table(trials: list[TrialRow], metric: str | None) -> str:
    """One row per trial: params, status, metric, peak GPU (tree, torch reserved), host, wait."""
    header = ["run", "params", "status", metric or "metric", "GPU MB", "torch MB", "host MB",
              "wait s", "clean"]
    rows = []
    for row in trials:
        r = row.record
        if r is None:
            problem = "no memory.yaml" if row.unreadable is None else "memory.yaml unreadable"
            rows.append([row.run, "", problem, "", "", "", "", "", ""])
            continue
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        rows.append([r.run, params, r.status.value, _g(r.metric.best),
                     _num(r.gpu.peak_tree_mb), _num(r.gpu.torch_peak_reserved_mb),
                     _num(r.host.peak_rss_mb), _num(r.cleanup.wait_s, 2),
                     str(r.cleanup.clean)])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in (header, *rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m gpusweep.report.check SWEEP_DIR", file=sys.stderr)
        return 2
    sweep, trials, journal = load(argv[0])
    found = problems(sweep, trials, journal, live_trial_tokens(journal.tokens))
    device = next((row.record.gpu.device for row in trials if row.record is not None), None)
    metric = ((sweep.header.metric or {}).get("name") if sweep is not None else None)
    print(f"per-trial peak memory (device: {device or '-'}; GPU MB = the trial's processes on "
          "the GPU, torch MB = torch's reserved peak, host MB = RSS of the whole tree)")
    print(peak_table(trials, metric))
    if device == "cpu":
        print("no GPU on this machine: GPU columns are empty; processes, host memory and "
              "cleanup were checked")
    for problem in found:
        print(f"FAIL: {problem}")
    print("PASS" if not found else f"FAILED ({len(found)} problem(s))")
    return 1 if found else 0


def _last_line(text: str) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _g(value: float | None) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.4g}"


if __name__ == "__main__":
    sys.exit(main())
