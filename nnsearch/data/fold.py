"""One cross-validation fold of in-memory data, as the fit receives it (nnsearch.cv.splits makes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Fold:
    """Tensors of one fold, already scaled, plus the target scaling undone by the metrics."""

    index: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor  # in original units
    y_val_scaled: torch.Tensor
    target_scale: tuple[float, float]
    featurizer: Any = None  # the data's featurizer fitted on this fold's training rows, if it has one
