"""Fitting one model on one fold: on the fast loop (``trainer.engine: fast``) or a fresh Lightning Trainer.

Engines: ``fast`` (the default) drives the LightningModule's own hooks in a tight loop
(:mod:`nnsearch.fast_loop`) and gives the same curves and metrics as Lightning for the same seed at
a fraction of the per-step cost; where a setting or a module needs the real Trainer (manual
optimization, several devices, mixed precision, hooks that need Lightning's plugins), the fold runs
on Lightning instead, and the reason is logged once. ``lightning`` always uses the Trainer.

Pruning across folds: each epoch's validation objective is reported to Optuna at step
``fold * max_epochs + epoch``, so steps are unique and increasing across the whole trial and a
pruner compares a trial with earlier ones at the same fold and epoch. A bad trial can therefore
stop during its first fold instead of after all of them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from nnsearch import ddp, fast_loop
from nnsearch.batches import TensorBatches
from nnsearch.cv import Fold, FoldCache
from nnsearch.data.dataset import Dataset
from nnsearch.errors import NNSearchError, TrialFailed
from nnsearch.models.build import build_module
from nnsearch.models.module import SupervisedModule
from nnsearch.predictions import Predictions, fold_predictions

VAL_BATCH = 4096
ENGINES = ("fast", "lightning")
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


def pruned_at(step: int, max_epochs: int) -> str:
    """The reason of a pruned trial; ``objective`` reads the fold and epoch back from it."""
    return f"pruned at fold {step // max_epochs}, epoch {step % max_epochs} (step {step})"


class FoldPruning(L.Callback):
    """Reports the validation objective to the Optuna trial each epoch; raises ``TrialPruned``.

    Unlike optuna-integration's callback, a missing metric is an error, not a warning, and the
    step encodes the fold so that reports of several folds never collide.
    """

    def __init__(self, trial: Any, monitor: str, fold: int, max_epochs: int) -> None:
        self.trial, self.monitor, self.fold, self.max_epochs = trial, monitor, fold, max_epochs

    def on_validation_end(self, trainer: L.Trainer, pl_module: SupervisedModule) -> None:
        if not trainer.sanity_checking:
            self.report(pl_module)

    def report(self, pl_module: SupervisedModule) -> None:
        """Report the newest history row; shared by both engines so they prune identically."""
        import optuna

        if not pl_module.history:
            return
        row = pl_module.history[-1]
        if self.monitor not in row:
            raise KeyError(f"pruning metric '{self.monitor}' not computed; have {', '.join(row)}")
        epoch = len(pl_module.history) - 1
        step = self.fold * self.max_epochs + epoch
        self.trial.report(row[self.monitor], step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(pruned_at(step, self.max_epochs))


EpochHook = Callable[[int, int, Mapping[str, float]], None]  # (fold, epoch, history row)


class EpochReport(L.Callback):
    """Hands each validation epoch's history row to ``on_epoch`` (the terminal's progress line)."""

    def __init__(self, on_epoch: EpochHook, fold: int) -> None:
        self.on_epoch, self.fold = on_epoch, fold

    def on_validation_end(self, trainer: L.Trainer, pl_module: SupervisedModule) -> None:
        if not trainer.sanity_checking:
            self.report(pl_module)

    def report(self, pl_module: SupervisedModule) -> None:
        if pl_module.history:
            self.on_epoch(self.fold, len(pl_module.history) - 1, pl_module.history[-1])


def quiet_lightning() -> None:
    """Silence Lightning's per-Trainer banners and warnings that do not apply to in-memory batches."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*number of training batches.*", ".*LeafSpec.*", ".*isinstance.*treespec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def make_trainer(cfg: DictConfig, callbacks: list[L.Callback], *, strategy: str = "auto", plugins: list | None = None) -> L.Trainer:
    t = cfg.trainer
    es = t.get("early_stopping") or {}
    if es.get("patience") is not None:
        from lightning.pytorch.callbacks import EarlyStopping

        callbacks = [*callbacks, EarlyStopping(monitor=es.monitor, mode=es.mode, patience=es.patience, min_delta=es.min_delta)]
    return L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=strategy,
        plugins=plugins,
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


def engine_of(cfg: DictConfig) -> str:
    """``trainer.engine``, checked (a missing key means ``fast``)."""
    engine = cfg.trainer.get("engine") or "fast"
    if engine not in ENGINES:
        raise NNSearchError(f"Unknown trainer.engine '{engine}'; choose one of {', '.join(ENGINES)}.")
    return engine


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
    result = result or FoldResult(fold.index)
    if engine_of(cfg) == "fast":
        try:
            return _fit_fast(cfg, data, fold, seed=seed, epoch_metrics=epoch_metrics, trial=trial, monitor=monitor, result=result, on_epoch=on_epoch)
        except fast_loop.FastPathUnsupported as why:
            _log_fallback(str(why))
            result.history.clear()
    return _fit_lightning(cfg, data, fold, seed=seed, epoch_metrics=epoch_metrics, trial=trial, monitor=monitor, result=result, on_epoch=on_epoch)


