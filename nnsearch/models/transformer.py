"""Transformer encoder for sequences shaped (steps, features), or token ids."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nnsearch.errors import NNSearchError
from nnsearch.models.layers import check_choice, check_dropout, check_positive, sequence_shape, token_steps

PAD = 0  # the padding token id (nnsearch.data.text.PAD)

POSITIONAL = ("sinusoidal", "learned", "none")
POOLING = ("mean", "max", "cls", "last")


class TransformerEncoder(nn.Module):
    """Features projected to ``d_model``, plus positions, through ``n_layers`` encoder layers, pooled.

    Args:
        input_shape: (steps, features) of one sample, or (tokens,) of token ids when ``vocab_size`` is set.
        n_outputs: width of the head (set by the task).
        d_model: width of every token; must be divisible by ``n_heads``.
        n_heads: attention heads per layer.
        n_layers: encoder layers.
        ff_dim: hidden width of each layer's feed-forward block.
        dropout: in attention, feed-forward blocks and on the embedded tokens.
        positional: ``sinusoidal`` (fixed), ``learned`` (one vector per step) or ``none``
            (attention then sees a set, not a sequence).
        pooling: ``mean``/``max`` over steps, ``cls`` (a learned summary token prepended) or
            ``last`` (the final step's token).
        norm_first: pre-layer-norm blocks, which train more stably when deep.
        vocab_size: token ids are below it (``data=text`` sets it): an embedding of width
            ``d_model`` reads them, attention ignores padding (id 0) and pooling skips it.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_outputs: int,
        *,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        ff_dim: int = 128,
        dropout: float = 0.1,
        positional: str = "sinusoidal",
        pooling: str = "mean",
        norm_first: bool = True,
        activation: str = "gelu",
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        check_positive(d_model=d_model, n_heads=n_heads, n_layers=n_layers, ff_dim=ff_dim)
        if vocab_size is not None:
            check_positive(vocab_size=vocab_size)
            steps = token_steps(input_shape, "transformer")
        else:
            steps, features = sequence_shape(input_shape, "transformer")
        if d_model % n_heads:
            raise NNSearchError(f"model.d_model ({d_model}) must be divisible by model.n_heads ({n_heads}).")
        check_dropout(dropout)
        check_choice("positional", positional, POSITIONAL)
        check_choice("pooling", pooling, POOLING)
        check_choice("activation", activation, ("relu", "gelu"))
        self.pooling = pooling
        self.tokens = vocab_size is not None
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD) if self.tokens else nn.Linear(features, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        tokens = steps + (1 if pooling == "cls" else 0)
        if positional == "learned":
            self.position = nn.Parameter(torch.randn(1, tokens, d_model) * 0.02)
        else:
            self.register_buffer("position", _sinusoidal(tokens, d_model) if positional == "sinusoidal" else torch.zeros(1, tokens, d_model))
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, ff_dim, dropout, activation=activation, batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x)
        padding = None
        if self.tokens:
            padding = x == PAD
            padding[:, 0] = False  # an all-padding text still attends to its first token (else attention is NaN)
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)
            if padding is not None:
                padding = torch.cat([torch.zeros_like(padding[:, :1]), padding], dim=1)
        encoded = self.encoder(self.dropout(tokens + self.position), src_key_padding_mask=padding)
        if padding is not None:
            return self.head(_pool_tokens(encoded, ~padding[..., None], self.pooling))
        if self.pooling == "mean":
            pooled = encoded.mean(dim=1)
        elif self.pooling == "max":
            pooled = encoded.amax(dim=1)
        elif self.pooling == "cls":
            pooled = encoded[:, 0]
        else:
            pooled = encoded[:, -1]
        return self.head(pooled)


def _pool_tokens(encoded: Tensor, real: Tensor, pooling: str) -> Tensor:
    """Pooled over the real tokens only (``real``: (batch, tokens, 1), False at padding)."""
    if pooling == "mean":
        return (encoded * real).sum(dim=1) / real.sum(dim=1)
    if pooling == "max":
        return encoded.masked_fill(~real, float("-inf")).amax(dim=1)
    if pooling == "cls":
        return encoded[:, 0]
    last = real.squeeze(-1).long().cumsum(dim=1).argmax(dim=1)  # the last real token (padding comes at the end)
    return encoded[torch.arange(len(encoded), device=encoded.device), last]


def _sinusoidal(steps: int, d_model: int) -> Tensor:
    """The fixed sine/cosine position codes of "Attention Is All You Need", shape (1, steps, d_model)."""
    position = torch.arange(steps, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    codes = torch.zeros(steps, d_model)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return codes[None]
