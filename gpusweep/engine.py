"""Importing W&B's engine (``sweeps``): only the search a sweep uses, scipy.stats on first use.

``import sweeps`` and its parameter module pull in scipy.stats (about half a second), which
only sampling needs: validating a sweep and grid search never sample. ``sweeps.next_run``
imports Bayesian search, scikit-learn included (a third of a second), whatever the method.
So the engine is imported when it is first asked, scipy.stats is a module that loads on first
use, and the search is the one function ``next_run`` would call. Random sweeps sample through
:mod:`gpusweep.lightstats` (the same values without scipy.stats); bayes sweeps pay for
scipy.stats and scikit-learn.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

SEARCHES = {  # method -> (module, function) in sweeps, as sweeps/run.py's next_runs picks them
    "grid": ("sweeps.grid_search", "grid_search_next_runs"),
    "random": ("sweeps.random_search", "random_search_next_runs"),
    "bayes": ("sweeps.bayes_search", "bayes_search_next_runs"),
}
DEFERRED = ("scipy.stats",)
# jsonref (sweeps' schema loader) imports requests, if it can, only to fetch http(s) $refs,
# which sweeps' own schema never has; requests and urllib3 cost about 40 ms at start-up.
# Without it jsonref reads such refs with urllib instead (jsonref.py, ``jsonloader``).
NOT_FOR_THE_SCHEMA = ("requests",)


def package() -> Any:
    """The ``sweeps`` package (schema, run model, Hyperband), scipy.stats deferred."""
    for name in DEFERRED:
        defer_import(name)
    blocked = [name for name in NOT_FOR_THE_SCHEMA if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # ``import name`` fails here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sweeps' pydantic model warns about v1 keys
            import sweeps
    finally:
        for name in blocked:  # whoever imports it later (wandb) gets the real module
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
    return sweeps


def search(method: str) -> Callable[[dict[str, Any], list[Any]], list[Any]]:
    """``(config, runs) -> [suggested run or None]``: what ``sweeps.next_run(config, runs)``
    computes (``next_runs`` with ``validate=False, n=1``), importing only this method's
    search."""
    if method not in SEARCHES:
        raise ValueError(f"unknown search method {method!r}")
    package()
    if method == "bayes":  # scikit-learn imports scipy.stats' parts
        load_deferred()
    _sample_with(method)
    module, name = SEARCHES[method]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        function = getattr(importlib.import_module(module), name)
    if method == "random":  # the only one that takes no run list
        return lambda config, runs: function(config, validate=False, n=1)
    return lambda config, runs: function(runs, config, validate=False, n=1)


def _sample_with(method: str) -> None:
    """The ``stats`` that sweeps' params sample with: ours for random search, scipy.stats for
    the rest (Bayesian search asks for more than ppf)."""
    params = importlib.import_module("sweeps.params")
    if method == "random":
        from gpusweep import lightstats

        params.stats = lightstats
    elif getattr(params.stats, "__name__", "") != "scipy.stats":
        params.stats = importlib.import_module("scipy.stats")


def defer_import(name: str) -> None:
    """Make ``import name`` give a stand-in that imports the real module when one of its
    attributes is first asked for (``name.attr``, ``from name import attr``).

    Not ``importlib.util.LazyLoader``: before Python 3.12 an ``import name`` statement
    reads the module's ``__spec__``, which makes LazyLoader load it at once. A direct import
    of a submodule (``import name.sub``) while the stand-in is in place would load ``sub``
    twice, so whoever may do that calls :func:`load_deferred` first. Nothing happens if
    ``name`` is already imported or not installed.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)  # imports the parent package, not the module
    if spec is None:
        return
    stand_in = _Deferred(name)
    stand_in.__spec__ = spec
    stand_in.__loader__ = spec.loader
    sys.modules[name] = stand_in
    parent, _, child = name.rpartition(".")
    if parent:  # what the import system does once a submodule is imported
        setattr(sys.modules[parent], child, stand_in)


def load_deferred() -> None:
    """Import every deferred module now (before code that imports their submodules)."""
    for name in DEFERRED:
        module = sys.modules.get(name)
        if isinstance(module, _Deferred):
            module.load()


class _Deferred(types.ModuleType):
    """A module not imported yet (see :func:`defer_import`)."""

    def load(self) -> types.ModuleType:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)  # holders of the stand-in now see the module
        return real

    def __getattr__(self, attr: str) -> Any:  # only called for what the stand-in lacks
        return getattr(self.load(), attr)


class HeapFreezer:
    """Keeps modules imported after the runner froze its heap out of each ``gc.collect()``.

    The runner calls ``gc.freeze()`` after its imports, so that the cleanup's collection
    after every trial skips a million long-lived objects (178 ms a trial otherwise); what the
    engine imports later (scipy.stats at a random sweep's first proposal) is frozen too,
    once, right after the call that imported it. Nothing is frozen if the caller did not
    freeze.
    """

    def __init__(self) -> None:
        self._modules = len(sys.modules)

    def after_call(self) -> None:
        if len(sys.modules) != self._modules and gc.get_freeze_count():
            gc.freeze()
        self._modules = len(sys.modules)
