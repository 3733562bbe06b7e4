"""The project a sweep uses without one given: wandb's own rules, without importing wandb."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from gpusweep.wb import env as wandb_env


def wandb_auto_project_name(program, cwd):
    code = f"from wandb.util import auto_project_name; print(auto_project_name({program!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout.strip().splitlines()[-1]


def ours(program, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    return wandb_env._auto_project_name(program)


@pytest.mark.parametrize("program", [None, "tests/programs/quadratic.py", "tools/sweep.py",
                                     "quadratic.py", "/usr/bin/env"])
def test_auto_project_name_is_wandbs_inside_a_repository(program, monkeypatch):
    assert ours(program, ROOT, monkeypatch) == wandb_auto_project_name(program, ROOT)


def test_auto_project_name_is_wandbs_outside_git(tmp_path, monkeypatch):
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert ours("train.py", outside, monkeypatch) == "uncategorized"
    assert wandb_auto_project_name("train.py", outside) == "uncategorized"


def test_auto_project_name_in_a_nested_program_dir(tmp_path, monkeypatch):
    repo = tmp_path / "myrepo"
    (repo / "src" / "train").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    program = os.path.join("src", "train", "main.py")
    assert ours(program, repo, monkeypatch) == "myrepo-src_train"
    assert wandb_auto_project_name(program, repo) == "myrepo-src_train"


def test_settings_are_read_only_where_a_settings_file_exists(tmp_path, monkeypatch):
    """No file: wandb is not asked (nothing to read). A workspace file: wandb's own reader
    gives its project."""
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    wandb_env._system_settings.cache_clear()
    assert wandb_env.settings_files() == []
    assert wandb_env._settings("project") is None
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "settings").write_text("[default]\nproject = from-settings\n")
    wandb_env._system_settings.cache_clear()
    try:
        assert wandb_env.settings_files() == [str(tmp_path / "wandb" / "settings")]
        assert wandb_env._settings("project") == "from-settings"
    finally:
        wandb_env._system_settings.cache_clear()
