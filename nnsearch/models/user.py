"""A user's own LightningModule (``model=lightning``): built by Hydra, trained as under ``lightning.Trainer``.

nnsearch reads what the module logs with ``self.log``: :class:`nnsearch.fit.callbacks.LoggedHistory` keeps every
epoch's ``trainer.callback_metrics`` as the fold's history, which becomes the trial's MLflow
curves and the fold's score (the last epoch's or the best epoch's, ``cv.fold_score``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError

if TYPE_CHECKING:
    import lightning as L


def is_user_module(model: DictConfig) -> bool:
    """``model=lightning``: the config names the user's LightningModule under ``model.module``."""
    return OmegaConf.is_dict(model) and "module" in model and "_target_" not in model


def build_user_module(model: DictConfig) -> L.LightningModule:
    import lightning as L

    from nnsearch.config.building import instantiate_node

    module = instantiate_node("model.module", OmegaConf.to_container(model.module, resolve=True))
    if not isinstance(module, L.LightningModule):
        raise NNSearchError(f"model.module._target_={model.module._target_} built a {type(module).__name__}, not a LightningModule "
                            "(for a plain nn.Module use model=net).")
    return module


def epoch_values(logged: Mapping[str, Any]) -> dict[str, float]:
    import torch

    return {k: float(v) for k, v in logged.items() if not k.endswith("_step") and (not torch.is_tensor(v) or v.numel() == 1)}


def fold_scores(history: list[dict[str, float]], metric: str, *, pick: str, direction: str) -> dict[str, float]:
    """The row of ``history`` that scores the fold: the last epoch's, or the one best at ``metric``."""
    if pick not in ("last", "best"):
        raise NNSearchError(f"cv.fold_score must be last or best, got {pick!r}.")
    rows = [r for r in history if metric in r]
    if pick == "last" or not rows:  # not logged: one of nnsearch's standard metrics, scored after the fit
        return dict(rows[-1])
    sign = 1.0 if direction == "maximize" else -1.0
    return dict(max(rows, key=lambda r: sign * r[metric] if math.isfinite(r[metric]) else -math.inf))


MINIMIZED = ("loss", "err", "mse", "mae", "rmse", "nll", "perplexity", "distance")
MAXIMIZED = ("acc", "f1", "auc", "precision", "recall", "r2", "iou", "dice", "map", "score")


def logged_direction(metric: str, given: str | None) -> str:
    """The direction of a metric the module logs: ``given``, else read from its name (``val/loss`` down, ``val/acc`` up)."""
    if given is not None:
        if given not in ("maximize", "minimize"):
            raise NNSearchError(f"study.direction must be maximize or minimize, got '{given}'.")
        return given
    name = metric.lower().rsplit("/", 1)[-1]
    if any(word in name for word in MINIMIZED):
        return "minimize"
    if any(word in name for word in MAXIMIZED):
        return "maximize"
    raise NNSearchError(f"study.direction is needed for study.metric '{metric}': maximize or minimize?")
