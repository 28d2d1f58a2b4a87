"""The LightningModule that trains one network on several targets at once (``data.target=[a, b]``).

The network is any supervised family (MLP, CNN, recurrent, Transformer, a ``model=net`` of your
own) built with ``n_outputs`` = the heads' widths side by side. Its last ``Linear`` layer is then
exactly one linear head per target on a shared trunk: each target's outputs are its own block of
that layer's rows, which no other target's loss reaches. So no family needs a multi-head variant.

The loss is ``sum_t task_weights[t] * loss_t``: cross entropy (multiclass), binary cross entropy
(binary) or MSE on the standardized target (regression). Metrics are each target's own (those of
:mod:`nnsearch.models.metrics` for its task), named ``<target>/<metric>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnsearch.data.dataset import TargetSpec, Task
from nnsearch.errors import NNSearchError
from nnsearch.models.base import OutputsModule
from nnsearch.models.metrics import WEIGHTED, compute_metrics, target_metric_names


def task_weights(targets: tuple[TargetSpec, ...], given: Mapping[str, Any] | None) -> tuple[float, ...]:
    """The loss weight of each target, in target order: ``model.task_weights.<target>`` or 1.

    Raises:
        NNSearchError: a weight for a column that is not a target, or one that is not a finite number >= 0,
            or weights that are all 0.
    """
    given = dict(given or {})
    names = [t.name for t in targets]
    unknown = [k for k in given if k not in names]
    if unknown:
        raise NNSearchError(f"model.task_weights names {', '.join(map(str, unknown))}, which is not a target; the targets are {', '.join(names)}.")
    weights = []
    for name in names:
        value = given.get(name, 1.0)
        if value is None:
            value = 1.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise NNSearchError(f"model.task_weights.{name} must be a finite number >= 0, got {value!r}.")
        weights.append(float(value))
    if not any(weights):
        raise NNSearchError("model.task_weights are all 0: at least one target must be trained.")
    return tuple(weights)


class MultiTaskModule(OutputsModule):
    """Fits ``net`` to every target of a multi-task data set and records train/val curves per epoch.

    Args:
        net: maps a batch of inputs to ``sum(t.width for t in targets)`` values per sample.
        targets: the data's target specs, in the order of ``y``'s columns.
        optimizer: ``params -> Optimizer`` (a partial from ``conf/optimizer``).
        scheduler: ``optimizer -> LRScheduler`` or None.
        weights: loss weight per target (:func:`task_weights`).
        epoch_metrics: ``<target>/<metric>`` names computed on the validation fold every epoch.
        target_scale: (mean, std) per target that standardized its column (``(0, 1)`` for classes).
        metric_weights: target metric -> weight; the metric ``weighted`` is their weighted sum
            (``study.metric=weighted``), reported beside the target metrics.

    Example:
        ``module(x)`` gives the concatenated head outputs; ``module.heads(module(x))`` one tensor
        per target (logits, or the standardized prediction).
    """

    def __init__(
        self,
        net: nn.Module,
        targets: tuple[TargetSpec, ...],
        optimizer: Callable,
        scheduler: Callable | None = None,
        *,
        weights: tuple[float, ...] | None = None,
        epoch_metrics: tuple[str, ...] = (),
        target_scale: tuple[tuple[float, float], ...] = (),
        metric_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(net, Task.MULTITASK, optimizer, scheduler, epoch_metrics=epoch_metrics)
        self.targets = tuple(targets)
        self.weights = tuple(weights) if weights is not None else (1.0,) * len(self.targets)
        if len(self.weights) != len(self.targets):
            raise ValueError(f"{len(self.weights)} task weights for {len(self.targets)} targets.")
        self.target_scale = tuple(target_scale) or ((0.0, 1.0),) * len(self.targets)
        self.metric_weights = dict(metric_weights or {})
        names = [*target_metric_names(self.targets), *([WEIGHTED] if self.metric_weights else [])]
        unknown = [m for m in self.epoch_metrics if m not in names]
        if unknown:
            raise NNSearchError(f"Unknown per-epoch metric(s) {', '.join(unknown)} for targets {', '.join(t.name for t in self.targets)}; "
                                f"choose among {', '.join(names)}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def heads(self, outputs: torch.Tensor) -> list[torch.Tensor]:
        """Each target's block of the outputs: (N, classes) for multiclass, (N,) otherwise."""
        blocks = torch.split(outputs, [t.width for t in self.targets], dim=-1)
        return [b if t.task is Task.MULTICLASS else b.squeeze(-1) for t, b in zip(self.targets, blocks, strict=True)]

    def target_losses(self, outputs: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """The loss of each target (column ``i`` of ``y``), unweighted."""
        losses = []
        for i, (spec, out) in enumerate(zip(self.targets, self.heads(outputs), strict=True)):
            column = y[:, i]
            if spec.task is Task.MULTICLASS:
                losses.append(F.cross_entropy(out, column.long()))
            elif spec.task is Task.BINARY:
                losses.append(F.binary_cross_entropy_with_logits(out, column.float()))
            else:
                losses.append(F.mse_loss(out, column.float()))
        return losses

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The ``task_weights``-weighted sum of the targets' losses."""
        return sum(w * loss for w, loss in zip(self.weights, self.target_losses(outputs, y), strict=True))  # type: ignore[return-value]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        self.add_train_loss(loss, len(y))
        return loss

    def _metrics(self, outputs: torch.Tensor, target: torch.Tensor, names: list[str] | None) -> dict[str, float]:
        """``<target>/<metric>`` for the ``names`` asked (all when None), in the targets' original units;
        ``weighted`` (asked, or all with metric weights) adds their weighted sum."""
        weighted = bool(self.metric_weights) and (names is None or WEIGHTED in names)
        if weighted and names is not None:
            names = [*names, *self.metric_weights]
        scores: dict[str, float] = {}
        for i, (spec, out) in enumerate(zip(self.targets, self.heads(outputs), strict=True)):
            wanted = None if names is None else [n[len(spec.name) + 1 :] for n in names if n.startswith(f"{spec.name}/")]
            if wanted == []:
                continue
            column = target[:, i]
            if spec.task is Task.REGRESSION:
                mean, std = self.target_scale[i]
                out, column = out * std + mean, column * std + mean
            else:
                column = column.long()
            scores.update({f"{spec.name}/{k}": v for k, v in compute_metrics(spec.task, out, column, len(spec.classes), wanted).items()})
        if weighted:
            scores[WEIGHTED] = sum(w * scores[m] for m, w in self.metric_weights.items())
        if names is not None:
            scores = {k: v for k, v in scores.items() if k in names}
        return scores
