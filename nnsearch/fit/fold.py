"""One fit of one fold: the only place nnsearch trains a model (trials, fold processes, DDP ranks, final model).

:func:`fit` runs a built module on the engine the settings choose (:mod:`nnsearch.fit.fast` or the
Trainer); :func:`fit_fold` builds a fold's module, batches and callbacks from the config and
evaluates the trained model on the fold's validation rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nnsearch.batches import TensorBatches
from nnsearch.data.dataset import Dataset
from nnsearch.errors import TrialFailed
from nnsearch.fit import fast
from nnsearch.fit.logged import EngineUnsupported
from nnsearch.fit.settings import FitSettings
from nnsearch.fit.trainer import fit as trainer_fit
from nnsearch.fit.trainer import make_trainer
from nnsearch.predictions import Predictions, fold_predictions
from nnsearch.pruning import FoldPruning

if TYPE_CHECKING:
    from nnsearch.cv.splits import Fold

VAL_BATCH = 4096
log = logging.getLogger("nnsearch")
_fallbacks_logged: set[str] = set()


@dataclass
class FoldResult:
    index: int
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: Predictions | None = None  # validation outputs for the per-trial plots

    @property
    def epochs(self) -> int:
        return len(self.history)


@dataclass
class Job:
    """What one fit trains: a fresh module, its batches and callbacks."""

    module: L.LightningModule
    train: Any
    val: Any
    callbacks: list[L.Callback]


def fit(build: Callable[[torch.device], Job], settings: FitSettings) -> Job:
    """Build a job (seeded inside ``build``) and fit it: on the fast engine when it can, else on the Trainer.

    A fast fit that meets something only the Trainer does is built again, from the same seed, and
    fitted on the Trainer, so the engine changes speed, never results.
    """
    device = fast.device_of(settings.accelerator) or torch.device("cpu")
    if settings.engine == "fast":
        reason = fast.unsupported(settings)
        if not reason:
            job = build(device)
            try:
                fast.fit(job.module, job.train, job.val, settings, job.callbacks)
                return job
            except EngineUnsupported as why:
                reason = str(why)
        _log_fallback(reason)
    job = build(device)
    trainer_fit(make_trainer(settings, job.callbacks), job.module, job.train, job.val)
    return job


def _log_fallback(reason: str) -> None:
    if reason not in _fallbacks_logged:
        _fallbacks_logged.add(reason)
        log.info("trainer.engine=fast: training on Lightning's Trainer because of %s", reason)


EpochHook = Callable[[int, int, Mapping[str, float]], None]  # (fold, epoch, history row)


class EpochReport(L.Callback):
    """Hands each validation epoch's history row to ``on_epoch`` (the terminal's progress line, a stop check)."""

    def __init__(self, on_epoch: EpochHook, fold: int) -> None:
        self.on_epoch, self.fold = on_epoch, fold

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not trainer.sanity_checking and pl_module.history:
            self.on_epoch(self.fold, len(pl_module.history) - 1, pl_module.history[-1])


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
    on_epoch: EpochHook | None = None,
) -> FoldResult:
    """Train a fresh model on ``fold`` and evaluate every metric on its validation rows.

    ``result`` is filled in place, so a caller still holds the curves of a fold that was pruned.
    """
    from nnsearch.fit import ddp
    from nnsearch.models.build import build_module

    settings = FitSettings.from_config(cfg.trainer)
    result = result or FoldResult(fold.index)
    keep_predictions = wants_predictions(cfg)
    if ddp.world_size(cfg) > 1:  # several devices: ranks in processes of their own (no per-epoch hook)
        return ddp.fit_fold_ddp(cfg, data, fold, seed=seed, epoch_metrics=epoch_metrics, trial=trial, monitor=monitor, result=result,
                                keep_predictions=keep_predictions)

    def build(device: torch.device) -> Job:
        torch.manual_seed(seed)
        module = build_module(cfg, data, fold, epoch_metrics)
        result.history.clear()
        module.history = result.history
        x_train, y_train, x_val, y_val = on_device(fold, device)
        callbacks: list[L.Callback] = [EpochReport(on_epoch, fold.index)] if on_epoch is not None else []
        if trial is not None and monitor is not None:
            callbacks.append(FoldPruning(trial, monitor, fold.index, settings.max_epochs))
        train = TensorBatches(x_train, y_train, int(cfg.data.batch_size), generator=torch.Generator().manual_seed(seed))
        return Job(module, train, TensorBatches(x_val, y_val, VAL_BATCH), [*callbacks, *settings.callbacks()])

    job = fit(build, settings)
    val = job.val  # the fold's validation rows, already on the fit's device
    return evaluate(job.module, result, val.x, val.y, device=val.x.device, keep_predictions=keep_predictions)


def wants_predictions(cfg: DictConfig) -> bool:
    """Validation outputs are kept only when per-trial plots will draw them."""
    return OmegaConf.select(cfg, "tracking.trial_plots", default="complete") not in ("none", False, None)


def evaluate(module: Any, result: FoldResult, x_val: torch.Tensor, y_val: torch.Tensor, *, device: torch.device, keep_predictions: bool) -> FoldResult:
    """Every metric of the trained ``module`` on the fold's validation rows, into ``result``."""
    from nnsearch.models.module import SupervisedModule

    if not result.history:
        raise TrialFailed("no epoch was trained (is trainer.max_epochs at least 1?)")
    module = module.to(device)
    result.metrics = module.evaluate(x_val, y_val)
    if keep_predictions and isinstance(module, SupervisedModule):
        result.predictions = fold_predictions(module, x_val, y_val)
    return result


# Fold tensors already copied to an accelerator, reused by later trials: FoldCache keeps each
# prepared fold alive for the whole study, so its id stays valid while it is cached here.
_DEVICE_COPIES: dict[tuple[int, str], tuple[Fold, tuple[torch.Tensor, ...]]] = {}


def on_device(fold: Fold, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_val, y_val_scaled)`` on ``device``; copied once per fold, not per trial."""
    tensors = (fold.x_train, fold.y_train, fold.x_val, fold.y_val_scaled)
    if device.type == "cpu":
        return tensors
    key = (id(fold), str(device))
    cached = _DEVICE_COPIES.get(key)
    if cached is None or cached[0] is not fold:
        if len(_DEVICE_COPIES) >= 64:
            _DEVICE_COPIES.clear()
        cached = _DEVICE_COPIES[key] = (fold, tuple(t.to(device, non_blocking=True) for t in tensors))
    return cached[1]  # type: ignore[return-value]
