"""The model's config: a frozen dataclass tree loaded from YAML, with dotted overrides.

Unknown keys and wrong types are errors that name the dotted key (nanoGPT's configurator
rule), so ``--train.lrr=1e-3`` fails instead of silently training with the default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import yaml

from gpusweep.typedconfig import ConfigError, from_dict, override, to_dict

__all__ = ["Config", "ConfigError", "load_config", "apply_overrides", "to_dict"]


def _check(key: str, ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)


@dataclass(frozen=True)
class DataConfig:
    """Where the prices come from. ``synthetic`` needs no download; ``csv`` reads ``dir``."""

    source: Literal["synthetic", "csv"] = "synthetic"
    dir: str = ""
    adjust_splits: bool = True
    cache_dir: str = "data_cache"
    tickers: int = 64  # synthetic only
    days: int = 1500  # synthetic only: trading days per ticker
    signal: float = 0.15  # synthetic only: strength of the planted momentum (0 = random walk)
    seed: int = 0  # synthetic only

    def __post_init__(self) -> None:
        _check("tickers", self.tickers >= 1, f"must be >= 1, got {self.tickers}")
        _check("days", self.days >= 50, f"must be >= 50, got {self.days}")
        _check("signal", self.signal >= 0, f"must be >= 0, got {self.signal}")


@dataclass(frozen=True)
class FeatureConfig:
    """Which features, how many days each window holds, and per-feature clip overrides."""

    window: int = 40
    names: list[str] = field(default_factory=list)  # empty: every feature the data allows
    clip: dict = field(default_factory=dict)  # {name: [low, high]} overrides

    def __post_init__(self) -> None:
        _check("window", 2 <= self.window <= 512, f"must be in 2..512, got {self.window}")
        from stockpred.features import FEATURES

        for name in self.names:
            _check("names", name in FEATURES,
                   f"unknown feature {name!r} (known: {', '.join(FEATURES)})")
        for name, bounds in self.clip.items():
            _check(f"clip.{name}", name in FEATURES, "unknown feature")
            ok = (isinstance(bounds, (list, tuple)) and len(bounds) == 2
                  and all(isinstance(b, (int, float)) for b in bounds) and bounds[0] < bounds[1])
            _check(f"clip.{name}", ok, f"must be [low, high] with low < high, got {bounds!r}")


@dataclass(frozen=True)
class TargetConfig:
    """y = Phi(log(C[t+h] / C[t]) / (sigma_t * sqrt(h))), sigma_t over ``vol_window`` days."""

    horizon: int = 5
    vol_window: int = 20
    min_vol: float = 1e-4

    def __post_init__(self) -> None:
        _check("horizon", 1 <= self.horizon <= 250, f"must be in 1..250, got {self.horizon}")
        _check("vol_window", self.vol_window >= 2, f"must be >= 2, got {self.vol_window}")
        _check("min_vol", self.min_vol > 0, f"must be > 0, got {self.min_vol}")


@dataclass(frozen=True)
class TrainValSplitConfig:
    """The train/validation split (not a stock split: that is ``data.adjust_splits``):
    walk-forward by date with an embargo (default horizon + window); shuffle only to compare."""

    mode: Literal["walk_forward", "shuffle"] = "walk_forward"
    val_fraction: float = 0.2
    embargo: int | None = None  # rows between a train window's last day and validation
    seed: int = 0

    def __post_init__(self) -> None:
        _check("val_fraction", 0 < self.val_fraction < 1,
               f"must be between 0 and 1, got {self.val_fraction}")


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["gru", "lstm", "cnn_rnn"] = "gru"
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.1
    conv_channels: int = 32  # cnn_rnn only
    kernel: int = 5  # cnn_rnn only

    def __post_init__(self) -> None:
        _check("hidden", self.hidden >= 1, f"must be >= 1, got {self.hidden}")
        _check("layers", self.layers >= 1, f"must be >= 1, got {self.layers}")
        _check("dropout", 0 <= self.dropout < 1, f"must be in [0, 1), got {self.dropout}")
        _check("conv_channels", self.conv_channels >= 1, "must be >= 1")
        _check("kernel", self.kernel >= 1, "must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.01  # ~1% of all steps trained better than ~10%
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    patience: int = 5  # epochs without a better val_mae before stopping
    amp: bool = True  # CUDA only; ignored on CPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: on CUDA, move the feature matrix to the GPU once when it fits (a quarter of the
    # free memory) and gather batches there; always: also on CPU (an in-memory tensor)
    data_on_device: Literal["auto", "always", "never"] = "auto"
    num_workers: int = 0
    threads: int = 0  # torch CPU threads; 0: the cores this process may use
    seed: int = 0

    def __post_init__(self) -> None:
        _check("epochs", self.epochs >= 1, f"must be >= 1, got {self.epochs}")
        _check("batch_size", self.batch_size >= 1, f"must be >= 1, got {self.batch_size}")
        _check("lr", self.lr > 0, f"must be > 0, got {self.lr}")
        _check("weight_decay", self.weight_decay >= 0, "must be >= 0")
        _check("warmup_ratio", 0 <= self.warmup_ratio < 1, "must be in [0, 1)")
        _check("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "must be in [0, 1]")
        _check("grad_clip", self.grad_clip >= 0, "must be >= 0 (0: no clipping)")
        _check("patience", self.patience >= 1, "must be >= 1")
        _check("num_workers", self.num_workers >= 0, "must be >= 0")
        _check("threads", self.threads >= 0, "must be >= 0")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    # The YAML key stays ``split:`` (a field's name is its key): users' configs and sweeps'
    # dotted params (``--split.embargo=60``) keep working; the class names what it splits.
    split: TrainValSplitConfig = field(default_factory=TrainValSplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def min_embargo(self) -> int:
        return self.target.horizon + self.features.window

    @property
    def embargo(self) -> int:
        return self.min_embargo if self.split.embargo is None else self.split.embargo


def load_config(path: str, overrides: list[tuple[str, str]] = ()) -> Config:
    """Read ``path``, then apply ``(dotted_key, text)`` overrides; raises ConfigError."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(path, "config file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(path, f"cannot read: {str(exc).splitlines()[0]}") from None
    try:
        config = from_dict(Config, raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.key}" if exc.key else path, exc.message) from None
    return apply_overrides(config, overrides)  # also runs check()


