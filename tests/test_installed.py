"""gpusweep installed from its wheel into a fresh venv, run from a directory outside the
checkout through the ``gpusweep`` command: a user's own W&B script and sweep YAML.

The wheel is built from this checkout; the venv is new (no system or .venv site-packages)
and gets the wheel and its dependencies from pip's configured registry (pip's cache makes
that a minute or so). torch is not among them: gpusweep never forces a torch build, and the
script here needs none. The records must match those of the same sweep run from the checkout
(``tools/sweep.py``): the bootstrap that captures ``wandb.log`` works installed too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""\
    import wandb

    run = wandb.init()
    for step in range(3):
        wandb.log({"loss": run.config.x / (step + 1)})
    run.finish()
    """)
SWEEP = {"program": "train.py", "method": "grid",
         "metric": {"name": "loss", "goal": "minimize"},
         "parameters": {"x": {"values": [1, 2]}}}
INSTALL_TIMEOUT_S = 900


def user_env(home: Path) -> dict[str, str]:
    """A user's shell: nothing of the checkout or of the tests' simulation on any path."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith(("GPUSWEEP_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), WANDB_MODE="offline", WANDB_SILENT="true")
    return env


def source_tree(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked, and new ones not ignored), copied:
    setuptools' build/ and egg-info stay out of the checkout, and no stale build/lib of an
    earlier build (a module since deleted) can reach the wheel."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, timeout=60)
    if listed.returncode != 0:  # not a git checkout (an unpacked archive): all but outputs
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "log", "wandb", "*.egg-info", "__pycache__"))
        return dest
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def project(tmp_path: Path, name: str) -> Path:
    where = tmp_path / name
    where.mkdir()
    (where / "train.py").write_text(SCRIPT)
    (where / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    return where


def run(argv: list, cwd: Path, env: dict[str, str], timeout: float = 300):
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv}: {proc.stdout}\n{proc.stderr}"
    return proc


def records(where: Path) -> tuple[dict, list[dict]]:
    [sweep_dir] = (where / "log").iterdir()
    sweep = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    memories = [yaml.safe_load((sweep_dir / row["run"] / "memory.yaml").read_text())
                for row in sweep["trials"]]
    return sweep, memories


def outcome(sweep: dict, memories: list[dict]) -> list[tuple]:
    """What must be the same however gpusweep was installed: per trial, in params order."""
    return sorted((m["params"]["x"], m["status"], m["metric"]["reports"], m["metric"]["last"],
                   tuple(sorted(m)), tuple(sorted(m["gpu"])))
                  for m in memories) + [tuple(sorted(sweep["sweep"]))]


def test_the_wheel_in_a_fresh_venv_runs_a_users_sweep_like_the_checkout(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(home)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", ".", "--no-deps", "--no-build-isolation",
         "-w", wheels], source_tree(tmp_path / "source"), env)
    [wheel] = wheels.glob("gpusweep-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, env)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], tmp_path, env,
        timeout=INSTALL_TIMEOUT_S)

    where = project(tmp_path, "mine")
    located = run([venv / "bin" / "python", "-c", "import gpusweep, importlib.util as u; "
                   "print(gpusweep.__file__); print(u.find_spec('torch') is not None)"],
                  where, env).stdout.split()
    assert located == [str(venv / "lib" / f"python{sys.version_info.major}."
                       f"{sys.version_info.minor}" / "site-packages" / "gpusweep" /
                       "__init__.py"), "False"]  # installed, not the checkout; no torch pulled
    assert run([venv / "bin" / "gpusweep", "--version"], where, env).stdout.startswith(
        "gpusweep ")
    shown = run([venv / "bin" / "gpusweep", "--sweep-config", "sweep.yaml"], where, env)
    sweep, memories = records(where)
    assert [m["status"] for m in memories] == ["finished", "finished"], shown.stdout
    assert sorted(m["metric"]["last"] for m in memories) == pytest.approx([1 / 3, 2 / 3])
    assert all(m["metric"]["reports"] == 3 for m in memories)  # wandb.log, via the bootstrap
    assert "2 trials (2 finished)" in shown.stdout.splitlines()[-1]
    report = run([venv / "bin" / "gpusweep", "report", next((where / "log").iterdir())],
                 where, env)
    assert "report.md" in report.stdout
    doctor = subprocess.run([venv / "bin" / "gpusweep", "doctor", "--json"], cwd=where,
                            env=env, capture_output=True, text=True, timeout=60)
    assert doctor.returncode in (0, 1) and json.loads(doctor.stdout)["lines"]

    checkout = project(tmp_path, "checkout")
    from_checkout = run([sys.executable, ROOT / "tools" / "sweep.py", "--sweep-config",
                         "sweep.yaml"], checkout, env)
    assert outcome(*records(where)) == outcome(*records(checkout))
    assert table(shown.stdout) == table(from_checkout.stdout) == [
        ("x=1", "finished", "0.3333"), ("x=2", "finished", "0.6667")]


def table(stdout: str) -> list[tuple[str, ...]]:
    """The live table's rows: params, status and metric (run ids and MB differ by run)."""
    rows = re.findall(r"^\s*\d+\s+\w{8}\s+(x=\d)\s+(\w+)\s+([\d.]+)", stdout, re.M)
    return sorted(rows)
