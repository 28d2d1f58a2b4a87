"""Recurrent network (vanilla RNN, LSTM or GRU) for sequences shaped (steps, features)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnsearch.models.layers import check_choice, check_dropout, check_positive, sequence_shape

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
READOUTS = ("last", "mean", "max")


class Recurrent(nn.Module):
    """A stack of recurrent layers read out into a linear head.

    Args:
        input_shape: (steps, features) of one sample.
        n_outputs: width of the head (set by the task).
        cell: ``rnn`` (tanh), ``lstm`` or ``gru``.
        hidden_dim: state size per direction.
        n_layers: stacked recurrent layers; ``dropout`` applies between them and before the head.
        bidirectional: also read each sequence backwards and concatenate both states.
        readout: ``last`` takes the final state (of both directions), ``mean``/``max`` pool the
            top layer's outputs over all steps.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_outputs: int,
        *,
        cell: str = "lstm",
        hidden_dim: int = 64,
        n_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        readout: str = "last",
    ) -> None:
        super().__init__()
        _, features = sequence_shape(input_shape, cell)
        check_choice("cell", cell, CELLS)
        check_choice("readout", readout, READOUTS)
        check_positive(hidden_dim=hidden_dim, n_layers=n_layers)
        check_dropout(dropout)
        self.cell, self.readout = cell, readout
        self.rnn = CELLS[cell](
            features,
            hidden_dim,
            num_layers=n_layers,
            batch_first=True,
            dropout=dropout if n_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        width = hidden_dim * (2 if bidirectional else 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        outputs, state = self.rnn(x)
        if self.readout == "mean":
            features = outputs.mean(dim=1)
        elif self.readout == "max":
            features = outputs.amax(dim=1)
        else:
            h = state[0] if self.cell == "lstm" else state  # (layers * directions, batch, hidden)
            directions = 2 if self.rnn.bidirectional else 1
            features = torch.cat(list(h[-directions:]), dim=-1)
        return self.head(features)
