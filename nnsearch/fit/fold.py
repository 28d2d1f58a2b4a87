"""One fit of one fold: the only place nnsearch trains a model (trials, fold processes, DDP ranks, final model).

:func:`fit` runs a built module on the engine the settings choose (:mod:`nnsearch.fit.fast` or the
Trainer); :func:`fit_fold` builds a fold's module, batches and callbacks from the config and
evaluates the trained model on the fold's validation rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nnsearch.data.batches import TensorBatches
from nnsearch.data.dataset import Dataset
from nnsearch.errors import NNSearchError, TrialFailed
from nnsearch.fit import fast
from nnsearch.fit.logged import EngineUnsupported
from nnsearch.fit.settings import FitSettings
from nnsearch.fit.trainer import fit as trainer_fit
from nnsearch.fit.trainer import make_trainer
from nnsearch.fit.predictions import fold_predictions
from nnsearch.fit.callbacks import FoldCheckpoint, FoldPruning
from nnsearch.fit.checkpoint import FoldCheckpointing
from nnsearch.fit.result import FoldResult

if TYPE_CHECKING:
    from nnsearch.data.fold import Fold

VAL_BATCH = 4096
log = logging.getLogger("nnsearch")
_fallbacks_logged: set[str] = set()


@dataclass(frozen=True)
class Rank:
    """This process's place in a DDP fit of one fold (:mod:`nnsearch.fit.ddp` starts the ranks)."""

    index: int
    world: int


@dataclass
class Job:
    """What one fit trains: a fresh module, its batches and callbacks."""

    module: L.LightningModule
    train: Any
    val: Any
    callbacks: list[L.Callback]
    checkpoint: Any = None  # nnsearch.fit.checkpoint.FoldCheckpointing: where this fit saves and resumes

    def resume_path(self, engine: str) -> str | None:
        return self.checkpoint.resume_path(engine) if self.checkpoint is not None else None


def fit(build: Callable[[torch.device], Job], settings: FitSettings, *, strategy: Any = "auto", plugins: list | None = None) -> Job:
    """Build a job (seeded inside ``build``) and fit it: on the fast engine when it can, else on the Trainer.

    A fast fit that meets something only the Trainer does is built again, from the same seed, and
    fitted on the Trainer, so the engine changes speed, never results. ``strategy`` and ``plugins``
    go to the Trainer (a DDP rank's; several devices always run on the Trainer).
    """
    device = fast.device_of(settings.accelerator) or torch.device("cpu")
    if settings.engine == "fast":
        reason = fast.unsupported(settings)
        if not reason:
            job = build(device)
            try:
                fast.fit(job.module, _on_device(job.train, device), _on_device(job.val, device), settings, job.callbacks, ckpt_path=job.resume_path("fast"))
                return job
            except EngineUnsupported as why:
                reason = str(why)
        _log_fallback(reason)
    job = build(device)
    trainer_fit(make_trainer(settings, job.callbacks, strategy=strategy, plugins=plugins), job.module, job.train, job.val,
                ckpt_path=job.resume_path("lightning"))
    return job


class DeviceBatches:
    """A DataLoader's batches moved to the fast engine's device (the Trainer moves them itself)."""

    def __init__(self, loader: Any, device: torch.device) -> None:
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        from lightning.fabric.utilities import move_data_to_device

        return (move_data_to_device(batch, self.device) for batch in self.loader)


def _on_device(batches: Any, device: torch.device) -> Any:
    return batches if device.type == "cpu" or isinstance(batches, TensorBatches) else DeviceBatches(batches, device)


def _log_fallback(reason: str) -> None:
    if reason not in _fallbacks_logged:
        _fallbacks_logged.add(reason)
        log.info("trainer.engine=fast: training on Lightning's Trainer because of %s", reason)


EpochHook = Callable[[int, int, Mapping[str, float]], None]  # (fold, epoch, history row)


