"""Plain torch networks; the LightningModule (mylab.models) or nnsearch's own module (model=net) trains them."""

from __future__ import annotations

from torch import nn


class ConvNet(nn.Module):
    """A small CNN for 1-channel images."""

    def __init__(self, channels: int = 8, n_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * channels, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


class TinyNet(nn.Module):
    """An MLP that takes only what it needs: nnsearch passes n_outputs because the constructor asks for it."""

    def __init__(self, n_outputs: int, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU(), nn.Linear(width, n_outputs))

    def forward(self, x):
        return self.body(x)
