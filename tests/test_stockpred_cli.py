"""tools/train.py's command line: dotted overrides checked, bad input is one line and exit 2."""

import glob
import os
import subprocess
import sys

import pytest

from stockpred.config import Config, ConfigError, apply_overrides, load_config, parse_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "test_memory.yml")


def run_train(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def one_error_line(proc):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.yml"))))
def test_shipped_configs_load(path):
    assert isinstance(load_config(path), Config)


def test_wandb_args_form_overrides_any_key():
    pairs = parse_overrides(["--train.lr=0.001", "--model.arch", "lstm", "--split.embargo=60",
                             "--features.names=['close', 'ma_5']", "--train.amp=False"])
    config = apply_overrides(Config(), pairs)
    assert config.train.lr == 0.001 and config.model.arch == "lstm"
    assert config.split.embargo == 60 and config.features.names == ["close", "ma_5"]
    assert config.train.amp is False


@pytest.mark.parametrize("null", ["None", "null", "~"])
def test_wandb_none_is_null_where_null_is_accepted(null):
    config = apply_overrides(Config(), parse_overrides(["--split.embargo=80",
                                                        f"--split.embargo={null}"]))
    assert config.split.embargo is None
    with pytest.raises(ConfigError, match="--train.lr: expected a number, got None"):
        apply_overrides(Config(), parse_overrides([f"--train.lr={null}"]))


@pytest.mark.parametrize("token, words", [
    ("--train.lrr=1", "--train.lrr: unknown key"),
    ("--trian.lr=1", "--trian.lr: unknown key"),
    ("--train.lr=abc", "--train.lr: expected a number"),
    ("--train.lr=-1", "--train.lr: must be > 0"),
    ("--model.arch=rnn", "--model.arch: must be one of gru, lstm, cnn_rnn"),
    ("--train=1", "--train: is a section"),
    ("--features.names=['nope']", "--features.names: unknown feature"),
])
def test_bad_overrides_name_the_key(token, words):
    with pytest.raises(ConfigError) as info:
        apply_overrides(Config(), parse_overrides([token]))
    assert words in str(info.value)


def test_cross_section_rules_are_checked_after_all_overrides():
    with pytest.raises(ConfigError, match="data.dir"):
        apply_overrides(Config(), [("data.source", "csv")])
    config = apply_overrides(Config(), [("data.source", "csv"), ("data.dir", "prices")])
    assert config.data.dir == "prices"
    config = apply_overrides(Config(), [("split.embargo", "30"), ("features.window", "25")])
    assert config.embargo == 30


def test_unknown_override_exits_2_with_one_line(tmp_path):
    line = one_error_line(run_train("--config_file", TINY, "--output_dir", str(tmp_path),
                                    "--train.lrr=0.001"))
    assert "--train.lrr: unknown key" in line and "lr" in line


def test_unknown_key_in_the_file_exits_2_naming_file_and_key(tmp_path):
    config = tmp_path / "bad.yml"
    config.write_text("model:\n  arch: gru\n  hiden: 8\n")
    line = one_error_line(run_train("--config_file", str(config)))
    assert f"{config}: model.hiden: unknown key" in line


def test_bad_csv_exits_2_naming_file_and_row(tmp_path):
    prices = tmp_path / "prices"
    prices.mkdir()
    (prices / "GOOD.csv").write_text("Date,Close\n2020-01-02,10\n2020-01-03,11\n")
    (prices / "BAD.csv").write_text("Date,Close\n2020-01-02,10\n2020-01-03,1O.5\n")
    line = one_error_line(run_train(
        "--config_file", TINY, "--output_dir", str(tmp_path / "out"), "--data.source=csv",
        f"--data.dir={prices}", f"--data.cache_dir={tmp_path / 'cache'}"))
    assert f"{prices / 'BAD.csv'}: row 3: close is not a number: '1O.5'" in line
