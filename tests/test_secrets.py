"""Secrets reach the trial (W&B needs its key) but nothing we write contains them."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, program, wait_for_summary

pytestmark = pytest.mark.slow

PLANTED = {
    "WANDB_API_KEY": ("plantedwandbkey" + "0123456789abcdef" * 3)[:40],  # the length W&B wants
    "MY_SERVICE_TOKEN": "planted-token-7f3a9c",
    "DB_PASSWORD": "planted-password-51e0",
    "SOME_SECRET": "planted-secret-c0ffee",
}


def test_planted_secrets_are_never_written_under_the_log_dir(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "secrets", "program": program("secret_user.py"), "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "command": ["${env}", "${interpreter}", "${program}", "${args}",
                    "--token=${envvar:MY_SERVICE_TOKEN}"],
        "parameters": {"x": {"values": [1, 2, 3]}},
    }))
    log_dir = tmp_path / "log"
    env = dict(os.environ, WANDB_MODE="offline", **PLANTED)
    env.pop("WANDB_SWEEP_ID", None)
    proc = subprocess.run([sys.executable, "tools/sweep.py", "--sweep-config", str(sweep_file),
                           "--log-dir", str(log_dir)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = log_dir.iterdir()
    assert wait_for_summary(sweep_dir)["state"] == "written"  # its files are searched too
    record = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    # the secrets reached the trials: they exit 3 otherwise
    assert [row["status"] for row in record["trials"]] == ["finished", "finished", "failed"]
    failed = record["trials"][2]["run"]
    (error,) = [line for line in (sweep_dir / failed / "events.jsonl").read_text().splitlines()
                if '"kind": "error"' in line]
    assert "service rejected token ***" in error
    assert "RuntimeError: service rejected token ***" in (sweep_dir / failed / "output.log"
                                                          ).read_text()
    assert (sweep_dir / "wandb").is_dir(), "the W&B runs were written (and searched)"
    files = [p for p in log_dir.rglob("*") if p.is_file()]
    assert len(files) > 20
    for secret in PLANTED.values():
        assert secret not in proc.stdout and secret not in proc.stderr
        leaks = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert leaks == [], f"{secret} written to {leaks}"
    memory = yaml.safe_load((sweep_dir / record["trials"][0]["run"] / "memory.yaml")
                           .read_text())
    assert memory["command"][-1] == "--token=***"
