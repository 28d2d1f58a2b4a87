"""Validation predictions of a trained fold, in the form the per-trial plots read.

The confusion matrix, ROC/PR curves and regression scatter plots of a trial need what each fold's
model predicted for its validation rows. Metrics alone cannot give them, so each fold keeps its
raw outputs next to the targets: a few kilobytes per fold, computed with one extra forward pass
over rows that were already evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Predictions:
    """Raw outputs and targets of one fold's validation rows, as numpy arrays on the CPU.

    ``outputs``: logits for classification (one column per class for multiclass, one value per
    row for binary), predictions in the target's original units for regression. ``targets``:
    class indices or values in original units.
    """

    outputs: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        if len(self.outputs) != len(self.targets):
            raise ValueError(f"outputs have {len(self.outputs)} rows but targets {len(self.targets)}.")


def fold_predictions(module: Any, x_val: Any, y_val: Any, *, batch_size: int = 4096) -> Predictions:
    """Run a trained supervised module over a fold's validation rows.

    Args:
        module: a trained ``SupervisedModule`` (it has ``task`` and ``target_scale``), or a
            ``MultiTaskModule`` (its heads side by side; split with :func:`target_predictions`).
        x_val: the fold's scaled validation features (any device).
        y_val: the validation targets as the module trains on them (a regression target
            standardized with the training rows' statistics; undone here).

    Example:
        ``result.predictions = fold_predictions(module, x_val, y_val)`` at the end of a fold.
    """
    import torch

    was_training = module.training
    module.eval()
    with torch.no_grad():
        outputs = torch.cat([module(x_val[i : i + batch_size]) for i in range(0, len(x_val), batch_size)])
    module.train(was_training)
    return predictions_of(module, outputs, y_val)


def predictions_of(module: Any, outputs: Any, y_val: Any) -> Predictions:
    """:class:`Predictions` from a supervised module's outputs already computed for ``y_val``'s rows."""
    from nnsearch.data.dataset import Task

    out = outputs.detach().float().cpu().numpy()
    target = y_val.detach().cpu().numpy()
    if module.task is Task.REGRESSION:
        mean, std = getattr(module, "target_scale", (0.0, 1.0))
        out, target = out * std + mean, target * std + mean
    elif module.task is Task.MULTITASK:  # the heads side by side, one target per column: regression ones unscaled
        out, target = out.copy(), target.astype(np.float64)
        offset = 0
        for i, spec in enumerate(module.targets):
            if spec.task is Task.REGRESSION:
                mean, std = module.target_scale[i]
                out[:, offset] = out[:, offset] * std + mean
                target[:, i] = target[:, i] * std + mean
            offset += spec.width
    return Predictions(out, target)


def target_predictions(pred: Predictions, targets: tuple) -> list[tuple[Any, Predictions]]:
    """Each target of multi-task predictions (:func:`predictions_of`) with its own :class:`Predictions`:
    its head's outputs (logits, or the value) and its column of targets (class indices, or values)."""
    from nnsearch.data.dataset import Task

    out, offset = [], 0
    for i, spec in enumerate(targets):
        block = pred.outputs[:, offset : offset + spec.width]
        column = pred.targets[:, i]
        offset += spec.width
        if spec.task is Task.MULTICLASS:
            out.append((spec, Predictions(block, column.astype(np.int64))))
        elif spec.task is Task.BINARY:
            out.append((spec, Predictions(block[:, 0], column.astype(np.int64))))
        else:
            out.append((spec, Predictions(block[:, 0], column.astype(np.float64))))
    return out


def pooled(folds: list[Any]) -> Predictions | None:
    """Out-of-fold predictions of every fold that has them, stacked (each row predicted once)."""
    parts = [p for p in (getattr(f, "predictions", None) for f in folds) if p is not None]
    if not parts:
        return None
    return Predictions(np.concatenate([p.outputs for p in parts]), np.concatenate([p.targets for p in parts]))
