"""Dense autoencoder: any sample, flattened, squeezed through a bottleneck and rebuilt."""

from __future__ import annotations

import math

from torch import Tensor, nn

from nnsearch.errors import NNSearchError
from nnsearch.models.layers import activation as make_activation
from nnsearch.models.layers import check_choice, check_dropout, check_positive

TRAIN_ON = ("normal", "all")


def _widths(first: int, last: int, n_layers: int) -> list[int]:
    """``n_layers`` widths shrinking geometrically from ``first`` towards ``last`` (exclusive)."""
    return [max(1, round(first * (last / first) ** (i / n_layers))) for i in range(n_layers)]


class Autoencoder(nn.Module):
    """Encoder (``n_layers`` dense blocks) -> ``bottleneck`` -> mirrored decoder -> input shape.

    Args:
        input_shape: shape of one sample; it is flattened and the output reshaped back.
        n_outputs: ignored (the output is the input); accepted like every network's.
        hidden_dim: width of the encoder's first layer; later layers shrink towards the bottleneck.
        n_layers: dense blocks in the encoder, and in the decoder.
        bottleneck: size of the code; it must be smaller than the input or the identity is learnt.
        decoder_dim: width of the decoder's last hidden layer (null: ``hidden_dim``, a mirror).
        train_on: for anomaly data, ``normal`` fits normal training rows only (novelty detection);
            ``all`` fits every training row, as if the labels were unknown.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_outputs: int = 0,
        *,
        hidden_dim: int = 64,
        n_layers: int = 1,
        bottleneck: int = 8,
        decoder_dim: int | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        train_on: str = "normal",
    ) -> None:
        super().__init__()
        width = math.prod(input_shape)
        check_positive(hidden_dim=hidden_dim, n_layers=n_layers, bottleneck=bottleneck)
        if decoder_dim is not None:
            check_positive(decoder_dim=decoder_dim)
        check_dropout(dropout)
        check_choice("train_on", train_on, TRAIN_ON)
        if bottleneck >= width:
            raise NNSearchError(
                f"model.bottleneck ({bottleneck}) must be smaller than the input's {width} values, "
                "or the autoencoder can learn to copy its input."
            )
        self.input_shape, self.train_on = tuple(input_shape), train_on

        def block(n_in: int, n_out: int) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            return layers

        encoder: list[nn.Module] = [nn.Flatten()]
        n_in = width
        for n_out in _widths(hidden_dim, bottleneck, n_layers):
            encoder += block(n_in, n_out)
            n_in = n_out
        encoder.append(nn.Linear(n_in, bottleneck))
        decoder: list[nn.Module] = []
        n_in = bottleneck
        for n_out in reversed(_widths(decoder_dim or hidden_dim, bottleneck, n_layers)):
            decoder += block(n_in, n_out)
            n_in = n_out
        decoder.append(nn.Linear(n_in, width))
        self.encoder, self.decoder = nn.Sequential(*encoder), nn.Sequential(*decoder)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x)).view(len(x), *self.input_shape)
