"""Three small recurrent architectures, one small class each; all map (B, window, F) -> (B,).

CNN+RNN, LSTM with LayerNorm, and GRU. Each ends the same way: the last
step's hidden state, LayerNorm, dropout, a linear layer and a sigmoid, because the target
is a probability-like value in (0, 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from stockpred.config import ModelConfig


class Head(nn.Module):
    """LayerNorm -> dropout -> linear -> sigmoid on the last time step."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        last = sequence[:, -1]
        return torch.sigmoid(self.out(self.drop(self.norm(last)))).squeeze(-1)


def recurrent(cell: type[nn.RNNBase], n_in: int, hidden: int, layers: int,
              dropout: float) -> nn.RNNBase:
    """A batch-first GRU or LSTM; dropout between layers only (PyTorch warns on one layer)."""
    return cell(n_in, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)


class RecurrentModel(nn.Module):
    """A GRU or an LSTM over the window, then the head on its last step."""

    def __init__(self, cell: type[nn.RNNBase], n_features: int, hidden: int, layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.rnn = recurrent(cell, n_features, hidden, layers, dropout)
        self.head = Head(hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


class CNNRNNModel(nn.Module):
    """A causal Conv1d front (local patterns over ``kernel`` days), then a GRU."""

    def __init__(self, n_features: int, hidden: int, layers: int, dropout: float,
                 channels: int, kernel: int) -> None:
        super().__init__()
        self.pad = kernel - 1
        self.conv = nn.Conv1d(n_features, channels, kernel)
        self.act = nn.GELU()
        self.rnn = recurrent(nn.GRU, channels, hidden, layers, dropout)
        self.head = Head(hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = nn.functional.pad(x.transpose(1, 2), (self.pad, 0))  # left pad: day t sees <= t
        z = self.act(self.conv(z)).transpose(1, 2)
        return self.head(self.rnn(z)[0])


def build_model(model_config: ModelConfig, n_features: int) -> nn.Module:
    """The architecture ``model.arch`` names."""
    c = model_config
    if c.arch == "gru":
        return RecurrentModel(nn.GRU, n_features, c.hidden, c.layers, c.dropout)
    if c.arch == "lstm":
        return RecurrentModel(nn.LSTM, n_features, c.hidden, c.layers, c.dropout)
    if c.arch == "cnn_rnn":
        return CNNRNNModel(n_features, c.hidden, c.layers, c.dropout, c.conv_channels, c.kernel)
    raise ValueError(f"unknown model.arch {c.arch!r}")
