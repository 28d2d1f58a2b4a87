"""Convolutional network for images shaped (channels, height, width)."""

from __future__ import annotations

from torch import Tensor, nn

from nnsearch.errors import NNSearchError
from nnsearch.models.layers import activation as make_activation
from nnsearch.models.layers import check_dropout, check_positive

POOLING = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "none": None}


class CNN(nn.Module):
    """``n_blocks`` of Conv -> [BatchNorm] -> activation -> [pool 2x2], global average pool, dense head.

    A block pools only while the feature map is at least 2x2, so deep stacks on small images stay valid.
    A sample shaped (height, width), such as digits read as sequences of rows, is taken as a
    one-channel image, so a CNN can compete with sequence models on the same data.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_outputs: int,
        *,
        channels: int = 32,
        channel_growth: float = 2,
        n_blocks: int = 2,
        kernel_size: int = 3,
        pooling: str = "max",
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = True,
        hidden_dim: int = 64,
    ) -> None:
        super().__init__()
        self.add_channel = len(input_shape) == 2
        if self.add_channel:
            input_shape = (1, *input_shape)
        if len(input_shape) != 3:
            raise NNSearchError(
                f"model=cnn needs image data shaped (channels, height, width), got samples of shape {tuple(input_shape)}; "
                "use an image data set such as data=digits_image."
            )
        check_positive(channels=channels, n_blocks=n_blocks, kernel_size=kernel_size)
        check_dropout(dropout)
        if pooling not in POOLING:
            raise NNSearchError(f"Unknown model.pooling '{pooling}'; choose one of {', '.join(POOLING)}.")
        in_ch, height, width = input_shape
        layers: list[nn.Module] = []
        out_ch = channels
        for _ in range(n_blocks):
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(make_activation(activation))
            if POOLING[pooling] is not None and min(height, width) >= 2:
                layers.append(POOLING[pooling](2))
                height, width = height // 2, width // 2
            in_ch, out_ch = out_ch, max(1, int(round(out_ch * channel_growth)))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if hidden_dim:
            layers += [nn.Linear(in_ch, hidden_dim), make_activation(activation)]
            in_ch = hidden_dim
        layers.append(nn.Linear(in_ch, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.unsqueeze(1) if self.add_channel else x)
