"""The training loop's parts: device, optimizer, schedule, one epoch, evaluation, early stop.

Memory habits: metrics accumulate Python floats via ``.item()`` (a running tensor sum keeps
every batch's autograd graph alive, a leak that grows each step), evaluation runs
under ``torch.no_grad()``, and batches are dropped at the end of each step.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from stockpred.config import TrainConfig

_MB = 1024.0 * 1024.0


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU. The same code runs on both."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def cpu_threads(requested: int, num_workers: int) -> int:
    """Torch threads: half the cores left after the loader workers, at least one.

    Small recurrent models gain little from intra-op threads, and spinning OpenMP threads on
    a busy machine cost a lot: on the 2-core dev VM, 2 threads ran a GRU step 2x slower than
    1.
    """
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, ((cores or 1) - num_workers) // 2)


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then cosine down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on biases and LayerNorm gains)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    plain = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": train.weight_decay},
              {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup over ``warmup_ratio`` of all steps (~1% trained better than ~10%), then cosine."""
    warmup = max(1, round(train.warmup_ratio * total_steps)) if train.warmup_ratio else 0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, total_steps, train.min_lr_ratio))


def amp_dtype(capability: tuple[int, int] | None) -> torch.dtype:
    """bf16 only where the GPU has it natively (compute capability 8.0 and up: A100, H100,
    RTX 30xx); fp16, with a GradScaler, elsewhere (T4 is 7.5, V100 7.0).

    Not ``torch.cuda.is_bf16_supported()``: it defaults to ``including_emulation=True``
    and says True on a T4, where bf16 is emulated and slow.
    """
    return torch.bfloat16 if capability is not None and capability >= (8, 0) else torch.float16


@dataclass
class Precision:
    """Autocast on CUDA when ``train.amp``: bf16 on compute capability >= 8, else fp16 with
    a scaler (:func:`amp_dtype`)."""

    device: torch.device
    enabled: bool

    def __post_init__(self) -> None:
        self.enabled = self.enabled and self.device.type == "cuda"
        capability = torch.cuda.get_device_capability(self.device) if self.enabled else None
        self.dtype = amp_dtype(capability)
        bf16 = self.enabled and self.dtype is torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and not bf16)

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)


def train_epoch(model: nn.Module, loader: Iterator, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LambdaLR, precision: Precision,
                grad_clip: float) -> float:
    """One pass over ``loader`` with L1 loss; returns the mean train MAE as a float."""
    model.train()
    device = precision.device
    total, count = torch.zeros((), device=device), 0  # summed on the device: no sync per step
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        with precision.autocast():
            loss = nn.functional.l1_loss(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        precision.scaler.scale(loss).backward()
        if grad_clip:
            precision.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        precision.scaler.step(optimizer)
        precision.scaler.update()
        scheduler.step()
        total += loss.detach() * len(y)  # detached: no graph outlives the step
        count += len(y)
        del x, y, loss
    return total.item() / max(1, count)  # the one host sync of the epoch


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterator, precision: Precision) -> float:
    """Mean absolute error over ``loader``, accumulated as Python floats."""
    model.eval()
    total, count = 0.0, 0
    for x, y in loader:
        x = x.to(precision.device, non_blocking=True)
        y = y.to(precision.device, non_blocking=True)
        with precision.autocast():
            prediction = model(x).float()
        total += (prediction - y).abs().sum().item()
        count += len(y)
        del x, y, prediction
    return total / max(1, count)


class EarlyStopping:
    """Stop after ``patience`` epochs without a val MAE better than the best by ``min_delta``."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch = -1
        self.waited = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch's value; True when it is the new best."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = value, epoch, 0
            return True
        self.waited += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.waited >= self.patience


def reset_gpu_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def gpu_peak_mb(device: torch.device) -> float | None:
    """The epoch's peak allocated CUDA memory (None on CPU: never invented)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / _MB


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MB


def save_checkpoint(path: str, state: dict) -> None:
    """torch.save to a temporary name, then rename: a reader never sees half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
