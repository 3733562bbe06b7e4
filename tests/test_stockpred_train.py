"""Models learn, the engine's parts behave, and tools/train.py writes an honest result."""

import importlib.util
import json
import math
import os

import numpy as np
import pytest
import torch
import yaml

from gpusweep import trial
from stockpred import engine
from stockpred.cache import WindowDataset, load_or_build, make_loader
from stockpred.config import load_config, replace
from stockpred.models import build_model
from stockpred.walkforward import train_val_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "test_memory.yml")


def load_train_tool():
    spec = importlib.util.spec_from_file_location("train_tool", os.path.join(ROOT, "tools",
                                                                             "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """test_memory.yml's tiny market with a strong planted signal, so learning shows."""
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    config = load_config(TINY, [("data.cache_dir", cache_dir), ("data.signal", "1.0")])
    cache, _ = load_or_build(config, log=lambda m: None)
    return config, cache, train_val_split(cache, config)


@pytest.mark.parametrize("arch", ["gru", "lstm", "cnn_rnn"])
def test_each_arch_trains_two_epochs_and_lowers_train_loss(learnable, arch):
    config, cache, split = learnable
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(replace(config, model={"arch": arch}).model, len(cache.feature_names))
    dataset = WindowDataset(cache, split.train)
    train_loader = make_loader(dataset, 64, shuffle=True, seed=0)
    eval_loader = make_loader(dataset, 512, shuffle=False)
    optimizer = engine.make_optimizer(model, config.train)
    scheduler = engine.make_scheduler(optimizer, config.train, 2 * len(train_loader))
    precision = engine.Precision(torch.device("cpu"), enabled=True)
    before = engine.evaluate(model, eval_loader, precision)
    epochs = [engine.train_epoch(model, train_loader, optimizer, scheduler, precision, 1.0)
              for _ in range(2)]
    after = engine.evaluate(model, eval_loader, precision)
    targets = cache.targets[split.train]
    median_mae = float(np.mean(np.abs(targets - np.median(targets))))
    assert epochs[1] < epochs[0]
    assert after < before and after < median_mae - 0.03, (before, after, median_mae)


def test_warmup_is_linear_then_cosine_to_the_floor():
    total, warmup, floor = 1000, 10, 0.05
    factors = [engine.lr_factor(s, warmup, total, floor) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert (np.diff(factors[:10]) > 0).all() and (np.diff(factors[9:]) <= 0).all()
    assert factors[-1] == pytest.approx(floor, abs=1e-4)
    assert engine.lr_factor(505, warmup, total, floor) == pytest.approx((1 + floor) / 2, abs=1e-2)


def test_scheduler_warms_up_over_warmup_ratio_of_all_steps():
    model = torch.nn.Linear(2, 1)
    config = replace(load_config(TINY), train={"warmup_ratio": 0.01, "lr": 1.0})
    optimizer = engine.make_optimizer(model, config.train)
    scheduler = engine.make_scheduler(optimizer, config.train, total_steps=1000)
    lrs = []
    for _ in range(12):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[11] < 1.0


def test_early_stopping_waits_patience_epochs():
    stopper = engine.EarlyStopping(patience=2)
    history = [0.30, 0.28, 0.29, 0.285, 0.27]
    stops = []
    for epoch, value in enumerate(history):
        stopper.update(epoch, value)
        stops.append(stopper.should_stop)
    assert stops == [False, False, False, True, False]
    assert (stopper.best, stopper.best_epoch) == (0.27, 4)


def test_evaluation_builds_no_graph_and_returns_a_float(learnable):
    config, cache, split = learnable
    model = build_model(config.model, len(cache.feature_names))
    seen = []
    model.register_forward_hook(lambda m, i, out: seen.append(out.requires_grad))
    loader = make_loader(WindowDataset(cache, split.val), 256, shuffle=False)
    value = engine.evaluate(model, loader, engine.Precision(torch.device("cpu"), True))
    assert type(value) is float and 0 < value < 1
    assert seen and not any(seen)


def test_train_tool_writes_result_checkpoint_and_reports(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(trial.EVENTS_ENV, str(events))
    monkeypatch.setenv(trial.TRIAL_DIR_ENV, str(tmp_path / "trial"))
    code = load_train_tool().main(["--config_file", TINY, f"--data.cache_dir={tmp_path}/c",
                                   "--train.epochs=2", "--model.arch", "lstm"])
    assert code == 0
    result = yaml.safe_load((tmp_path / "trial" / "result.yaml").read_text())
    reports = [json.loads(line) for line in events.read_text().splitlines()]
    reports = [e for e in reports if e["kind"] == "report"]
    assert [e["step"] for e in reports] == [0, 1]
    for event in reports:
        assert set(event["metrics"]) == {"val_mae", "train_mae", "baseline_mae", "lr"}
    val = [e["metrics"]["val_mae"] for e in reports]
    assert result["val_mae"] == min(val)  # best_epoch is the best report's step (0-based)
    assert result["best_epoch"] == reports[val.index(min(val))]["step"]
    assert result["baseline_mae"] == reports[0]["metrics"]["baseline_mae"]
    assert result["epochs"] == 2 and result["finished"] is True
    assert result["peak_gpu_mb"] is None
    assert result["peak_rss_mb"] > 50 and result["train_seconds"] > 0
    assert result["config"]["model"]["arch"] == "lstm"
    data = result["data"]
    assert data["tickers"] == 12 and data["windows"] > data["split"]["train"] > 0
    assert data["split"]["mode"] == "walk_forward" and data["split"]["embargo"] == 25
    checkpoint = torch.load(tmp_path / "trial" / "best.pt", weights_only=False)
    assert checkpoint["epoch"] == result["best_epoch"]
    assert math.isclose(checkpoint["val_mae"], result["val_mae"])