class EpochReport(L.Callback):
    """Hands each validation epoch's history row to ``on_epoch`` (the terminal's progress line, a stop check)."""

    def __init__(self, on_epoch: EpochHook, fold: int, history: list[dict[str, float]]) -> None:
        self.on_epoch, self.fold, self.history = on_epoch, fold, history

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not trainer.sanity_checking and self.history:
            self.on_epoch(self.fold, len(self.history) - 1, self.history[-1])


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
    checkpoint: FoldCheckpointing | None = None,
) -> FoldResult:
    """Train a fresh model on ``fold`` and evaluate every metric on its validation rows.

    ``result`` is filled in place, so a caller still holds the curves of a fold that was pruned.
    ``checkpoint``: where the fold saves its training state as it goes and records its result when
    done (:mod:`nnsearch.fit.checkpoint`); a fold that finished in an earlier attempt of the trial is
    read back, not refitted, and one that was interrupted resumes from its last checkpoint.
    """
    from nnsearch.fit import ddp
    from nnsearch.models.user import is_user_module

    settings = FitSettings.from_config(cfg.trainer)
    result = result or FoldResult(fold.index)
    done = checkpoint.finished() if checkpoint is not None else None
    if done is not None:
        _restore_finished(result, done["result"], trial, monitor, settings.max_epochs)
        return result
    module = None
    if ddp.world_size(cfg) > 1:  # several devices: ranks in processes of their own (no per-epoch hook)
        if is_user_module(cfg.model) or hasattr(fold, "train_rows"):
            raise NNSearchError("trainer.devices > 1 (DDP) does not yet train a LightningModule or Dataset of your own; use one device per trial "
                                "(launch.gpus runs one trial per GPU).")
        ddp.fit_fold_ddp(cfg, data, fold, seed=seed, epoch_metrics=epoch_metrics, trial=trial, monitor=monitor, result=result,
                         keep_predictions=wants_predictions(cfg), checkpoint=checkpoint)
    else:
        module = fit_one_fold(cfg, data, fold, settings, seed=seed, epoch_metrics=epoch_metrics, trial=trial, monitor=monitor, result=result,
                              on_epoch=on_epoch, checkpoint=checkpoint)[0]
    if checkpoint is not None:
        weights = {k: v.detach().cpu() for k, v in module.state_dict().items()} if module is not None else None
        checkpoint.finish(result, weights)
    return result


def _restore_finished(result: FoldResult, done: FoldResult, trial: Any, monitor: str | None, epochs_per_fold: int) -> None:
    """A fold finished by an earlier attempt of the trial: its result, and its epochs reported again to the trial
    (a retry is a new Optuna trial: the pruner compares it on the steps the first attempt reported)."""
    from nnsearch.fit.callbacks import report_history

    result.history[:] = done.history
    result.metrics, result.predictions = done.metrics, done.predictions
    result.restored_epochs, result.restored_whole = len(done.history), True
    report_history(trial, monitor, result.index, result.history, epochs_per_fold)


