"""Recurrent classifier (LSTM or GRU) over sequences, or over images read row by row."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from litlab.errors import LitlabError, check_choice, check_fraction, check_positive_int

log = logging.getLogger(__name__)


def between_layers_dropout(dropout: object, num_layers: int) -> float:
    """``model.net.dropout`` checked whatever the layer count (1.5 was accepted while it was unused)."""
    dropout = check_fraction("model.net.dropout", dropout)
    if dropout and num_layers == 1:
        # PyTorch's LSTM/GRU drop only the outputs passed from one stacked layer to the next
        log.warning("model.net.dropout=%g is ignored: LSTM/GRU dropout acts only between stacked layers "
                    "(model.net.num_layers > 1), and model.net.num_layers=1.", dropout)
        return 0.0
    return dropout


class RNN(nn.Module):
    """LSTM/GRU over the time axis; classifies from the final hidden state(s).

    Args:
        input_shape: ``(L, F)`` sequences, or ``(C, H, W)`` images read as H steps of C*W features.
        num_classes: outputs.
        cell: ``lstm`` or ``gru``.
        hidden_size: hidden units per direction.
        num_layers: stacked layers.
        bidirectional: also read the sequence backwards.
        dropout: dropout between stacked layers, in [0, 1); with one layer there is none to apply.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, cell: str = "lstm", hidden_size: int = 128,
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0):
        super().__init__()
        check_choice("model.net.cell", cell, ("lstm", "gru"))
        if not isinstance(bidirectional, bool):
            raise LitlabError(f"model.net.bidirectional must be true or false, got {bidirectional!r}.")
        check_positive_int("model.net.hidden_size", hidden_size)
        check_positive_int("model.net.num_layers", num_layers)
        dropout = between_layers_dropout(dropout, num_layers)
        self.is_image = len(input_shape) == 3
        features = input_shape[0] * input_shape[2] if self.is_image else input_shape[1]
        rnn_t = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_t(features, hidden_size, num_layers=num_layers, batch_first=True,
                         bidirectional=bidirectional, dropout=dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.is_image:
            b, c, h, w = x.shape
            x = x.permute(0, 2, 1, 3).reshape(b, h, c * w)  # (B, C, H, W) -> (B, H, C*W)
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # (layers*dirs, B, H)
        # top layer's final state; bidirectional: forward and backward joined, (B, 2H)
        last = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.rnn.bidirectional else h_n[-1]
        return self.head(last)  # (B, num_classes)
