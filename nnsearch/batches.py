"""In-memory mini-batches: slices of tensors that already sit on the training device.

A ``DataLoader`` collates every batch sample by sample; for the small tabular and image sets
studies train on, that per-sample work costs more than the model. These iterables index whole
tensors with one permutation per epoch instead, and Lightning accepts them as loaders.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorBatches:
    """Batches of ``(x, y)`` rows; a fresh shuffle each epoch when ``generator`` is given."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.generator = generator
        # a final batch of one row breaks batch norm; drop it when training
        self.drop_last = drop_last or (generator is not None and len(x) % batch_size == 1 and len(x) > 1)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.generator is None:
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            return
        order = torch.randperm(n, generator=self.generator).to(self.x.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]
