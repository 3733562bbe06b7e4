"""``tools/sweep.py sync``: an offline sweep onto W&B, against a FAKE W&B server (the real
``wandb sync`` and ``wandb.sweep`` talk to it through the real wandb-core)."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, program, wait_for_summary
from fake_wandb_server import FakeWandbServer

pytestmark = pytest.mark.slow
STALE_SERVICE = "3-999999-unix-/tmp/wandb-999999-gone/socket"  # a service long gone


def test_sync_uploads_every_run_and_gives_them_a_stopped_sweep(tmp_path, write_sweep):
    sweep_file = write_sweep({
        "name": "tosync", "program": program("quadratic.py"), "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"}, "project": "offline-proj",
        "parameters": {"x": {"values": [1, 3]}, "epochs": {"value": 2}},
        "isolation": {"stop": {"grace_s": 2}}})
    env = dict(os.environ, WANDB_MODE="offline")
    for name in ("WANDB_PROJECT", "WANDB_SWEEP_ID", "WANDB_ENTITY"):
        env.pop(name, None)
    swept = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
                            "--log-dir", str(tmp_path / "log"), "--quiet"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert swept.returncode == 0, swept.stderr
    (sweep_dir,) = (tmp_path / "log").iterdir()
    summary = wait_for_summary(sweep_dir)["run"]
    trials = [row["run"] for row in
              yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["trials"]]

    dry = subprocess.run([sys.executable, "tools/sweep.py", "sync", str(sweep_dir),
                          "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0, dry.stderr
    steps = dry.stdout.splitlines()
    assert steps[0].startswith("1. ") and " sync " in steps[0] and "offline-proj" in steps[0]
    assert all(f"-{run}" in steps[0] for run in trials + [summary])
    assert steps[1].startswith("2. wandb.sweep(") and str(sorted(trials)) in steps[1]
    assert steps[2].startswith("3. stop")

    server = FakeWandbServer(entity="team").start()
    try:
        # from a shell or job that holds a dead wandb service's token: wandb sync's own
        # ensure_service() would connect to it and fail
        env = dict(server.env(tmp_path / "home"), WANDB_SERVICE=STALE_SERVICE)
        # cwd: wandb sync writes its debug log into ./wandb/ (in the checkout, ruff would
        # take it for a first-party package)
        real = subprocess.run([sys.executable, str(ROOT / "tools" / "sweep.py"), "sync",
                               str(sweep_dir)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert real.returncode == 0, real.stdout + real.stderr
        assert set(server.uploaded) == set(trials) | {summary}  # every run, by its own id
        for run in trials:
            assert server.uploaded[run].project == "offline-proj"
            posts = server.file_stream[run]
            assert any(post.get("complete") and post.get("exitcode") == 0 for post in posts)
        (sweep,) = server.sweeps.values()
        assert sweep.state == "FINISHED" and sweep.project == "offline-proj"
        assert sweep.prior_runs_filters == {"$or": [{"name": r} for r in sorted(trials)]}
        assert "isolation" not in sweep.config and sweep.config["method"] == "grid"
        assert f"sweep {sweep.name} in team/offline-proj" in real.stdout or \
            f"sweep {sweep.name} in offline-proj" in real.stdout
    finally:
        server.close()


def test_sync_of_a_directory_that_is_not_a_sweep_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "tools/sweep.py", "sync", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not a sweep directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(f"error: {tmp_path}: sync: ")  # the command it ran, not report
