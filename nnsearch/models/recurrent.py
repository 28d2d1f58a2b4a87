"""Recurrent network (vanilla RNN, LSTM or GRU) for sequences shaped (steps, features), or token ids."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nnsearch.models.layers import check_choice, check_dropout, check_positive, sequence_shape, token_steps

PAD = 0  # the padding token id (nnsearch.data.text.PAD)

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
READOUTS = ("last", "mean", "max")


class Recurrent(nn.Module):
    """A stack of recurrent layers read out into a linear head.

    Args:
        input_shape: (steps, features) of one sample, or (tokens,) of token ids when ``vocab_size`` is set.
        n_outputs: width of the head (set by the task).
        cell: ``rnn`` (tanh), ``lstm`` or ``gru``.
        hidden_dim: state size per direction.
        n_layers: stacked recurrent layers; ``dropout`` applies between them and before the head.
        bidirectional: also read each sequence backwards and concatenate both states.
        readout: ``last`` takes the final state (of both directions), ``mean``/``max`` pool the
            top layer's outputs over all steps.
        vocab_size: token ids are below it (``data=text`` sets it): an embedding of width
            ``embedding_dim`` reads them, and padding (id 0, at the end) is skipped, as the sequences
            are packed to their lengths (``torch.nn.utils.rnn.pack_padded_sequence``).
        embedding_dim: width of each token's embedding.
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
        vocab_size: int | None = None,
        embedding_dim: int = 64,
    ) -> None:
        super().__init__()
        self.embedding = None
        if vocab_size is not None:
            check_positive(vocab_size=vocab_size, embedding_dim=embedding_dim)
            token_steps(input_shape, cell)
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
            features = embedding_dim
        else:
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
        if self.embedding is not None:
            return self._read_tokens(x)
        outputs, state = self.rnn(x)
        if self.readout == "mean":
            features = outputs.mean(dim=1)
        elif self.readout == "max":
            features = outputs.amax(dim=1)
        else:
            features = self._last_state(state)
        return self.head(features)

    def _read_tokens(self, ids: Tensor) -> Tensor:
        lengths = (ids != PAD).sum(dim=1).clamp(min=1)  # an all-padding text reads one padding token
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=ids.shape[1])
        real = (torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None])[..., None]
        if self.readout == "mean":
            features = (outputs * real).sum(dim=1) / lengths[:, None]
        elif self.readout == "max":
            features = outputs.masked_fill(~real, float("-inf")).amax(dim=1)
        else:
            features = self._last_state(state)
        return self.head(features)

    def _last_state(self, state: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """The top layer's final state (of both directions), from the states of every layer."""
        h = state[0] if self.cell == "lstm" else state  # (layers * directions, batch, hidden)
        directions = 2 if self.rnn.bidirectional else 1
        return torch.cat(list(h[-directions:]), dim=-1)
