"""gpusweep's start-up hook inside every trial process (stdlib only, fail-safe).

The launcher puts this directory first on the trial's ``PYTHONPATH``, so Python imports this
module at start-up (``site`` imports ``sitecustomize``). It must cost nothing when the trial
never imports wandb, and it must never break a trial: every step is wrapped, and a failure
only means that step is skipped.

What it does, one small function each, all called from :func:`install`:

- :func:`chain_shadowed_sitecustomize`: runs the ``sitecustomize`` that ours shadows (a
  distribution's or one on the user's ``PYTHONPATH``), so the environment is set up as usual.
- :func:`install_diagnostics`: every thread's stack on SIGUSR1 (faulthandler), so a stalled
  trial's stacks reach its output.log before it is stopped, and with ``--profile-leaks``
  tracemalloc from the first line (both in ``_gpusweep_child``, shared with the trial API).
- :func:`watch_wandb_import`: when (and only when) the trial imports ``wandb``, wraps
  ``Run.log`` so that each ``wandb.log()`` also appends a report event to
  ``GPUSWEEP_EVENTS``, in the format ``gpusweep.trial.report`` writes. That is how an
  unmodified W&B script's metrics reach the orchestrator (Hyperband included) and how its
  memory is recorded. ``wandb.init`` is wrapped so that secret values in ``sys.argv`` never
  reach the run's metadata, and SIGTERM becomes ``SystemExit`` so a stopped script's run is
  finished and written rather than lost.

``wandb.log`` is rebound to ``run.log`` at ``wandb.init``, so the class method is patched,
not the module function. The wrapper keeps the original as ``_gpusweep_original`` so that
``gpusweep.trial`` (which writes its own events) can log to W&B without a second event.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:  # no typing work at trial start-up
    from collections.abc import Callable
    from typing import Any


def _sibling(name: str) -> Any:
    """A module of this directory: top-level inside a trial (the directory is first on its
    ``PYTHONPATH``), from the ``gpusweep.bootstrap`` package where that imported us."""
    return __import__(f"{__package__}.{name}" if __package__ else name, fromlist=["_"])


_child = _sibling("_gpusweep_child")  # the runtime shared with gpusweep.trial
contract = _sibling("_gpusweep_contract")  # the names the orchestrator agrees on
EVENTS_ENV = contract.EVENTS_ENV
ORIGINAL_ATTR = _child.ORIGINAL_ATTR
_HERE = os.path.dirname(os.path.abspath(__file__))


def install() -> None:
    """Every start-up step, each on its own: one failing never stops the others.

    A new step (a stack dump on a signal with faulthandler, tracemalloc) is one more small
    function here, added to this tuple; keep each cheap when its feature is not asked for.
    """
    for step in (chain_shadowed_sitecustomize, install_diagnostics, watch_wandb_import):
        try:
            step()
        except Exception:  # a bootstrap must never break the trial
            pass


# -- stack dumps and leak profiles -------------------------------------------------------
def install_diagnostics() -> None:
    """Stack dumps on SIGUSR1 and, when asked, tracemalloc: for any Python trial."""
    if not os.environ.get(EVENTS_ENV):
        return
    _child.install_stack_dump()
    _child.start_leak_profile()


# -- the sitecustomize we shadow ---------------------------------------------------------
def chain_shadowed_sitecustomize() -> None:
    """Run the next ``sitecustomize`` on ``sys.path`` after ours, if there is one."""
    import importlib.machinery  # already loaded by the interpreter: no cost

    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = type(sys)(spec.name)  # importlib.util.module_from_spec, without importing it
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    spec.loader.exec_module(module)
    globals()["shadowed"] = module  # keep it alive, as site would


# -- wandb -------------------------------------------------------------------------------
class _WandbImportHook:
    """A meta-path finder that patches wandb right after its first import, then leaves.

    Its ``find_spec`` returns at once for every other module name, so it costs one string
    comparison per import.
    """

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname != "wandb":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader:
    """Runs wandb's own loader, then patches the module (errors in patching are ignored)."""

    def __init__(self, loader: object) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)

    def create_module(self, spec: object) -> object:
        return self._loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        self._loader.exec_module(module)
        _remove_hook()
        try:  # from now on wandb's module shows its own loader, not this wrapper
            module.__loader__ = module.__spec__.loader = self._loader  # type: ignore[attr-defined]
        except Exception:
            pass
        try:
            patch_wandb(module)
        except Exception:
            pass


def watch_wandb_import() -> None:
    """Patch wandb when the trial imports it (now, if it already has); only in a trial."""
    if not os.environ.get(EVENTS_ENV):
        return
    if "wandb" in sys.modules:
        patch_wandb(sys.modules["wandb"])
    else:
        sys.meta_path.insert(0, _WandbImportHook())


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _WandbImportHook)]


