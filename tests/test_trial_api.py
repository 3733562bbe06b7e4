"""The trial side: events written by report(), errors, SIGTERM inside session()."""

import json
import os
import signal
import subprocess
import sys
import textwrap

from conftest import ROOT

from gpusweep import trial
from gpusweep.cleanup import end_tree


def test_report_appends_one_json_line_per_call(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(trial.EVENTS_ENV, str(events))
    trial.report(step=0, loss=1.5)
    trial.report(step=1, loss=1.25, note="x")
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["step"] for e in lines] == [0, 1]
    assert lines[1]["metrics"] == {"loss": 1.25, "note": "x"}
    assert lines[0]["memory"]["rss_mb"] > 0


def test_report_without_orchestrator_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.delenv(trial.EVENTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    trial.report(step=0, loss=1.0)  # must not raise
    assert list(tmp_path.iterdir()) == []  # nor write an events file of its own


def test_numpy_scalars_become_plain_numbers(tmp_path, monkeypatch):
    import numpy as np

    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(trial.EVENTS_ENV, str(events))
    trial.report(step=np.int64(3), loss=np.float32(0.5))
    event = json.loads(events.read_text())
    assert event["step"] == 3 and event["metrics"]["loss"] == 0.5


def test_params_reads_wandb_param_file(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("wandb_version: 1\n\nlr:\n  value: 0.01\nlayers:\n  value: 2\n")
    monkeypatch.setenv(trial.PARAM_PATH_ENV, str(path))
    assert trial.params() == {"lr": 0.01, "layers": 2}


def test_importing_the_trial_api_imports_neither_torch_nor_wandb():
    code = "import sys, gpusweep.trial; print('torch' in sys.modules, 'wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_sigterm_inside_session_runs_the_finally_and_reports(tmp_path):
    events = tmp_path / "events.jsonl"
    marker = tmp_path / "finally-ran"
    program = textwrap.dedent(f"""
        import time
        from gpusweep import trial
        try:
            with trial.session():
                trial.report(step=0, loss=1.0)
                print("ready", flush=True)
                time.sleep(30)
        finally:
            open({str(marker)!r}, "w").write("yes")
    """)
    env = dict(os.environ, GPUSWEEP_EVENTS=str(events))
    proc = subprocess.Popen([sys.executable, "-c", program], env=env, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.terminate()
    assert proc.wait(timeout=10) == 143
    assert marker.read_text() == "yes"


def test_an_exception_in_session_is_reported_with_its_type(tmp_path):
    events = tmp_path / "events.jsonl"
    program = textwrap.dedent("""
        from gpusweep import trial
        class OutOfMemoryError(RuntimeError):
            pass
        with trial.session():
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 MiB")
    """)
    env = dict(os.environ, GPUSWEEP_EVENTS=str(events))
    proc = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                          timeout=60)
    assert proc.returncode == 1
    error = json.loads(events.read_text().splitlines()[-1])
    assert error["kind"] == "error" and error["type"] == "OutOfMemoryError"
    assert "Tried to allocate" in error["message"]


SLOW_FINALLY = textwrap.dedent("""
    import sys, time
    from gpusweep import trial
    with trial.session():
        try:
            print("ready", flush=True)  # inside the try: a SIGTERM now must reach the finally
            time.sleep(30)
        finally:
            time.sleep(0.5)  # a cleanup that takes a while, like run.finish()
            open(sys.argv[1], "w").write("done")
""")


def test_the_trial_cleanup_is_not_cut_short_by_a_second_sigterm(tmp_path):
    """Only a second SIGTERM may cut the cleanup short here, never the grace period running
    out: the grace is far longer than the cleanup takes even on a loaded machine (a fixed
    5 s once let SIGKILL end a starved trial before its finally), and end_tree returns as
    soon as the tree is gone, so a long grace costs nothing."""
    for attempt in range(5):
        marker = tmp_path / f"done-{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", SLOW_FINALLY, str(marker)],
                                start_new_session=True, stdout=subprocess.PIPE, text=True,
                                cwd=ROOT)
        try:
            assert proc.stdout.readline().strip() == "ready"
            result = end_tree(proc.pid, None, (), grace_s=120)
            returncode = proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.stdout.close()
        assert marker.exists(), f"cleanup interrupted on attempt {attempt}"
        assert result.processes_killed == 1
        assert returncode == 128 + signal.SIGTERM  # it left on the SIGTERM, not a SIGKILL
