"""Multi-layer perceptron over flattened inputs."""

from __future__ import annotations

import math

from torch import Tensor, nn

from nnsearch.errors import NNSearchError
from nnsearch.models.layers import activation as make_activation
from nnsearch.models.layers import check_dropout, check_positive


class MLP(nn.Module):
    """``n_layers`` hidden blocks of Linear -> [BatchNorm] -> activation -> [Dropout], then a linear head.

    Args:
        input_shape: shape of one sample; it is flattened, so images and sequences fit too.
        n_outputs: width of the head (set by the task).
        hidden_dim: width of every hidden layer.
        n_layers: number of hidden layers (0 gives a linear model).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_outputs: int,
        *,
        hidden_dim: int = 128,
        n_layers: int = 2,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        check_positive(hidden_dim=hidden_dim)
        check_dropout(dropout)
        if n_layers < 0:
            raise NNSearchError(f"model.n_layers must be at least 0, got {n_layers}.")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for _ in range(n_layers):
            layers.append(nn.Linear(width, hidden_dim))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden_dim
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

