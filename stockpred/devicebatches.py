"""Batches gathered on the device from a feature matrix moved there once.

The memmap loader (:mod:`stockpred.cache`) reads each batch from the page cache and copies
it to the GPU: a host-side fancy index and a host-to-device copy per step. The feature
matrix of every ticker is tens of MB (200 tickers x 1500 days x 16 features is 19 MB), so
on a GPU it is moved once and each batch is one gather on the device
(``features[starts[idx] + steps]``). Where it does not fit (``train.data_on_device: auto``
keeps it under a quarter of the free device memory) the memmap path stays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

DEVICE_FRACTION = 0.25  # at most this share of the device's free memory


def fits(nbytes: int, free_bytes: int | None, fraction: float = DEVICE_FRACTION) -> bool:
    """Whether a matrix of ``nbytes`` may live on a device with ``free_bytes`` free."""
    return free_bytes is not None and nbytes <= fraction * free_bytes


def wanted(mode: str, device: torch.device, nbytes: int) -> bool:
    """``train.data_on_device``: always, never, or (auto) on CUDA when it fits."""
    if mode != "auto":
        return mode == "always"
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return fits(nbytes, free)


def to_device(features: np.ndarray, device: torch.device) -> torch.Tensor:
    """The whole feature matrix as one tensor on ``device`` (read from the memmap once)."""
    return torch.from_numpy(np.array(features, dtype=np.float32)).to(device)  # a copy: writable


class DeviceBatches:
    """(x, y) batches of windows gathered on the device; reshuffled every pass when
    ``shuffle`` (its own seeded generator, like the memmap loader's sampler)."""

    def __init__(self, matrix: torch.Tensor, starts: np.ndarray, targets: np.ndarray,
                 window: int, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        device = matrix.device
        self.matrix = matrix
        self.starts = torch.from_numpy(np.ascontiguousarray(starts, dtype=np.int64)).to(device)
        self.targets = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)).to(
            device)
        self.steps = torch.arange(window, device=device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.starts) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.starts)
        order = torch.randperm(count, generator=self.generator) if self.shuffle \
            else torch.arange(count)
        order = order.to(self.matrix.device)
        for begin in range(0, count, self.batch_size):
            index = order[begin:begin + self.batch_size]
            rows = self.starts[index][:, None] + self.steps  # (B, window) row numbers
            yield self.matrix[rows], self.targets[index]