def apply_overrides(config: Config, overrides: list[tuple[str, str]]) -> Config:
    """Apply dotted overrides, then the checks across sections; errors name the key."""
    for dotted, text in overrides:
        try:
            config = override(config, dotted, text)
        except ConfigError as exc:
            raise ConfigError(f"--{dotted}", exc.message) from None
    check(config)
    return config


def check(config: Config) -> None:
    """Rules that span sections, checked once all overrides are in (their order is free)."""
    _check("data.dir", config.data.source != "csv" or bool(config.data.dir),
           "data.source is csv: set data.dir to the CSV directory")
    if config.split.embargo is not None:
        least = config.min_embargo
        _check("split.embargo", config.split.embargo >= least,
               f"must be at least target.horizon + features.window = {least}")


def parse_overrides(tokens: list[str]) -> list[tuple[str, str]]:
    """``--a.b=1`` or ``--a.b 1`` tokens as pairs; anything else is a ConfigError."""
    pairs, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(token, "expected --section.key=value")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise ConfigError(token, "missing value (use --section.key=value)")
            value, i = tokens[i + 1], i + 1
        pairs.append((key, value))
        i += 1
    return pairs


def replace(config: Config, **sections: object) -> Config:
    """``dataclasses.replace`` for tests and tools: ``replace(cfg, train={'epochs': 2})``."""
    updates = {}
    for name, values in sections.items():
        updates[name] = dataclasses.replace(getattr(config, name), **values)  # type: ignore
    return dataclasses.replace(config, **updates)