def _log_fallback(reason: str) -> None:
    if reason not in _fallbacks_logged:
        _fallbacks_logged.add(reason)
        log.info("trainer.engine=fast: training on Lightning because of %s", reason)


def _fit_fast(
    cfg: DictConfig,
    data: Dataset,
    fold: Fold,
    *,
    seed: int,
    epoch_metrics: list[str],
    trial: Any | None,
    monitor: str | None,
    result: FoldResult,
    on_epoch: EpochHook | None = None,
) -> FoldResult:
    t = cfg.trainer
    device = fast_loop.resolve_device(accelerator=t.accelerator, devices=t.devices, precision=t.precision)
    torch.manual_seed(seed)
    module = build_module(cfg, data, fold, epoch_metrics)
    fast_loop.check_module(module)
    x_train, y_train, x_val, y_val = _on_device(fold, device)
    train = TensorBatches(x_train, y_train, int(cfg.data.batch_size), generator=torch.Generator().manual_seed(seed))
    val = TensorBatches(x_val, y_val, VAL_BATCH)
    es = t.get("early_stopping") or {}
    stopper = None
    if es.get("patience") is not None:
        stopper = fast_loop.EarlyStopping(es.monitor, mode=es.mode, patience=es.patience, min_delta=es.min_delta)
    reports = [EpochReport(on_epoch, fold.index).report] if on_epoch is not None else []
    if trial is not None and monitor is not None:
        reports.append(FoldPruning(trial, monitor, fold.index, t.max_epochs).report)
    module.history = result.history
    if t.deterministic:
        torch.use_deterministic_algorithms(True)  # what Trainer(deterministic=True) sets
    fast_loop.fit(
        module,
        train,
        val,
        max_epochs=t.max_epochs,
        device=device,
        gradient_clip_val=t.gradient_clip_val,
        gradient_clip_algorithm=t.gradient_clip_algorithm,
        early_stopping=stopper,
        after_validation=reports,
    )
    return _finish(module, result, x_val, y_val, device=device, keep_predictions=_wants_predictions(cfg))


def _fit_lightning(
    cfg: DictConfig,
    data: Dataset,
    fold: Fold,
    *,
    seed: int,
    epoch_metrics: list[str],
    trial: Any | None,
    monitor: str | None,
    result: FoldResult,
    on_epoch: EpochHook | None = None,
) -> FoldResult:
    if ddp.world_size(cfg) > 1:  # several devices: ranks in processes of their own (no per-epoch hook)
        return ddp.fit_fold_ddp(
            cfg, data, fold, seed=seed, epoch_metrics=epoch_metrics, trial=trial, monitor=monitor, result=result, keep_predictions=_wants_predictions(cfg)
        )
    torch.manual_seed(seed)
    module = build_module(cfg, data, fold, epoch_metrics)
    callbacks: list[L.Callback] = [EpochReport(on_epoch, fold.index)] if on_epoch is not None else []
    if trial is not None and monitor is not None:
        callbacks.append(FoldPruning(trial, monitor, fold.index, cfg.trainer.max_epochs))
    trainer = make_trainer(cfg, callbacks)
    device = trainer.strategy.root_device
    x_train, y_train, x_val, y_val = _on_device(fold, device)
    generator = torch.Generator().manual_seed(seed)
    train = TensorBatches(x_train, y_train, int(cfg.data.batch_size), generator=generator)
    val = TensorBatches(x_val, y_val, VAL_BATCH)
    module.history = result.history
    fit_interruptibly(trainer, module, train, val)
    return _finish(module, result, x_val, y_val, device=device, keep_predictions=_wants_predictions(cfg))


def fit_interruptibly(trainer: L.Trainer, module: Any, train: Any, val: Any) -> None:
    """``trainer.fit``, with a stop signal raised as KeyboardInterrupt.

    Lightning turns Ctrl-C into ``sys.exit(1)`` (and ignores further SIGINTs until the study's
    handler is restored): make it a KeyboardInterrupt again, which the study handles.
    """
    try:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def _wants_predictions(cfg: DictConfig) -> bool:
    """Validation outputs are kept only when per-trial plots will draw them."""
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, "tracking.trial_plots", default="complete") not in ("none", False, None)


def _finish(module: Any, result: FoldResult, x_val: torch.Tensor, y_val: torch.Tensor, *, device: torch.device, keep_predictions: bool) -> FoldResult:
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


def _on_device(fold: Fold, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
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
    on_epoch: EpochHook | None = None,
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
            on_epoch=on_epoch,
        )
    return results
