"""Fitting one model on one fold with a fresh Lightning Trainer.

Pruning across folds: each epoch's validation objective is reported to Optuna at step
``fold * max_epochs + epoch``, so steps are unique and increasing across the whole trial and a
pruner compares a trial with earlier ones at the same fold and epoch. A bad trial can therefore
stop during its first fold instead of after all of them.
"""

from __future__ import annotations

import logging
import signal
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from nnsearch.batches import TensorBatches
from nnsearch.cv import Fold, FoldCache
from nnsearch.data.dataset import Dataset
from nnsearch.errors import TrialFailed
from nnsearch.models.build import build_module
from nnsearch.models.module import SupervisedModule

VAL_BATCH = 4096


@dataclass
class FoldResult:
    index: int
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.history)


class FoldPruning(L.Callback):
    """Reports the validation objective to the Optuna trial each epoch; raises ``TrialPruned``.

    Unlike optuna-integration's callback, a missing metric is an error, not a warning, and the
    step encodes the fold so that reports of several folds never collide.
    """

    def __init__(self, trial: Any, monitor: str, fold: int, max_epochs: int) -> None:
        self.trial, self.monitor, self.fold, self.max_epochs = trial, monitor, fold, max_epochs

    def on_validation_end(self, trainer: L.Trainer, pl_module: SupervisedModule) -> None:
        import optuna

        if trainer.sanity_checking or not pl_module.history:
            return
        row = pl_module.history[-1]
        if self.monitor not in row:
            raise KeyError(f"pruning metric '{self.monitor}' not computed; have {', '.join(row)}")
        epoch = len(pl_module.history) - 1
        step = self.fold * self.max_epochs + epoch
        self.trial.report(row[self.monitor], step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at fold {self.fold}, epoch {epoch} (step {step})")


def quiet_lightning() -> None:
    """Silence Lightning's per-Trainer banners and warnings that do not apply to in-memory batches."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*number of training batches.*", ".*LeafSpec.*", ".*isinstance.*treespec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def make_trainer(cfg: DictConfig, callbacks: list[L.Callback]) -> L.Trainer:
    t = cfg.trainer
    es = t.get("early_stopping") or {}
    if es.get("patience") is not None:
        from lightning.pytorch.callbacks import EarlyStopping

        callbacks = [*callbacks, EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience, min_delta=es.min_delta)]
    return L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        gradient_clip_algorithm=t.gradient_clip_algorithm,
        deterministic=t.deterministic,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1_000_000,
    )


def fit_fold(
    cfg: DictConfig,
    data: Dataset,
    fold: Fold,
    *,
    seed: int,
    epoch_metrics: list[str],
    trial: Any | None = None,
    monitor: str | None = None,
    result: FoldResult | None = None,
) -> FoldResult:
    """Train a fresh model on ``fold`` and evaluate every metric on its validation rows.

    ``result`` is filled in place, so a caller still holds the curves of a fold that was pruned.
    """
    result = result or FoldResult(fold.index)
    torch.manual_seed(seed)
    module = build_module(cfg, data, fold, epoch_metrics)
    callbacks: list[L.Callback] = []
    if trial is not None and monitor is not None:
        callbacks.append(FoldPruning(trial, monitor, fold.index, cfg.trainer.max_epochs))
    trainer = make_trainer(cfg, callbacks)
    device = trainer.strategy.root_device
    batch_size = int(cfg.data.batch_size)
    generator = torch.Generator().manual_seed(seed)
    train = TensorBatches(fold.x_train.to(device), fold.y_train.to(device), batch_size, generator=generator)
    val = TensorBatches(fold.x_val.to(device), fold.y_val_scaled.to(device), VAL_BATCH)
    module.history = result.history
    try:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    except SystemExit:
        # Lightning turns Ctrl-C into sys.exit(1) and ignores further SIGINTs; restore both
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if not result.history:
        raise TrialFailed("no epoch was trained (is trainer.max_epochs at least 1?)")
    result.metrics = module.to(device).evaluate(fold.x_val.to(device), fold.y_val_scaled.to(device))
    return result


def fit_folds(
    cfg: DictConfig,
    data: Dataset,
    folds: FoldCache,
    *,
    seed: int,
    epoch_metrics: list[str],
    trial: Any | None = None,
    monitor: str | None = None,
    results: list[FoldResult],
) -> list[FoldResult]:
    """Cross-validate one configuration: a fresh model per fold, seeded ``seed * 1000 + fold``.

    ``results`` is filled as folds run, so a pruned or failed trial keeps the curves it produced.
    """
    for k in range(len(folds)):
        result = FoldResult(k)
        results.append(result)
        fit_fold(
            cfg,
            data,
            folds.get(k, cfg.data.get("scaler")),
            seed=seed * 1000 + k,
            epoch_metrics=epoch_metrics,
            trial=trial,
            monitor=monitor,
            result=result,
        )
    return results
