"""Importing W&B's engine lazily: the same proposals as ``sweeps.next_run``, fewer imports."""

import gc
import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.stats
from conftest import ROOT, program

import sweeps
from gpusweep import engine

CONFIGS = {
    "grid": {"method": "grid", "parameters": {
        "x": {"values": [1, 2, 3]}, "y": {"min": 1, "max": 3}, "z": {"value": "c"},
        "n": {"parameters": {"a": {"values": [0.5, 1.5]}}}}},
    "random": {"method": "random", "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
        "x": {"values": [1, 2, 3]}, "u": {"min": 0.0, "max": 1.0}, "k": {"min": 1, "max": 9},
        "q": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
        "g": {"distribution": "normal", "mu": 0, "sigma": 1},
        "n": {"parameters": {"a": {"values": ["p", "q"]}}}}},
    "bayes": {"method": "bayes", "metric": {"name": "loss", "goal": "minimize"}, "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
        "x": {"values": [1, 2, 3]}, "k": {"min": 1, "max": 9}}},
}


def seeded(value):
    random.seed(value)
    np.random.seed(value)


@pytest.mark.filterwarnings("ignore::UserWarning")  # bayes: scikit-learn's ConvergenceWarning
@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_search_proposes_what_next_run_proposes(method):
    """Eight proposals in a row, each run then finished with a loss, from the same seeds."""
    config = CONFIGS[method]
    ours, theirs = [], []
    for proposals, propose in ((ours, engine.search(method)),
                               (theirs, lambda c, runs: [sweeps.next_run(c, runs)])):
        if proposals is theirs:  # sweeps sampling with scipy.stats itself, not ours
            sweeps.params.stats = scipy.stats
        runs = []
        for i in range(8):
            seeded(i)
            suggestion = propose(config, runs)[0]
            if suggestion is None:
                break
            proposals.append(suggestion.config)
            run = sweeps.SweepRun(name=f"r{i}", state="finished", config=suggestion.config)
            run.history = [{"loss": float(i % 3)}]
            run.summary_metrics = {"loss": float(i % 3)}
            runs.append(run)
    assert len(ours) >= 6 and ours == theirs


def test_an_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown search method"):
        engine.search("custom")


