"""Generative adversarial network for tabular rows: a dense generator and a dense discriminator."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nnsearch.errors import NNSearchError
from nnsearch.models.layers import activation as make_activation
from nnsearch.models.layers import check_dropout, check_positive


def _dense(n_in: int, width: int, n_layers: int, n_out: int, *, activation: str, dropout: float, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(n_layers):
        layers.append(nn.Linear(n_in, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(make_activation(activation))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class GAN(nn.Module):
    """Generator (noise -> row) and discriminator (row -> logit "real"), trained against each other.

    Rows are generated in the scaled feature space the fold trains in, so the generator's last
    layer is linear. Each part has its own learning rate: the adversarial game is often won by
    balancing them rather than by either alone.

    Args:
        input_shape: shape of one real sample (tabular rows; any shape is flattened).
        n_outputs: ignored (accepted like every network's).
        latent_dim: size of the generator's Gaussian noise input.
        generator_dim / generator_layers: width and depth of the generator's hidden layers.
        discriminator_dim / discriminator_layers: the same for the discriminator.
        generator_lr / discriminator_lr: learning rates given to the configured optimizer.
        dropout: in the discriminator only (it regularizes the critic, not the samples).
        batch_norm: in the generator's hidden layers.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_outputs: int = 0,
        *,
        latent_dim: int = 16,
        generator_dim: int = 64,
        generator_layers: int = 2,
        discriminator_dim: int = 64,
        discriminator_layers: int = 2,
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        batch_norm: bool = True,
        generator_lr: float = 2.0e-4,
        discriminator_lr: float = 2.0e-4,
    ) -> None:
        super().__init__()
        check_positive(latent_dim=latent_dim, generator_dim=generator_dim, discriminator_dim=discriminator_dim)
        check_positive(generator_layers=generator_layers, discriminator_layers=discriminator_layers)
        check_dropout(dropout)
        for name, lr in (("generator_lr", generator_lr), ("discriminator_lr", discriminator_lr)):
            if not lr > 0:
                raise NNSearchError(f"model.{name} must be positive, got {lr}.")
        width = math.prod(input_shape)
        self.input_shape, self.latent_dim = tuple(input_shape), latent_dim
        self.generator_lr, self.discriminator_lr = float(generator_lr), float(discriminator_lr)
        self.generator = _dense(latent_dim, generator_dim, generator_layers, width, activation=activation, dropout=0.0, batch_norm=batch_norm)
        self.discriminator = nn.Sequential(
            nn.Flatten(),
            _dense(width, discriminator_dim, discriminator_layers, 1, activation=activation, dropout=dropout, batch_norm=False),
        )

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` generated rows; pass a seeded ``generator`` for the same noise every time."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device if generator is None else generator.device)
        return self.generator(z.to(device)).view(n, *self.input_shape)

    def forward(self, x: Tensor) -> Tensor:
        """The discriminator's logit that each row of ``x`` is real."""
        return self.discriminator(x).squeeze(-1)
