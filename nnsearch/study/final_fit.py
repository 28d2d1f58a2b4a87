"""The final fit: the chosen configuration retrained on all development rows and scored once on the
held-out test split; :mod:`nnsearch.study.final_model` logs it to MLflow as a loadable model.

Why retrain: each trial's models saw only ``(k-1)/k`` of the development rows; the final model
sees all of them. The test split (``cv.test_size``) was set aside before any fold existed, so its
score is an unbiased estimate to put beside the (optimistically selected) CV score.

Nothing decides on the test rows: early stopping is turned off and the model trains for the number
of epochs the chosen trial's folds trained on average, and the per-epoch validation that Lightning
runs (and ``ReduceLROnPlateau`` reads) is fed the training rows. The seed is that of the chosen
trial's fold 0.

Apart from the MLflow model (:mod:`nnsearch.study.final_model`): a fold process retrains without
importing MLflow, and the study's process logs without importing Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError


@dataclass(frozen=True)
class ServedNet:
    """What the pyfunc model takes from a trained module of nnsearch's families: its network and target scale.

    A final model fitted in a fold process comes back as this instead of the LightningModule, so
    that the study's process, which logs it, never imports Lightning (:func:`fit_final_served`).
    """

    net: Any
    target_scale: Any = (0.0, 1.0)


@dataclass
class FinalFit:
    module: Any  # the trained LightningModule, or the ServedNet of one fitted in a fold process
    scaler: Any  # fitted on the development rows: the scaler, or the data's featurizer where it has one
    test_metrics: dict[str, float]
    epochs: int
    seed: int
    n_train: int
    n_test: int
    code_paths: list[str] | None = None  # the user's packages, for a model trained from the user's code
    test_predictions: Any = None  # the test rows' outputs (nnsearch.fit.predictions.Predictions), for the final run's plots


def final_epochs(cfg: DictConfig, trial: Any | None, n_folds: int) -> int:
    """The chosen trial's mean epochs per fold (early stopping may have cut folds short)."""
    epochs = trial.user_attrs.get("epochs") if trial is not None else None
    if epochs and n_folds:
        return max(1, round(epochs / n_folds))
    return int(cfg.trainer.max_epochs)


def fit_final(cfg: DictConfig, dev: Any, test: Any | None, *, seed: int, epochs: int) -> FinalFit:
    """Train ``cfg`` on every row of ``dev``; evaluate on ``test`` when there is one."""
    import torch

    from nnsearch.data.batches import TensorBatches
    from nnsearch.cv.splits import fit_scaler
    from nnsearch.fit import FitSettings, Job, fit
    from nnsearch.fit.fold import VAL_BATCH, on_device
    from nnsearch.models.build import build_module
    from nnsearch.models.distill import fold_teacher_logits
    from nnsearch.models.user import is_user_module

    # the trials' fit settings (engine included), for the chosen epochs, without early stopping, on one device
    settings = replace(FitSettings.from_config(cfg.trainer), max_epochs=int(epochs), early_stopping=None, devices=1)
    if is_user_module(cfg.model) or hasattr(dev, "kind"):
        return _fit_final_own(cfg, dev, test, settings, seed=seed)
    n_dev = len(dev.y)
    scaler_kind = cfg.data.get("scaler") or dev.scaler
    fold = _all_rows_fold(dev, test, scaler_kind)

    def build(device: torch.device) -> Job:
        torch.manual_seed(seed)
        module = build_module(cfg, dev, fold, [])
        x_train, y_train, _, _ = on_device(fold, device)
        teacher = fold_teacher_logits(cfg, dev, fold.train_idx)  # distillation: the teacher's logits for the development rows
        batches = TensorBatches(x_train, y_train, int(cfg.data.batch_size), generator=torch.Generator().manual_seed(seed),
                                extra=None if teacher is None else teacher.to(device))
        return Job(module, batches, TensorBatches(x_train, y_train, VAL_BATCH), [])  # validated on training rows, never the test rows

    from nnsearch.fit.predictions import fold_predictions

    module = fit(build, settings).module.cpu()  # scored and logged on the CPU
    metrics = module.evaluate(fold.x_val, fold.y_val_scaled) if test is not None else {}
    predictions = fold_predictions(module, fold.x_val, fold.y_val_scaled) if test is not None and dev.task is not None and dev.task.is_supervised else None
    fitted = fold.featurizer if fold.featurizer is not None else fit_scaler(scaler_kind, dev.X)
    return FinalFit(module, fitted, metrics, int(epochs), seed, n_dev, 0 if test is None else len(test.y), test_predictions=predictions)


