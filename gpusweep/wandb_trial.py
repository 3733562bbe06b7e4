"""The trial's W&B run, for programs that report through ``gpusweep.trial`` only.

``gpusweep.trial.report`` calls :func:`log` after writing its event (only inside a trial,
and never with ``WANDB_MODE=disabled``); this module is imported then, not before, so a
trial that never reports never pays for importing wandb. The first call starts the run
(``wandb.init()`` with everything from the environment the launcher set: run id, project,
group, tags, job type, the params file as config, ``WANDB_DIR``); ``trial.session()``
finishes it. A program that called ``wandb.init()`` itself keeps its run: we log into it
and leave finishing to it.

A SIGTERM arriving while ``wandb.init()`` runs (a Hyperband stop right after the first
report) is held until the run exists and the report is logged, then acted on: otherwise it
aborts the init and the trial has no run. The run then finishes with exit code 143.

Failing W&B never fails the trial: the first error is printed once to stderr and W&B is
off for the rest of the trial; the orchestrator's records do not depend on it.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from gpusweep import trial
from gpusweep.bootstrap.sitecustomize import ORIGINAL_ATTR, memory_metrics
from gpusweep.redact import redact


class _State:
    run: Any = None
    owned = False  # we started it, so we finish it
    off = False  # W&B failed once, or the run was finished: stop trying


_state = _State()


def log(step: int | None, metrics: dict[str, Any], memory: dict[str, Any]) -> None:
    """Log one report (metrics plus ``memory/*``) to the trial's run, starting it if needed."""
    if _state.off:
        return
    with _sigterm_held() if _state.run is None else contextlib.nullcontext():
        try:
            run = _state.run or _start()
            data = {**memory_metrics(memory), **metrics}
            log_method = type(run).log
            log_method = getattr(log_method, ORIGINAL_ATTR, log_method)  # no second event
            log_method(run, data, step=step)
        except Exception as exc:
            _give_up(exc)


def finish() -> None:
    """Finish the run we started, with the trial's exit code (run at ``session()`` end)."""
    run, owned = _state.run, _state.owned
    _state.run, _state.off = None, True
    if run is None or not owned:
        return
    try:
        run.finish(exit_code=_exit_code(trial.ending_exception()))
    except Exception as exc:
        _give_up(exc)


@contextlib.contextmanager
def _sigterm_held() -> Iterator[None]:
    """Hold SIGTERM for the duration; deliver it again (to the handler that was there,
    ``session()``'s) once the block is done, so the stop is late by the init only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if held:
            signal.raise_signal(signal.SIGTERM)


def _start() -> Any:
    import wandb

    if wandb.run is not None:  # the program started its own run
        _state.run, _state.owned = wandb.run, False
        return wandb.run
    saved = sys.argv
    sys.argv = [redact(arg) for arg in saved]  # argv goes into the run's metadata
    try:
        run = wandb.init()
    finally:
        sys.argv = saved
    _state.run, _state.owned = run, True
    trial.add_finish_hook(finish)
    return run


def _exit_code(exc: BaseException | None) -> int:
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    return 1


def _give_up(exc: Exception) -> None:
    _state.off = True
    print(f"gpusweep: W&B logging off for this trial: {type(exc).__name__}: "
          f"{redact(str(exc))[:300]}", file=sys.stderr, flush=True)