def patch_wandb(wandb: object) -> None:
    """Wrap ``Run.log`` (and the disabled mode's ``NoopRun.log``) and ``wandb.init``."""
    run_classes = [wandb.sdk.wandb_run.Run]  # type: ignore[attr-defined]
    try:
        from wandb.sdk.lib.noop_run import NoopRun  # WANDB_MODE=disabled

        run_classes.append(NoopRun)
    except Exception:
        pass
    for cls in run_classes:
        if "log" in vars(cls) and not hasattr(vars(cls)["log"], ORIGINAL_ATTR):
            cls.log = _wrap_log(vars(cls)["log"])
    run_class = wandb.sdk.wandb_run.Run  # type: ignore[attr-defined]
    marking = vars(run_class).get("mark_preempting")
    if marking is not None and not hasattr(marking, ORIGINAL_ATTR):
        run_class.mark_preempting = _wrap_mark_preempting(marking)
    init = wandb.init  # type: ignore[attr-defined]
    if not hasattr(init, ORIGINAL_ATTR):
        wandb.init = _wrap_init(init)  # type: ignore[attr-defined]
    try:
        exit_on_sigterm()
    except Exception:
        pass


def exit_on_sigterm() -> None:
    """Make SIGTERM (the orchestrator's polite stop) exit with 143, so the script unwinds and
    wandb finishes its run at exit with that exit code; killed outright, the run's data is
    lost (wandb's service leaves with its parent without writing it). Only where SIGTERM
    still has its default action and only in the main thread: a script's own handler wins."""
    _sibling("_gpusweep_signals").on_sigterm(_sigterm_exit, unless_handled=True)


def _sigterm_exit(signum: int) -> None:
    # Through sys.exit, not a bare SystemExit: wandb's exit hook replaces sys.exit to learn
    # the exit code (wandb/sdk/lib/exit_hooks.py); raised directly, the run ends with 0 and
    # a stopped run looks finished in W&B.
    sys.exit(128 + signum)


def _wrap_mark_preempting(original: Callable) -> Callable:
    def mark_preempting(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            _write_event({"kind": "preempting"})
        except Exception:
            pass
        return original(self, *args, **kwargs)

    setattr(mark_preempting, ORIGINAL_ATTR, original)
    mark_preempting.__doc__ = original.__doc__
    return mark_preempting


def _report_run(run: Any) -> None:
    """Tell the orchestrator where this trial's W&B run lives (a framework may put it
    outside the sweep directory: Lightning's WandbLogger passes ``dir="."``)."""
    run_dir = getattr(run, "dir", None)
    if not isinstance(run_dir, str) or not run_dir:
        return
    _write_event({"kind": "wandb_run", "id": getattr(run, "id", None),
                  "dir": os.path.dirname(os.path.abspath(run_dir))})


def _disabled(run: Any) -> bool:
    """Whether ``run`` writes nothing (W&B's disabled mode). The run says so itself
    (``Run.disabled``): the program may have asked ``wandb.init(mode="offline")`` while the
    sweep ran with ``WANDB_MODE=disabled``, and that run is written all the same."""
    disabled = getattr(run, "disabled", None)
    if isinstance(disabled, bool):
        return disabled
    return os.environ.get("WANDB_MODE") == "disabled"


def _write_event(event: dict) -> None:
    if os.environ.get(EVENTS_ENV):
        _child.append_event(event)


def _standing_in(wrapper: Callable, original: Callable) -> Callable:
    """``wrapper`` with the original's name and docstring, and the original kept on it (as
    ``ORIGINAL_ATTR``) for ``gpusweep.trial``, which logs to W&B without a second event."""
    setattr(wrapper, ORIGINAL_ATTR, original)
    wrapper.__doc__ = original.__doc__
    wrapper.__name__ = getattr(original, "__name__", wrapper.__name__)
    return wrapper


def _wrap_log(original: Callable) -> Callable:
    def log(self: Any, data: Any, step: Any = None, commit: Any = None, *args: Any,
            **kwargs: Any) -> Any:
        memory = None
        implicit_step = getattr(self, "_local_step", None)
        try:
            # Reset the peaks only for a row that becomes a report event, so the records
            # (max over events) never miss a window.
            memory = _child.own_memory(
                reset=bool(os.environ.get(EVENTS_ENV)) and isinstance(data, dict)
                and bool(_child.numeric_metrics(data)))
            if isinstance(data, dict):
                data = {**_child.memory_metrics(memory), **data}
        except Exception:
            pass
        result = original(self, data, step, commit, *args, **kwargs)
        try:
            report(data, step if step is not None else implicit_step, memory)
        except Exception:
            pass
        return result

    return _standing_in(log, original)


def _wrap_init(original: Callable) -> Callable:
    def init(*args: Any, **kwargs: Any) -> Any:
        saved = sys.argv
        try:
            sys.argv = _sibling("_gpusweep_secrets").redacted(saved)
        except Exception:
            saved = None
        try:
            run = original(*args, **kwargs)
        finally:
            if saved is not None:
                sys.argv = saved
        try:
            if not _disabled(run):
                _report_run(run)
        except Exception:
            pass
        return run

    return _standing_in(init, original)


# -- the event ---------------------------------------------------------------------------
def report(data: object, step: object, memory: dict | None) -> None:
    """Append one report event (numeric metrics only) to the trial's events file."""
    metrics = _child.numeric_metrics(data) if isinstance(data, dict) else {}
    if not os.environ.get(EVENTS_ENV) or not metrics:
        return
    import time

    event = {"kind": "report", "t": time.time(), "step": _child.number(step),
             "metrics": metrics, "memory": memory if memory is not None else _child.own_memory()}
    _child.append_event(event)
    _child.leak_checkpoint()


if __name__ == "sitecustomize":
    install()
