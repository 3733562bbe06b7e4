"""What the user sees: a rich live table of trials, or (``--quiet``) one summary line."""

from __future__ import annotations

import os
import time
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from gpusweep.config import grid_size
from gpusweep.records import TrialRecord, best_trial
from gpusweep.redact import masked_params, redact, trial_secret_values

_STATUS_STYLE = {
    "finished": "green",
    "stopped_early": "yellow",
    "running": "cyan",
    "stopping": "cyan",
    "timeout": "magenta",
    "killed": "magenta",
}


def summary_line(runner: Any, state: str) -> str:
    """``sweep ab12cd34 finished: 6 trials (5 finished, 1 stopped_early), best ...``."""
    records: list[TrialRecord] = runner.records
    counts: dict[str, int] = {}
    for record in records:
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    line = f"sweep {runner.sweep_id} {state}: {len(records)} trials"
    if parts:
        line += f" ({parts})"
    best = best_trial(records, runner.spec.metric)
    if best is not None:
        line += f", best {best.run} {best.metric.name}={best.metric.best:.6g}"
    return f"{line} in {runner.wall_s:.1f} s; records in {runner.sweep_dir}"


def planned_trials(runner: Any) -> int | None:
    """How many trials this invocation will run, when that is known in advance."""
    caps = [c for c in (runner.spec.run_cap,) if c is not None]
    if runner.options.count is not None:  # --count is this invocation's; a resume has more
        caps.append(len(runner.records) + runner.options.count)
    if runner.spec.method == "grid":
        caps.append(grid_size(runner.spec.engine.get("parameters", {})))
    return min(caps) if caps else None


class QuietDisplay:
    """``--quiet``: nothing until the final summary line."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)

    def sweep_started(self, runner: Any) -> None: ...

    def trial_started(self, runner: Any, trial: Any) -> None: ...

    def refresh(self, runner: Any) -> None: ...

    def trial_ended(self, runner: Any, record: TrialRecord) -> None: ...

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)

    def error(self, text: str) -> None:
        """Why the sweep stopped: on stderr, unwrapped (a log keeps paths whole)."""
        Console(stderr=True, highlight=False).print(text, markup=False, soft_wrap=True)

    def sweep_ended(self, runner: Any, state: str) -> None:
        self.console.print(summary_line(runner, state), markup=False, soft_wrap=True)


class LiveDisplay(QuietDisplay):
    """One row per trial (params, status, metric, peak GPU/host MB, wait), a progress bar,
    and the tail of the running trial's output."""

    def __init__(self, console: Console | None = None, tail_lines: int = 6) -> None:
        super().__init__(console)
        self.tail_lines = tail_lines
        self._live: Live | None = None
        self._progress = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=self.console)
        self._task = None
        self._last = 0.0

    def sweep_started(self, runner: Any) -> None:
        devices = ", ".join(sorted({d.info.name for d in runner.devices}))
        slots = f"{len(runner.slots)} slots on " if len(runner.slots) > 1 else ""
        if getattr(getattr(runner, "filler", None), "auto", False):
            slots = f"auto slots (at most {runner.spec.isolation.max_slots} per device) on "
        self.console.print(f"sweep [bold]{runner.sweep_id}[/] ({runner.spec.method}) on "
                           f"{slots}{devices}; records in {runner.sweep_dir}")
        self._task = self._progress.add_task("sweep", total=planned_trials(runner),
                                             completed=len(runner.records))
        self._live = Live(self._render(runner), console=self.console, refresh_per_second=4,
                          transient=False)
        self._live.start()

    def trial_started(self, runner: Any, trial: Any) -> None:
        self.refresh(runner, force=True)

    def refresh(self, runner: Any, force: bool = False) -> None:
        now = time.monotonic()
        if self._live is None or (not force and now - self._last < 0.25):
            return
        self._last = now
        self._live.update(self._render(runner))

    def trial_ended(self, runner: Any, record: TrialRecord) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=len(runner.records))
        self.refresh(runner, force=True)

    def message(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, soft_wrap=True)
        else:
            super().message(text)

    def sweep_ended(self, runner: Any, state: str) -> None:
        if self._live is not None:
            self._live.update(self._render(runner, with_tail=False))
            self._live.stop()
            self._live = None
            if not self.console.is_terminal:
                self.console.line()
        super().sweep_ended(runner, state)

    def _render(self, runner: Any, with_tail: bool = True) -> Group:
        metric = runner.spec.metric.name if runner.spec.metric else "metric"
        table = Table(expand=False, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                      collapse_padding=True)
        fixed = constant_params(runner.spec.engine.get("parameters", {}))
        slots = len(runner.slots) > 1
        table.add_column("#", justify="right", no_wrap=True)
        if slots:  # right after the number, where an 80-column log cannot cut it off
            table.add_column("slot", justify="right", no_wrap=True)
        table.add_column("run", no_wrap=True)
        table.add_column("params", min_width=16, overflow="fold")
        # Units on a second header line, and with slots no wait column (it is in the records
        # and the report): a row must fit an 80-column log.
        numbers = ("GPU\nMB", "host\nMB") + (() if slots else ("wait\ns",))
        for name in ("status", metric, *numbers):
            table.add_column(name, justify="left" if name == "status" else "right",
                             no_wrap=True)
        for i, record in enumerate(runner.records, 1):
            wait = () if slots else (_num(record.cleanup.wait_s, 2),)
            table.add_row(str(i), *([str(record.slot)] * slots), record.run,
                          _params(record.params, fixed), _status(record.status.value),
                          _num(record.metric.best), _num(record.gpu.peak_tree_mb, 0),
                          _num(record.host.peak_rss_mb, 0), *wait)
        for number, trial in enumerate(runner.running, len(runner.records) + 1):
            if trial.monitor is None:
                continue
            peaks = trial.monitor.peaks
            values = trial.events.metric_values
            status = "stopping" if trial.stopping else "running"
            table.add_row(str(number), *([str(trial.slot)] * slots), trial.run_id,
                          _params(trial.params, fixed), _status(status),
                          _num(values[-1] if values else None), _num(peaks.gpu_tree_mb, 0),
                          _num(peaks.rss_mb, 0), *(() if slots else ("",)))
        parts: list[Any] = [table, self._progress]
        if with_tail and runner.running and not slots:
            trial = runner.running[0]
            masked = trial_secret_values(trial.params)
            parts.append(Text(_tail(trial.paths.output_log, self.tail_lines, masked),
                              style="dim"))
        return Group(*parts)


def _params(params: dict[str, Any], constants: frozenset[str] = frozenset()) -> str:
    """The params that vary, ``name=value``; a dotted name shows its last part (lr=0.001
    for train.lr), the sweep file has the rest. A secret-named one shows ``***``."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}"
                     for k, v in masked_params(params).items() if k not in constants)


def constant_params(parameters: dict[str, Any]) -> frozenset[str]:
    """Parameters with one fixed value: the same in every row, so not shown."""
    return frozenset(k for k, v in parameters.items() if isinstance(v, dict) and "value" in v)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, "red"))


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if digits <= 2 else f"{value:.{digits}g}"


def _tail(path: str, lines: int, secrets: list[str] | None = None) -> str:
    """The last ``lines`` of the trial's output, with ``secrets`` (or the environment's)
    masked."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return redact("\n".join(text.rstrip().splitlines()[-lines:]), secrets)
