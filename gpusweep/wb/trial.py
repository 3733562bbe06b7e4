"""The trial's W&B run, for programs that report through ``gpusweep.trial`` only.

``gpusweep.trial.report`` calls :func:`log` after writing its event (only inside a trial,
and never with ``WANDB_MODE=disabled``); this module is imported then, not before, so a
trial that never reports never pays for importing wandb. The first call starts the run
(``wandb.init()`` with everything from the environment the launcher set: run id, project,
group, tags, job type, the params file as config, ``WANDB_DIR``); ``trial.session()``
finishes it (:func:`finish`); this module never imports ``gpusweep.trial``, which calls in.
A program that called ``wandb.init()`` itself keeps its run: we log into it and leave
finishing to it.

A SIGTERM arriving while ``wandb.init()`` runs (a Hyperband stop right after the first
report) is held until the run exists and the report is logged, then acted on: otherwise it
aborts the init and the trial has no run. The run then finishes with exit code 143.

Failing W&B never fails the trial: the first error is printed once to stderr and W&B is
off for the rest of the trial; the orchestrator's records do not depend on it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from gpusweep.bootstrap import loaded
from gpusweep.bootstrap._gpusweep_secrets import redact

# The instances the bootstrap (sitecustomize) loaded, where it did: one state per process.
_child = loaded("_gpusweep_child")
_signals = loaded("_gpusweep_signals")


class _State:
    run: Any = None
    owned = False  # we started it, so we finish it
    off = False  # W&B failed once, or the run was finished: stop trying


_state = _State()


def log(step: int | None, metrics: dict[str, Any], memory: dict[str, Any]) -> None:
    """Log one report (metrics plus ``memory/*``) to the trial's run, starting it if needed."""
    if _state.off:
        return
    with _signals.SigtermHeld() if _state.run is None else contextlib.nullcontext():
        try:
            run = _state.run or _start()
            data = {**_child.memory_metrics(memory), **metrics}
            log_method = type(run).log
            log_method = getattr(log_method, _child.ORIGINAL_ATTR, log_method)  # no 2nd event
            log_method(run, data, step=step)
        except Exception as exc:
            _give_up(exc)


def finish(ending: BaseException | None) -> None:
    """Finish the run we started, with the exit code of ``ending``, the exception that is
    ending ``trial.session()`` (None: success). A run the program started is its own."""
    run = _state.run
    if run is None or not _state.owned:
        return
    _state.run, _state.off = None, True
    try:
        run.finish(exit_code=_exit_code(ending))
    except Exception as exc:
        _give_up(exc)


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
