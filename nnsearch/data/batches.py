"""In-memory mini-batches: slices of tensors that already sit on the training device.

A ``DataLoader`` collates every batch sample by sample; for the small tabular and image sets
studies train on, that per-sample work costs more than the model. These iterables index whole
tensors with one permutation per epoch instead, and Lightning accepts them as loaders.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class TensorBatches:
    """Batches of ``(x, y)`` rows; a fresh shuffle each epoch when ``generator`` is given.

    ``index_sampler`` instead picks the rows and their order, for instance a
    ``torch.utils.data.distributed.DistributedSampler`` that gives one DDP rank its share. Each
    pass over the batches is an epoch: before drawing from the sampler it calls the sampler's
    ``set_epoch`` with the number of passes so far (as Fabric's loader wrapper does), so a
    shuffling ``DistributedSampler`` deals a new, seeded order each epoch. (The attribute is not
    named ``sampler``: Lightning takes a loader with a ``sampler`` for a ``DataLoader``.)

    ``extra``: a tensor indexed like the rows (a teacher's logits for distillation) that each batch
    carries as a third item, ``(x, y, extra)``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        index_sampler: Sampler[int] | None = None,
        drop_last: bool = False,
        extra: torch.Tensor | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if generator is not None and index_sampler is not None:
            raise ValueError("give TensorBatches a generator or an index_sampler, not both.")
        if extra is not None and len(extra) != len(x):
            raise ValueError(f"extra must have one entry per row ({len(x)}), got {len(extra)}.")
        self.x, self.y, self.extra = x, y, extra
        self.batch_size = batch_size
        self.generator = generator
        self.index_sampler = index_sampler
        self.epoch = 0  # passes drawn from the index sampler
        self.rows = len(index_sampler) if index_sampler is not None else len(x)
        training = generator is not None or index_sampler is not None
        # a final batch of one row breaks batch norm; drop it when training
        self.drop_last = drop_last or (training and self.rows % batch_size == 1 and self.rows > 1)

    def __len__(self) -> int:
        n = self.rows
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _rows(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, ...]:
        return (self.x[idx], self.y[idx]) if self.extra is None else (self.x[idx], self.y[idx], self.extra[idx])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.index_sampler is not None:
            yield from self._sampled()
            return
        n = len(self.x)
        if self.generator is None:
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                yield self._rows(slice(start, start + self.batch_size))
            return
        order = torch.randperm(n, generator=self.generator).to(self.x.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._rows(order[start : start + self.batch_size])

    def _sampled(self) -> Iterator[tuple[torch.Tensor, ...]]:
        set_epoch = getattr(self.index_sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        self.epoch += 1
        order = torch.tensor(list(self.index_sampler), dtype=torch.long, device=self.x.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._rows(order[start : start + self.batch_size])