def modules_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; what it left imported, and how scipy.stats is."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json, sys
        stats = sys.modules.get("scipy.stats")
        print(json.dumps({
            "wandb": "wandb" in sys.modules, "sklearn": "sklearn" in sys.modules,
            "torch": "torch" in sys.modules,
            "scipy.stats": None if stats is None else type(stats).__name__,
            "stats_py": "scipy.stats._stats_py" in sys.modules}))
        """)
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sweep_file(tmp_path, method):
    config = dict(CONFIGS[method], program=program("quadratic.py"), run_cap=2,
                  early_terminate={"type": "hyperband", "min_iter": 1},
                  metric={"name": "loss", "goal": "minimize"})
    path = tmp_path / f"{method}.yaml"
    path.write_text(json.dumps(config))
    return path


def test_a_grid_sweep_never_loads_scipy_stats_scikit_learn_or_wandb(tmp_path):
    """Validation, every proposal, Hyperband and the records of a real sweep."""
    path = sweep_file(tmp_path, "grid")
    found = modules_after(f"""
        import os
        os.environ["WANDB_MODE"] = "disabled"
        from gpusweep.cli import main
        assert main(["--sweep-config", {str(path)!r}, "--log-dir", {str(tmp_path)!r},
                     "--quiet", "--count", "2"]) == 0
        """)
    assert found == {"wandb": False, "sklearn": False, "torch": False,
                     "scipy.stats": "_Deferred", "stats_py": False}


def test_random_samples_without_scipy_stats_or_scikit_learn(tmp_path):
    """A random sweep (a normal param among them) runs two trials: scipy.stats never loads."""
    found = modules_after(f"""
        import os
        os.environ["WANDB_MODE"] = "disabled"
        from gpusweep.cli import main
        assert main(["--sweep-config", {str(sweep_file(tmp_path, "random"))!r},
                     "--log-dir", {str(tmp_path)!r}, "--quiet", "--count", "2"]) == 0
        """)
    assert found == {"wandb": False, "sklearn": False, "torch": False,
                     "scipy.stats": "_Deferred", "stats_py": False}


def test_the_engine_leaves_requests_to_whoever_needs_it(tmp_path):
    """Validation and proposals never import requests (jsonref would, for remote refs that
    sweeps' schema does not have); a later ``import requests`` (wandb's) still works."""
    script = textwrap.dedent(f"""
        import sys
        from gpusweep.config import load_sweep
        from gpusweep.controller import Controller
        spec = load_sweep({str(sweep_file(tmp_path, "random"))!r})
        assert Controller(spec, seed="s").propose([]) is not None
        assert "requests" not in sys.modules, "the engine imported requests"
        import jsonref
        assert jsonref.requests is None
        import requests
        assert callable(requests.get)
        """)
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_bayes_dry_run_still_works(tmp_path):
    found = modules_after(f"""
        from gpusweep.cli import main
        assert main(["--sweep-config", {str(sweep_file(tmp_path, "bayes"))!r},
                     "--dry-run"]) == 0
        """)
    assert found["sklearn"] and found["scipy.stats"] == "module" and not found["wandb"]


def test_a_deferred_module_loads_on_first_use_and_is_the_real_one(tmp_path):
    """On a package of our own: its code runs once, at the first attribute asked for."""
    package = tmp_path / "deferpkg"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text(
        "import deferpkg.counter as c\nc.runs += 1\nfrom deferpkg.inner.sub import value\n")
    (package / "inner" / "sub.py").write_text("import deferpkg.counter as c\nc.subs += 1\n"
                                              "value = 42\n")
    (package / "counter.py").write_text("runs = 0\nsubs = 0\n")
    found = modules_after(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from gpusweep import engine
        import deferpkg.counter as counter
        engine.defer_import("deferpkg.inner")
        import deferpkg.inner as early
        from deferpkg import inner
        assert (counter.runs, counter.subs) == (0, 0), "loaded before use"
        assert early is inner and repr(inner)
        assert inner.value == 42 and (counter.runs, counter.subs) == (1, 1)
        from deferpkg.inner import value
        assert value == 42 and early.value == 42
        assert sys.modules["deferpkg.inner"] is not early  # the real module took its place
        import deferpkg.inner.sub
        assert (counter.runs, counter.subs) == (1, 1), "loaded twice"
        engine.defer_import("deferpkg.inner")  # already imported: nothing happens
        assert type(sys.modules["deferpkg.inner"]).__name__ == "module"
        engine.defer_import("no_such_module_here")
        assert "no_such_module_here" not in sys.modules
        """)
    assert not found["wandb"]


def test_load_deferred_loads_scipy_stats_before_its_submodules_are_imported():
    found = modules_after("""
        import sys
        from gpusweep import engine
        engine.package()
        assert type(sys.modules["scipy.stats"]).__name__ == "_Deferred"
        engine.load_deferred()
        import scipy.stats._continuous_distns as distns
        import sweeps.params
        assert sweeps.params.stats.norm is distns.norm  # one copy of each module
        """)
    assert found["scipy.stats"] == "module"


def test_the_heap_freezer_freezes_only_what_a_frozen_caller_imported_later(tmp_path):
    (tmp_path / "freshly_imported_mod.py").write_text("data = [[i] for i in range(1000)]\n")
    sys.path.insert(0, str(tmp_path))
    freezer = engine.HeapFreezer()
    try:
        freezer.after_call()
        assert gc.get_freeze_count() == 0, "froze a heap the caller never froze"
        gc.freeze()
        frozen = gc.get_freeze_count()
        garbage = [[i] for i in range(1000)]
        freezer.after_call()  # nothing imported since: nothing more frozen
        assert gc.get_freeze_count() == frozen
        import freshly_imported_mod  # noqa: F401
        freezer.after_call()
        assert gc.get_freeze_count() >= frozen + 1000
        del garbage
    finally:
        gc.unfreeze()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("freshly_imported_mod", None)
