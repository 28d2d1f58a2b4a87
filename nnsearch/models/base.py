"""What every nnsearch LightningModule shares: per-epoch ``history`` and optimizers from config.

The rest of nnsearch relies on this contract for any family: ``history`` holds one row per
epoch (``train/loss``, ``val/loss`` and ``val/{metric}`` for the metrics asked for every epoch;
the pruning callback reads the objective from the last row), and ``evaluate(x, y)`` returns
every metric of the task. Batches are ``(x, y)``; a family decides what ``y`` means to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn

from nnsearch.data.dataset import Task
from nnsearch.errors import TrialFailed


class HistoryModule(L.LightningModule):
    """Base of the families: accumulates the training loss and appends one history row per epoch.

    Args:
        net: the network trained.
        task: the data's task; it picks the metrics.
        optimizer: ``params -> Optimizer`` (a partial from ``conf/optimizer``).
        scheduler: ``optimizer -> LRScheduler`` or None.
        epoch_metrics: metrics computed on the validation fold every epoch.
    """

    def __init__(
        self,
        net: nn.Module,
        task: Task,
        optimizer: Callable,
        scheduler: Callable | None = None,
        *,
        epoch_metrics: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.epoch_metrics = list(epoch_metrics)
        self.history: list[dict[str, float]] = []
        self._train_loss_sum = torch.zeros(())
        self._train_rows = 0
        self.train_loss_name = "train/loss"  # the history's key of the training loss: a different loss gets its own name

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum = torch.zeros((), device=self.device)
        self._train_rows = 0

    def add_train_loss(self, loss: torch.Tensor, rows: int) -> None:
        """Count ``loss`` (a mean over ``rows``) towards the epoch's ``train/loss``."""
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach() * rows
        self._train_rows += rows

    def train_loss(self) -> float:
        """The epoch's mean training loss; a non-finite one fails the trial."""
        loss = (self._train_loss_sum / max(self._train_rows, 1)).item()
        if not torch.isfinite(torch.tensor(loss)):
            raise TrialFailed(f"training loss became {loss} in epoch {self.current_epoch}")
        return loss

    def record_epoch(self, row: dict[str, float]) -> None:
        """Append the epoch's row; EarlyStopping and ReduceLROnPlateau read it from the trainer too."""
        self.history.append(row)
        self.log_dict(dict(row), prog_bar=False, logger=False)

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's union of return types
        # frozen parameters (model.freeze) stay out of the optimizer: no weight decay or momentum moves them
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"},
        }


class OutputsModule(HistoryModule):
    """Base of the families scored on the network's outputs (supervised, multi-task): validation keeps
    the epoch's outputs and targets, then computes ``val/loss`` and the epoch metrics on all of them at once.
    A subclass says how outputs are scored: :meth:`loss` and :meth:`_metrics`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._val_outputs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of ``outputs`` for targets ``y``."""
        raise NotImplementedError

    def _metrics(self, outputs: torch.Tensor, target: torch.Tensor, names: list[str] | None) -> dict[str, float]:
        """The metrics ``names`` (every one when None) of ``outputs``, in the target's original units."""
        raise NotImplementedError

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val_outputs.append(self(x).detach())
        self._val_targets.append(y)

    def on_validation_epoch_end(self) -> None:
        outputs, target = torch.cat(self._val_outputs), torch.cat(self._val_targets)
        self._val_outputs.clear()
        self._val_targets.clear()
        row = {self.train_loss_name: self.train_loss(), "val/loss": self.loss(outputs, target).item()}
        row.update({f"val/{k}": v for k, v in self._metrics(outputs, target, self.epoch_metrics).items()})
        self.record_epoch(row)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
        """Every metric of the task (of each target, multi-task) on ``(x, y)``, in the targets' original units."""
        self.eval()
        outputs = torch.cat([self(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        return self._metrics(outputs, y, None)