def _all_rows_fold(dev: Any, test: Any | None, scaler: str | None) -> Any:
    """One fold of every development row for training, validated on the test rows (or, without a test
    split, on the training rows), prepared as a trial's folds are."""
    from nnsearch.cv.splits import prepare_fold

    n_dev = len(dev.y)
    both = dev if test is None else replace(dev, X=np.concatenate([dev.X, test.X]), y=np.concatenate([dev.y, test.y]))
    train_idx = np.arange(n_dev)
    return prepare_fold(both, 0, train_idx, np.arange(n_dev, len(both.y)) if test is not None else train_idx, scaler)


def fit_final_served(dev: Any, cfg: DictConfig, test: Any | None, *, seed: int, epochs: int) -> FinalFit:
    """:func:`fit_final` as a fold process runs it (``FoldPool.submit_on_data``): the module comes back as its :class:`ServedNet`."""
    fit = fit_final(cfg, dev, test, seed=seed, epochs=epochs)
    return replace(fit, module=ServedNet(fit.module.net, getattr(fit.module, "target_scale", (0.0, 1.0))))


def _fit_final_own(cfg: DictConfig, dev: Any, test: Any | None, settings: Any, *, seed: int) -> FinalFit:
    """The final model when the module or the data is the user's: the same fold fit, on all development rows.

    It validates on the test rows each epoch (or on the training rows without a test split), which
    decides nothing: epochs are fixed and no early stopping runs. The scores are the last epoch's.
    """
    from nnsearch.data.user import UserFold
    from nnsearch.fit.fold import FoldResult, fit_one_fold

    if getattr(dev, "kind", None) == "datamodule":
        raise NNSearchError("data=datamodule serves folds only, so there are no development rows to retrain on; use the best trial's config")
    cfg = OmegaConf.merge(cfg, {"cv": {"fold_score": "last"}})
    if hasattr(dev, "kind"):
        fold: Any = UserFold(0, dev.rows, test.rows if test is not None else dev.rows)
    else:
        fold = _all_rows_fold(dev, test, cfg.data.get("scaler") or dev.scaler)
    module, result = fit_one_fold(cfg, dev, fold, settings, seed=seed, epoch_metrics=[], trial=None, monitor=None, result=FoldResult(0), on_epoch=None)
    tested = {k: v for k, v in result.metrics.items() if not k.startswith("train/")} if test is not None else {}
    n_dev = len(dev.rows) if hasattr(dev, "kind") else len(dev.y)
    return FinalFit(module.cpu(), None, tested, settings.max_epochs, seed, n_dev, 0 if test is None else len(test.y), code_paths=own_code_paths(cfg))


def own_code_paths(cfg: DictConfig) -> list[str]:
    """The folders of the user's packages the config builds from (every ``_target_`` outside the installed
    libraries), and nnsearch's own: a logged model imports them wherever it is loaded."""
    import importlib.util
    import sys

    import nnsearch

    def targets(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [str(v) for k, v in node.items() if k == "_target_"] + [t for v in node.values() for t in targets(v)]
        if isinstance(node, list):
            return [t for v in node for t in targets(v)]
        return []

    plain = OmegaConf.to_container(cfg, resolve=False)
    tops = {t.split(".")[0] for key in ("model", "data", "callbacks") for t in targets(plain.get(key))}  # type: ignore[union-attr]
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix)}
    paths = [str(Path(nnsearch.__file__).parent)]
    for top in sorted(tops - {"nnsearch", "torch", "lightning", "torchvision", "torchmetrics"}):
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
            continue
        where = Path(spec.origin).resolve()
        where = where.parent if spec.submodule_search_locations else where
        if not any(base in where.parents for base in installed):
            paths.append(str(where))
    return paths