def configured_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Fresh Lightning callbacks of the ``callbacks`` group, one per named entry, for one fit."""
    from nnsearch.config.building import instantiate_node

    group = cfg.get("callbacks")
    nodes = OmegaConf.to_container(group, resolve=True) if OmegaConf.is_dict(group) else {}
    return [instantiate_node(f"callbacks.{name}", node) for name, node in nodes.items() if node]  # type: ignore[union-attr]


def fit_one_fold(cfg: DictConfig, data: Any, fold: Any, settings: FitSettings, *, seed: int, epoch_metrics: list[str], trial: Any,
                 monitor: str | None, result: FoldResult, on_epoch: EpochHook | None, rank: Rank | None = None,
                 checkpoint: FoldCheckpointing | None = None) -> tuple[L.LightningModule, FoldResult]:
    """One fold: a fresh module (nnsearch's family or the user's), its batches (in-memory tensors already on the
    device, or DataLoaders over a user's Dataset or DataModule) and callbacks, fitted and scored.

    Returns the trained module and ``result``. As ``rank`` of a DDP fit, the training rows are this
    rank's ``DistributedSampler`` share, the pruning decision is rank 0's, broadcast to all, and only
    rank 0 scores the fold (a pruned fold raises its ``FoldPruned`` there). With ``checkpoint`` the fit
    saves its state as it goes and resumes from a checkpoint an earlier attempt left
    (:class:`nnsearch.fit.callbacks.FoldCheckpoint`).

    A user's LightningModule is scored by the values it logs (:mod:`nnsearch.models.user`), and
    also by nnsearch's standard metrics of the task when its outputs fit them; one of nnsearch's
    families on a user's Dataset is scored as on shipped data.
    """
    from nnsearch.fit import ddp
    from nnsearch.models.build import build_module
    from nnsearch.models.distill import fold_teacher_logits
    from nnsearch.fit.callbacks import LoggedHistory
    from nnsearch.models.user import build_user_module, is_user_module

    own_module, own_data = is_user_module(cfg.model), hasattr(fold, "train_rows")

    def build(device: torch.device) -> Job:
        torch.manual_seed(seed)
        result.history.clear()
        callbacks: list[L.Callback] = []
        if own_module:
            module = build_user_module(cfg.model)
            callbacks.append(LoggedHistory(result.history))
        else:
            module = build_module(cfg, data, fold, epoch_metrics)
            module.history = result.history
        if own_data:
            train, val = data.loaders(fold, seed=seed, pin_memory=device.type == "cuda")
        elif rank is not None:  # rows stay on the CPU: Lightning moves each batch to this rank's device
            train = ddp.rank_batches(fold.x_train, fold.y_train, int(cfg.data.batch_size), rank=rank.index, world=rank.world, seed=seed)
            val = TensorBatches(fold.x_val, fold.y_val_scaled, VAL_BATCH)
        else:
            x_train, y_train, x_val, y_val = on_device(fold, device)
            teacher = fold_teacher_logits(cfg, data, fold.train_idx)  # the fold's training rows only, cached across trials
            train = TensorBatches(x_train, y_train, int(cfg.data.batch_size), generator=torch.Generator().manual_seed(seed),
                                  extra=None if teacher is None else teacher.to(device))
            val = TensorBatches(x_val, y_val, VAL_BATCH)
        if on_epoch is not None:
            callbacks.append(EpochReport(on_epoch, fold.index, result.history))
        if rank is not None and monitor is not None:  # every rank joins the broadcast of rank 0's decision
            callbacks.append(ddp.DDPPruning(trial, monitor, fold.index, settings.max_epochs))
        elif trial is not None and monitor is not None:
            callbacks.append(FoldPruning(trial, monitor, fold.index, settings.max_epochs, history=result.history))
        saving = [FoldCheckpoint(checkpoint, result.history, train)] if checkpoint is not None and checkpoint.every.enabled else []
        return Job(module, train, val, [*callbacks, *configured_callbacks(cfg), *settings.callbacks(), *saving],
                   checkpoint=checkpoint if saving else None)

    if rank is None:
        job = fit(build, settings)
    else:
        from lightning.pytorch.plugins.environments import LightningEnvironment

        # the environment is named: under SLURM or torchrun Lightning would otherwise read their rank variables
        job = fit(build, settings, strategy="ddp", plugins=[LightningEnvironment()])
    result.restored_epochs = max((c.restored_epochs for c in job.callbacks if isinstance(c, FoldCheckpoint)), default=0)
    if rank is not None:
        if rank.index != 0:
            return job.module, result
        pruned = next((c.pruned for c in job.callbacks if isinstance(c, ddp.DDPPruning) and c.pruned is not None), None)
        if pruned is not None:
            raise pruned
    if not result.history:
        raise TrialFailed("no epoch was trained (is trainer.max_epochs at least 1?)")
    if own_module:
        from nnsearch.models.user import fold_scores

        module = job.module.cpu()
        metrics = OmegaConf.to_container(cfg.study.metric) if OmegaConf.is_list(cfg.study.metric) else [cfg.study.metric]
        directions = cfg.study.get("direction")
        direction = (directions[0] if OmegaConf.is_list(directions) else directions) or "minimize"
        result.metrics = fold_scores(result.history, str(metrics[0]), pick=str(cfg.cv.get("fold_score", "last")), direction=str(direction))
        result.metrics.update(standard_metrics(module, job.val, data))
        return module, result
    if own_data and hasattr(job.module, "evaluate_outputs"):
        return job.module, evaluate_batches(job.module, result, job.val, keep_predictions=wants_predictions(cfg))
    x_val, y_val = _gathered(job.val)  # in-memory rows stay on the fit's device
    device = job.module.device if rank is not None else x_val.device
    return job.module, evaluate(job.module, result, x_val.to(device), y_val.to(device), device=device, keep_predictions=wants_predictions(cfg))


def _gathered(batches: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``(x, y)`` validation rows: the tensors of in-memory batches, or a loader's batches joined on the CPU."""
    if isinstance(batches, TensorBatches):
        return batches.x, batches.y
    xs, ys = zip(*((b[0], b[1]) for b in batches), strict=True)
    return torch.cat(xs).cpu(), torch.cat(ys).cpu()


@torch.no_grad()
def standard_metrics(module: L.LightningModule, val: Any, data: Any) -> dict[str, float]:
    """nnsearch's metrics of the data's task on a user's module's validation outputs (``forward``), so that it
    lines up with shipped models; {} when the task is unknown or the outputs do not have the task's shape."""
    from nnsearch.data.dataset import Task
    from nnsearch.models.metrics import compute_metrics

    task = getattr(data, "task", None)
    if task is None or not task.is_supervised or task is Task.MULTITASK:  # several targets: the module's logged values score it
        return {}
    module.eval()
    outputs, targets = [], []
    for batch in val:
        x, y = batch[0], batch[1]
        outputs.append(module(x).detach().float())
        targets.append(torch.as_tensor(y))
    out, target = torch.cat(outputs), torch.cat(targets)
    n_classes = len(data.classes) or (out.shape[1] if out.ndim == 2 else 0)  # a DataModule's classes are known from the outputs only
    if task is Task.MULTICLASS and (out.ndim != 2 or out.shape[1] != n_classes):
        return {}
    if task is not Task.MULTICLASS:
        if out.ndim == 2 and out.shape[1] == 1:
            out = out.squeeze(-1)
        if out.ndim != 1:
            return {}
    try:
        return compute_metrics(task, out, target if task is Task.REGRESSION else target.long(), n_classes, None)
    except (RuntimeError, ValueError):
        return {}


def wants_predictions(cfg: DictConfig) -> bool:
    """Validation outputs are kept only when per-trial plots will draw them."""
    return OmegaConf.select(cfg, "tracking.trial_plots", default="complete") not in ("none", False, None)


def evaluate(module: Any, result: FoldResult, x_val: torch.Tensor, y_val: torch.Tensor, *, device: torch.device, keep_predictions: bool) -> FoldResult:
    """Every metric of the trained ``module`` on the fold's validation rows, into ``result``."""
    from nnsearch.models.module import SupervisedModule
    from nnsearch.models.multitask import MultiTaskModule

    if not result.history:
        raise TrialFailed("no epoch was trained (is trainer.max_epochs at least 1?)")
    module = module.to(device)
    result.metrics = module.evaluate(x_val, y_val)
    if keep_predictions and isinstance(module, (SupervisedModule, MultiTaskModule)):  # multi-task: every head side by side
        result.predictions = fold_predictions(module, x_val, y_val)
    return result


@torch.no_grad()
def evaluate_batches(module: Any, result: FoldResult, val: Any, *, keep_predictions: bool) -> FoldResult:
    """Every metric on a DataLoader's validation batches, streamed: only the outputs (rows x classes) are kept,
    not the inputs, so memory does not grow with the files of a large image folder."""
    from nnsearch.fit.predictions import predictions_of

    module.eval()
    outputs, targets = [], []
    for batch in val:
        outputs.append(module(batch[0].to(module.device)).float().cpu())
        targets.append(torch.as_tensor(batch[1]))
    out, y = torch.cat(outputs), torch.cat(targets)
    result.metrics = module.evaluate_outputs(out, y)
    if keep_predictions:
        result.predictions = predictions_of(module, out, y)
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
