"""SIGTERM inside a trial, in one place (stdlib only).

SIGTERM is the orchestrator's polite stop: the trial has ``isolation.stop.grace_s`` to unwind
before SIGKILL. Two kinds of trial turn it into an exit through their ``finally`` blocks,
through :func:`on_sigterm`: ``gpusweep.trial.session()`` (it raises ``Terminated``) and, for
an unmodified W&B script, the bootstrap (``sys.exit(143)``, so wandb finishes the run).
:class:`SigtermHeld` holds a SIGTERM over a short step that it must not abort (starting the
W&B run) and delivers it again after. Imported when first needed, not at start-up.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

if __package__:  # gpusweep.bootstrap._gpusweep_signals: the trial API, tests
    from gpusweep.bootstrap import _gpusweep_contract as contract
else:  # top-level, beside the bootstrap on the trial's PYTHONPATH
    import _gpusweep_contract as contract

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing in a trial
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def on_sigterm(action: Callable[[int], Any], *, unless_handled: bool = False) -> Any:
    """Make SIGTERM call ``action(signum)`` (which raises, to unwind), once: later SIGTERMs
    are ignored, so a second one never cuts the first one's cleanup short. Before the action,
    a preempted trial's W&B run is marked preempting (:func:`mark_preempting_if_asked`).

    Returns the handler it replaced, or None where it installed nothing: outside the main
    thread (Python runs handlers there only), or with ``unless_handled`` when the program has
    its own handler already (a script's own handler wins).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if unless_handled and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the unwinding finish
        mark_preempting_if_asked()
        action(signum)

    return signal.signal(signal.SIGTERM, handler)


def restore_sigterm(previous: Any) -> None:
    """Put back the SIGTERM handler that :func:`on_sigterm` replaced (it returned it); a
    no-op for None, where it installed nothing."""
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


class SigtermHeld:
    """Hold SIGTERM while the block runs; deliver it again once the block is done, to the
    handler that was there before, so the stop is late by the block only. A no-op outside
    the main thread (no handler can be installed there)."""

    def __init__(self) -> None:
        self._held: list[int] = []
        self._previous: Any = None
        self._active = False

    def __enter__(self) -> SigtermHeld:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM,
                                           lambda signum, frame: self._held.append(signum))
            self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._active:
            return
        self._active = False
        signal.signal(signal.SIGTERM, self._previous)
        if self._held:
            signal.raise_signal(signal.SIGTERM)


def mark_preempting_if_asked() -> None:
    """Before a preempted trial exits (the orchestrator left ``<trial-dir>/preempt``), mark
    its W&B run preempting, so the server hands the run out again. Only when the trial has
    imported wandb; never raises."""
    directory = os.environ.get(contract.TRIAL_DIR_ENV)
    wandb = sys.modules.get("wandb")
    if not directory or wandb is None:
        return
    if not os.path.exists(os.path.join(directory, contract.PREEMPT_MARKER)):
        return
    try:
        run = wandb.run
        if run is not None:
            run.mark_preempting()
    except Exception:
        pass
