"""W&B's own search and early-stopping engine (``sweeps``), driven from our run list.

``sweeps.next_run`` and ``sweeps.stop_runs`` are stateless: all state is the list of runs,
which we rebuild from our trial records each time. So a resumed sweep continues exactly where
it left off, and Hyperband sees the same history the trials reported.

The engine is imported when it is first asked, and only the search the sweep uses
(:mod:`gpusweep.engine`).
"""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gpusweep import engine
from gpusweep.config import SweepSpec
from gpusweep.status import EngineState

if TYPE_CHECKING:
    import sweeps


@dataclass
class RunView:
    """What the engine needs to know about one trial."""

    name: str
    params: dict[str, Any]
    state: EngineState  # its string value is taken too, and checked
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per report

    def __post_init__(self) -> None:
        self.state = EngineState(self.state)


def to_python(value: Any) -> Any:
    """numpy scalars and arrays (which the engine proposes) to plain Python values."""
    import numpy as np

    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def engine_run(view: RunView) -> sweeps.SweepRun:
    """A ``sweeps.SweepRun`` from our view of a trial.

    The history is assigned after construction on purpose: older ``sweeps`` releases (pydantic
    v2 with aliases) silently dropped ``history=`` given to the constructor.
    """
    run = engine.package().SweepRun(
        name=view.name,
        state=view.state.value,
        config={k: {"value": v} for k, v in view.params.items()},
    )
    run.history = list(view.history)
    run.summary_metrics = dict(view.history[-1]) if view.history else {}
    return run


class Controller:
    """Asks the engine for the next params and for the runs Hyperband should stop."""

    def __init__(self, spec: SweepSpec, seed: str) -> None:
        self._config = spec.engine
        self._seed = seed
        self._early = spec.early_terminate is not None
        self._method = spec.method
        self._ended: dict[str, sweeps.SweepRun] = {}  # ended trials never change: build once
        self._search: Callable[..., list[sweeps.SweepRun | None]] | None = None
        self._freezer = engine.HeapFreezer()

    def _engine_runs(self, runs: list[RunView]) -> list[sweeps.SweepRun]:
        result = []
        for view in runs:
            if view.state in (EngineState.RUNNING, EngineState.PENDING):
                result.append(engine_run(view))
                continue
            cached = self._ended.get(view.name)
            if cached is None or cached.state != view.state:
                cached = self._ended[view.name] = engine_run(view)
            result.append(cached)
        return result

    def propose(self, runs: list[RunView]) -> dict[str, Any] | None:
        """The next trial's params (plain Python values), or None when the grid is done."""
        self._reseed(len(runs))
        engine_runs = [] if self._method == "random" else self._engine_runs(runs)  # random: unread
        if self._search is None:
            self._search = engine.search(self._method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            suggestion = self._search(self._config, engine_runs)[0]
        self._freezer.after_call()
        if suggestion is None:
            return None
        params = {k: to_python(v["value"]) for k, v in suggestion.config.items()}
        if self._method == "grid" and any(r.params == params for r in runs):
            return None  # guard: an engine that re-proposes a seen point means the grid is done
        return params

    def to_stop(self, runs: list[RunView]) -> list[str]:
        """Names of running trials that Hyperband says to stop now."""
        if not self._early or not any(r.state is EngineState.RUNNING for r in runs):
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stopped = engine.package().stop_runs(self._config, self._engine_runs(runs))
        return [run.name for run in stopped]

    def _reseed(self, n_runs: int) -> None:
        """Random and bayes draw from global RNGs: seed them from the sweep id and run count,
        so a sweep (and its resume) proposes the same sequence every time."""
        digest = hashlib.sha256(f"{self._seed}:{n_runs}".encode()).digest()
        value = int.from_bytes(digest[:4], "little")
        import numpy as np

        random.seed(value)
        np.random.seed(value)
