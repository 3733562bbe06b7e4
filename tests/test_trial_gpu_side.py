"""The trial side on GPUs users have: AMP by compute capability (a T4 is not an A100), the
best-effort CUDA release after a sticky error, and batches gathered on the device."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
import yaml

from gpusweep import trial
from stockpred import devicebatches, engine
from stockpred.cache import WindowDataset, load_or_build, make_loader
from stockpred.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "test_memory.yml")


@pytest.mark.parametrize(("capability", "dtype"), [
    ((7, 5), torch.float16),  # T4, the incident's GPU: bf16 only emulated
    ((7, 0), torch.float16),  # V100
    ((8, 0), torch.bfloat16),  # A100
    ((8, 6), torch.bfloat16),  # RTX 30xx
    ((9, 0), torch.bfloat16),  # H100
    (None, torch.float16),
])
def test_amp_is_bf16_only_on_compute_capability_8_and_up(capability, dtype):
    assert engine.amp_dtype(capability) is dtype


def test_precision_on_a_t4_is_fp16_with_a_grad_scaler(monkeypatch):
    """FAKE CUDA device properties: what torch reports on a T4 (no GPU here)."""
    made = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: made.append(
        (device, enabled)) or object())
    precision = engine.Precision(torch.device("cuda"), enabled=True)
    assert precision.dtype is torch.float16 and made == [("cuda", True)]
    made.clear()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert engine.Precision(torch.device("cuda"), True).dtype is torch.bfloat16
    assert made == [("cuda", False)]  # bf16 needs no scaler


class StickyCuda:
    """FAKE torch whose CUDA context is broken: every call raises, as after an illegal
    memory access."""

    class cuda:  # noqa: N801 (torch's own name)
        calls: list[str] = []

        @classmethod
        def is_initialized(cls):
            return True

        @classmethod
        def _fail(cls, name):
            cls.calls.append(name)
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        empty_cache = classmethod(lambda cls: cls._fail("empty_cache"))
        synchronize = classmethod(lambda cls: cls._fail("synchronize"))
        ipc_collect = classmethod(lambda cls: cls._fail("ipc_collect"))
        max_memory_allocated = classmethod(lambda cls: cls._fail("max_memory_allocated"))


def test_release_after_a_sticky_cuda_error_is_best_effort_and_keeps_the_error(
        tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(trial.EVENTS_ENV, str(events))
    monkeypatch.setitem(sys.modules, "torch", StickyCuda)
    StickyCuda.cuda.calls.clear()
    trial.release_cuda_memory()  # raises nothing
    assert StickyCuda.cuda.calls == ["empty_cache", "synchronize", "ipc_collect"]
    with pytest.raises(ValueError, match="the trial's own error"), trial.session():
        raise ValueError("the trial's own error")
    (error,) = [json.loads(line) for line in events.read_text().splitlines()]
    assert error["type"] == "ValueError" and "torch_peak_allocated_mb" not in error["memory"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = load_config(TINY, [("data.cache_dir", str(tmp_path_factory.mktemp("c")))])
    cache, _ = load_or_build(config, log=lambda m: None)
    return config, cache


def test_batches_gathered_on_the_device_are_the_memmap_loaders(tiny):
    config, cache = tiny
    windows = np.arange(0, len(cache), 3)
    matrix = devicebatches.to_device(cache.features, torch.device("cpu"))
    gathered = devicebatches.DeviceBatches(matrix, cache.starts[windows], cache.targets[windows],
                                           cache.window, 64, shuffle=False)
    loader = make_loader(WindowDataset(cache, windows), 64, shuffle=False)
    assert len(gathered) == len(loader)
    for (x, y), (x_ref, y_ref) in zip(gathered, loader, strict=True):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    shuffled = devicebatches.DeviceBatches(matrix, cache.starts[windows],
                                           cache.targets[windows], cache.window, 64, True, 0)
    first, second = (torch.cat([y for _, y in shuffled]) for _ in range(2))
    assert not torch.equal(first, second)  # a new order each epoch...
    assert torch.equal(first.sort().values, torch.from_numpy(cache.targets[windows]).sort()
                       .values)  # ...of the same windows


def test_the_matrix_goes_to_the_device_only_when_it_fits():
    assert devicebatches.fits(20 * 2**20, 80 * 2**20)
    assert not devicebatches.fits(21 * 2**20, 80 * 2**20)
    assert not devicebatches.fits(1, None)
    cpu = torch.device("cpu")
    assert not devicebatches.wanted("auto", cpu, 1)  # auto: CUDA only
    assert devicebatches.wanted("always", cpu, 1) and not devicebatches.wanted("never", cpu, 1)


def test_train_tool_with_data_on_device(tmp_path, monkeypatch):
    from test_stockpred_train import load_train_tool

    monkeypatch.setenv(trial.TRIAL_DIR_ENV, str(tmp_path / "trial"))
    monkeypatch.delenv(trial.EVENTS_ENV, raising=False)
    code = load_train_tool().main(["--config_file", TINY, f"--data.cache_dir={tmp_path}/c",
                                   "--train.epochs=1", "--train.data_on_device=always"])
    assert code == 0
    result = yaml.safe_load((tmp_path / "trial" / "result.yaml").read_text())
    assert result["data_on_device"] is True and result["finished"] is True
