"""The LightningModule that trains any network on a supervised task.

It keeps per-epoch curves in ``history`` instead of Lightning's logger: nnsearch logs them to
MLflow in one batch per trial, which costs a fraction of per-step logging.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nnsearch.data.dataset import Task
from nnsearch.models.distill import distillation_loss
from nnsearch.models.metrics import compute_metrics
from nnsearch.models.base import OutputsModule


class SupervisedModule(OutputsModule):
    """Fits ``net`` for classification or regression and records train/val curves per epoch.

    Args:
        net: maps a batch of inputs to ``n_outputs`` values per sample.
        task: sets the loss (BCE, cross entropy or MSE) and the metrics.
        optimizer: ``params -> Optimizer`` (a partial from ``conf/optimizer``).
        scheduler: ``optimizer -> LRScheduler`` or None.
        n_classes: number of classes (classification).
        epoch_metrics: metrics computed on the validation fold every epoch; the full set is
            computed once, at the end of the fit, by :meth:`evaluate`.
        target_scale: (mean, std) that standardized a regression target; metrics undo it.
        distill: ``(temperature, alpha)`` of knowledge distillation (:mod:`nnsearch.models.distill`): a
            training batch ``(x, y, teacher_logits)`` is then fitted to both; validation uses ``y`` only.
    """

    def __init__(
        self,
        net: nn.Module,
        task: Task,
        optimizer: Callable,
        scheduler: Callable | None = None,
        *,
        n_classes: int = 0,
        epoch_metrics: tuple[str, ...] = (),
        target_scale: tuple[float, float] = (0.0, 1.0),
        distill: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(net, task, optimizer, scheduler, epoch_metrics=epoch_metrics)
        self.n_classes = n_classes
        self.target_scale = target_scale
        self.distill = distill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out if self.task is Task.MULTICLASS else out.squeeze(-1)

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task is Task.MULTICLASS:
            return F.cross_entropy(outputs, y)
        if self.task is Task.BINARY:
            return F.binary_cross_entropy_with_logits(outputs, y.float())
        return F.mse_loss(outputs, y)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, *teacher = batch
        if teacher and self.distill is not None:
            temperature, alpha = self.distill
            loss = distillation_loss(self(x), teacher[0], y, temperature=temperature, alpha=alpha, binary=self.task is Task.BINARY)
            # not the task's loss that val/loss is: named apart in the curves and MLflow, so no one reads the gap as overfitting
            self.train_loss_name = "train/distill_loss"
        else:
            loss = self.loss(self(x), y)
        self.add_train_loss(loss, len(y))
        return loss

    def _metrics(self, outputs: torch.Tensor, target: torch.Tensor, names: list[str] | None) -> dict[str, float]:
        if self.task is Task.REGRESSION:
            mean, std = self.target_scale
            outputs, target = outputs * std + mean, target * std + mean
        return compute_metrics(self.task, outputs, target, self.n_classes, names)

    def evaluate_outputs(self, outputs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Every metric of the task from outputs already computed (batches of a DataLoader, streamed)."""
        return self._metrics(outputs, y, None)
