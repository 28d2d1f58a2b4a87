"""The LightningModule that trains an autoencoder on reconstruction and scores it per row.

Each row's mean squared reconstruction error (in scaled feature units) is both the training
loss and, for anomaly data, the anomaly score; :mod:`nnsearch.models.metrics` turns the errors into
``recon_mse`` and, given anomaly labels, ``roc_auc`` and ``average_precision``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nnsearch.data.dataset import Task
from nnsearch.models.metrics import compute_metrics
from nnsearch.models.autoencoder import Autoencoder
from nnsearch.models.base import HistoryModule


class AutoencoderModule(HistoryModule):
    """Fits ``net`` to reproduce its input; ``y`` is ignored except to mark anomalies.

    With anomaly data and ``net.train_on == "normal"``, only rows labelled normal (0) in the
    training fold contribute to the loss; validation rows are scored whatever their label.
    ``val/loss`` is the mean error on the rows the model should reconstruct well (the normal ones
    for anomaly data).
    """

    def __init__(
        self,
        net: Autoencoder,
        task: Task,
        optimizer: Callable,
        scheduler: Callable | None = None,
        *,
        epoch_metrics: tuple[str, ...] = (),
    ) -> None:
        super().__init__(net, task, optimizer, scheduler, epoch_metrics=epoch_metrics)
        self.normal_only = task is Task.ANOMALY and net.train_on == "normal"
        self._val_errors: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def row_errors(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) - x).pow(2).flatten(1).mean(dim=1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        if self.normal_only:
            x = x[y == 0]
            if len(x) == 0:
                return None  # a batch of anomalies only: nothing to learn from
        loss = self.row_errors(x).mean()
        self.add_train_loss(loss, len(x))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val_errors.append(self.row_errors(x).detach())
        self._val_targets.append(y)

    def on_validation_epoch_end(self) -> None:
        errors, target = torch.cat(self._val_errors), torch.cat(self._val_targets)
        self._val_errors.clear()
        self._val_targets.clear()
        judged = errors[target == 0] if self.task is Task.ANOMALY else errors
        row = {"train/loss": self.train_loss(), "val/loss": judged.mean().item()}
        row.update({f"val/{k}": v for k, v in compute_metrics(self.task, errors, target, 0, self.epoch_metrics).items()})
        self.record_epoch(row)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
        """``recon_mse`` (and, for anomaly data, ``roc_auc`` and ``average_precision``) on ``(x, y)``."""
        self.eval()
        errors = torch.cat([self.row_errors(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        return compute_metrics(self.task, errors, y, 0, None)
