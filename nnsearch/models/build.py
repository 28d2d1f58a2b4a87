"""From the composed config to the LightningModule that one fold trains."""

from __future__ import annotations

from omegaconf import DictConfig

from nnsearch.building import build_network, optional_partial
from nnsearch.cv import Fold
from nnsearch.data.dataset import Dataset
from nnsearch.models.module import SupervisedModule


def build_module(cfg: DictConfig, data: Dataset, fold: Fold, epoch_metrics: list[str]) -> SupervisedModule:
    """A fresh network from ``cfg.model`` inside the LightningModule that trains it."""
    return SupervisedModule(
        build_network(cfg, data.input_shape, data.n_outputs),
        data.task,
        optional_partial("optimizer", cfg.optimizer),
        optional_partial("scheduler", cfg.get("scheduler")),
        n_classes=len(data.classes),
        epoch_metrics=tuple(epoch_metrics),
        target_scale=fold.target_scale,
    )
