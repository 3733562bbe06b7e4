"""The trial's W&B side: the bootstrap sitecustomize, the trial API's lazy run, the trial env."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from wandb_records import offline_runs, read_run

from gpusweep.bootstrap import _gpusweep_child as child
from gpusweep.bootstrap import _gpusweep_secrets as secrets
from gpusweep.bootstrap import sitecustomize as boot
from gpusweep.wb.env import BOOTSTRAP_DIR, add_trial_wandb_env, run_group, with_bootstrap


def run_python(code, tmp_path, **env):
    """Run ``code`` in a fresh interpreter with the bootstrap on PYTHONPATH, as a trial."""
    environ = dict(os.environ, GPUSWEEP_EVENTS=str(tmp_path / "events.jsonl"),
                   PYTHONPATH=with_bootstrap(env.pop("PYTHONPATH", None)))
    environ.pop("WANDB_SWEEP_ID", None)
    environ.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def events(tmp_path, kind="report"):
    """The events of one kind (the trial API also announces its stack-dump handler)."""
    path = tmp_path / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e.get("kind") == kind]


# -- pure pieces -------------------------------------------------------------------------
def test_numeric_metrics_keeps_finite_numbers_and_flattens():
    data = {"loss": np.float32(0.5), "acc": 1, "flag": True, "name": "x", "nan": float("nan"),
            "nested": {"a": 2.0, "b": "no"}, "memory/rss_mb": 3.0, "vector": np.ones(3)}
    assert child.numeric_metrics(data) == {"loss": 0.5, "acc": 1, "nested.a": 2.0}


def test_memory_metrics_names_only_what_was_measured():
    assert child.memory_metrics({"rss_mb": 10.04, "torch_peak_allocated_mb": None}) == {
        "memory/rss_mb": 10.0}
    assert child.memory_metrics({"rss_mb": 1.0, "torch_peak_allocated_mb": 2.0,
                                "torch_peak_reserved_mb": 3.0, "torch_allocated_mb": 4.0}) == {
        "memory/rss_mb": 1.0, "memory/gpu_allocated_mb": 2.0, "memory/gpu_reserved_mb": 3.0}


def test_redacted_masks_values_of_secret_named_variables(monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "hunter2hunter2")
    monkeypatch.setenv("HF_TOKEN", "tok-abcdef")
    assert secrets.redacted(["--key=hunter2hunter2", "x", "tok-abcdefg"]) == [
        "--key=***", "x", "***g"]


def test_the_contracts_names_are_spelled_in_its_module_only():
    """The GPUSWEEP_* names the launcher sets and the trial reads: one definition, in
    ``_gpusweep_contract``; every other module of gpusweep imports it (docstrings aside)."""
    import ast
    from pathlib import Path

    from gpusweep.bootstrap import _gpusweep_contract as contract

    names = {v for k, v in vars(contract).items() if k.endswith("_ENV")}
    package = Path(contract.__file__).parent.parent
    spelled = set()
    for path in package.rglob("*.py"):
        if path.name == "_gpusweep_contract.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docstrings:
                spelled |= {(path.name, name) for name in names if name in node.value}
    assert spelled == set()


def test_bootstrap_goes_first_on_pythonpath_and_keeps_the_rest():
    assert with_bootstrap(None) == BOOTSTRAP_DIR
    assert with_bootstrap("/a:/b") == f"{BOOTSTRAP_DIR}:/a:/b"
    assert with_bootstrap(f"/a:{BOOTSTRAP_DIR}") == f"{BOOTSTRAP_DIR}:/a"


def test_trial_env_drops_a_sweep_id_the_server_does_not_know():
    env = {"WANDB_SWEEP_ID": "stale123", "WANDB_TAGS": "mine"}
    add_trial_wandb_env(env, sweep_id="abcd1234", sweep_name="demo")
    assert "WANDB_SWEEP_ID" not in env and env["GPUSWEEP_SWEEP_ID"] == "abcd1234"
    assert env["WANDB_RUN_GROUP"] == "demo-abcd1234" and env["WANDB_TAGS"] == "mine"
    assert env["WANDB_JOB_TYPE"] == "trial" and env["PYTHONPATH"] == BOOTSTRAP_DIR
    cloud = {"WANDB_SWEEP_ID": "abcd1234"}  # cloud mode: the agent set the server's id
    add_trial_wandb_env(cloud, sweep_id="abcd1234", sweep_name=None)
    assert cloud["WANDB_SWEEP_ID"] == "abcd1234"
    assert run_group("abcd1234", None) == "sweep-abcd1234"


# -- the bootstrap in a real interpreter -----------------------------------------------------
def test_bootstrap_imports_nothing_at_start_up(tmp_path):
    code = "import sys; loaded = sorted(sys.modules); import json; print(json.dumps(loaded))"
    with_boot = set(json.loads(run_python(code, tmp_path).stdout))
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                           timeout=60)
    without = set(json.loads(plain.stdout))
    # the stack-dump handler (faulthandler and signal, in C), its small module and the
    # contract's names, only
    assert with_boot - without <= {"sitecustomize", "_gpusweep_child", "_gpusweep_contract",
                                   "faulthandler", "time", "signal"}


def test_bootstrap_runs_the_sitecustomize_it_shadows(tmp_path):
    other = tmp_path / "site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.OTHER_SITE = 'ran'\n")
    proc = run_python("import sys, builtins; print(builtins.OTHER_SITE, "
                      "type(sys.meta_path[0]).__name__)", tmp_path, PYTHONPATH=str(other))
    assert proc.stdout.split() == ["ran", "_WandbImportHook"], proc.stderr


def test_wandb_log_of_an_unmodified_script_becomes_report_events(tmp_path):
    code = """
        import wandb
        run = wandb.init(config={"lr": 0.1})
        for i in range(3):
            wandb.log({"loss": 1.0 / (i + 1), "media": "not a number", "deep": {"x": i}})
        wandb.log({"acc": 0.5}, step=10)
        wandb.log({"image_only": "x"})
        run.finish()
    """
    proc = run_python(code, tmp_path, WANDB_MODE="disabled")
    assert proc.returncode == 0, proc.stderr
    reports = events(tmp_path)
    assert [e["metrics"] for e in reports] == [
        {"loss": 1.0, "deep.x": 0}, {"loss": 0.5, "deep.x": 1},
        {"loss": pytest.approx(1 / 3), "deep.x": 2}, {"acc": 0.5}]
    assert {e["kind"] for e in reports} == {"report"} and reports[-1]["step"] == 10
    assert all(e["memory"]["rss_mb"] > 0 for e in reports)


@pytest.mark.slow
def test_a_run_the_script_makes_offline_is_reported_when_the_sweep_disabled_wandb(tmp_path):
    """WANDB_MODE=disabled is the sweep's default; a script's own mode="offline" still
    writes a run, and the orchestrator must learn where. A disabled run writes nothing."""
    code = """
        import wandb
        run = wandb.init(mode="offline", project="gpusweep-tests")
        wandb.log({"loss": 1.0})
        run.finish()
        wandb.init().finish()  # the environment's mode: disabled
    """
    proc = run_python(code, tmp_path, WANDB_MODE="disabled", WANDB_DIR=str(tmp_path),
                      WANDB_RUN_ID="offline1")
    assert proc.returncode == 0, proc.stderr
    assert [(e["id"], e["dir"]) for e in events(tmp_path, "wandb_run")] == [
        ("offline1", str(offline_runs(tmp_path)["offline1"]))]


def test_a_failing_bootstrap_never_breaks_the_trial(tmp_path):
    code = """
        import wandb
        run = wandb.init()
        wandb.log({"loss": 1.0})
        run.finish()
        print("done")
    """
    events_dir = tmp_path / "a-directory"
    events_dir.mkdir()  # appending to it fails: the event is lost, the script is not
    proc = run_python(code, tmp_path, WANDB_MODE="disabled", GPUSWEEP_EVENTS=str(events_dir))
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr


def test_sigterm_lets_a_wandb_script_unwind(tmp_path):
    marker = tmp_path / "finally"
    code = f"""
        import time, wandb
        run = wandb.init()
        try:
            print("ready", flush=True)
            time.sleep(30)
        finally:
            open({str(marker)!r}, "w").write("ran")
    """
    environ = dict(os.environ, GPUSWEEP_EVENTS=str(tmp_path / "e.jsonl"), WANDB_MODE="disabled",
                   PYTHONPATH=with_bootstrap(None))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert marker.read_text() == "ran"


# -- the trial API's own run ------------------------------------------------------------------
@pytest.mark.slow
def test_trial_api_starts_a_run_on_first_report_and_finishes_it(tmp_path):
    code = """
        from gpusweep import trial
        with trial.session():
            trial.report(step=0, loss=2.0)
            trial.report(step=1, loss=1.0)
    """
    params = tmp_path / "config.yaml"
    params.write_text("wandb_version: 1\n\nx:\n  value: 3\n")
    proc = run_python(code, tmp_path, WANDB_MODE="offline", WANDB_DIR=str(tmp_path),
                      WANDB_RUN_ID="trialrun1", WANDB_SWEEP_PARAM_PATH=str(params),
                      WANDB_RUN_GROUP="demo-sw1", WANDB_TAGS="sw1", WANDB_JOB_TYPE="trial",
                      WANDB_PROJECT="gpusweep-tests")
    assert proc.returncode == 0, proc.stderr
    assert [e["metrics"] for e in events(tmp_path)] == [{"loss": 2.0}, {"loss": 1.0}]
    run = read_run(offline_runs(tmp_path)["trialrun1"])
    assert run.config == {"x": 3} and run.exit_code == 0
    assert (run.group, run.tags, run.job_type) == ("demo-sw1", ["sw1"], "trial")
    assert [h["loss"] for h in run.history] == [2.0, 1.0]
    assert all(h["memory/rss_mb"] > 0 for h in run.history)
    assert run.summary["loss"] == 1.0


def test_trial_api_with_wandb_disabled_never_imports_wandb(tmp_path):
    code = """
        import sys
        from gpusweep import trial
        with trial.session():
            trial.report(step=0, loss=2.0)
        print("wandb" in sys.modules)
    """
    proc = run_python(code, tmp_path, WANDB_MODE="disabled")
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr
    assert len(events(tmp_path)) == 1


class FakeCudaTorch:
    """A fake ``torch`` at the CUDA boundary (no GPU here): peaks that a reset clears."""

    class cuda:  # noqa: N801 (torch's own name)
        peak = 0
        resets = 0

        @classmethod
        def is_initialized(cls):
            return True

        @classmethod
        def max_memory_allocated(cls):
            return cls.peak

        max_memory_reserved = max_memory_allocated

        @classmethod
        def memory_allocated(cls):
            return 0

        @classmethod
        def reset_peak_memory_stats(cls):
            cls.peak, cls.resets = 0, cls.resets + 1


def test_unmodified_script_peaks_are_since_the_previous_report(monkeypatch):
    """A report row resets torch's peaks, like trial.report; reading alone does not."""
    monkeypatch.setitem(sys.modules, "torch", FakeCudaTorch)
    FakeCudaTorch.cuda.peak = 5 * 1024 * 1024
    assert child.own_memory()["torch_peak_allocated_mb"] == 5.0
    assert child.own_memory(reset=True)["torch_peak_allocated_mb"] == 5.0
    assert child.own_memory()["torch_peak_allocated_mb"] == 0.0
    assert FakeCudaTorch.cuda.resets == 1


def test_wrapped_wandb_log_resets_the_peaks_only_for_a_report_row(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", FakeCudaTorch)
    monkeypatch.setenv("GPUSWEEP_EVENTS", str(tmp_path / "events.jsonl"))
    FakeCudaTorch.cuda.resets = 0
    log = boot._wrap_log(lambda self, data, step, commit: None)
    log(None, {"caption": "text only"})
    assert FakeCudaTorch.cuda.resets == 0  # no event written: its window stays open
    log(None, {"loss": 1.0})
    assert FakeCudaTorch.cuda.resets == 1
    assert len(events(tmp_path)) == 1
