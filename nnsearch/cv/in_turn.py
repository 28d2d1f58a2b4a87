"""A trial's folds trained one after another, in this process.

The executor of a study without free cores (or with the Wilcoxon pruner, which compares the
trial's folds one by one); :class:`nnsearch.cv.pool.FoldPool` trains them side by side, with the
same interface, seeds and pruning steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from nnsearch.cv.splits import FoldCache, fold_seed
from nnsearch.data.dataset import Dataset
from nnsearch.fit.fold import EpochHook, FoldResult, fit_fold

AfterFold = Callable[[FoldResult], None]


class InTurn:
    """Folds in turn: ``fit_folds`` trains fold 0, then 1, ...; ``after_fold`` runs after each (and may raise to stop)."""

    def __init__(self, data: Dataset, folds: FoldCache, *, on_epoch: EpochHook | None = None) -> None:
        self.data, self.folds, self.on_epoch = data, folds, on_epoch

    def fit_folds(self, cfg: DictConfig, *, seed: int, epoch_metrics: list[str], trial: Any = None, monitor: str | None = None,
                  results: list[FoldResult], after_fold: AfterFold | None = None, checkpoints: Any = None) -> list[FoldResult]:
        """Cross-validate one configuration: a fresh model per fold, seeded :func:`fold_seed`.

        ``results`` is filled as folds run, so a pruned or failed trial keeps the curves it produced.
        ``checkpoints`` (:class:`nnsearch.fit.checkpoint.TrialCheckpoints`): the trial's checkpoint folder.
        """
        for k in range(len(self.folds)):
            result = FoldResult(k)
            results.append(result)
            fit_fold(cfg, self.data, self.folds.get(k, cfg.data.get("scaler")), seed=fold_seed(seed, k), epoch_metrics=epoch_metrics,
                     trial=trial, monitor=monitor, result=result, on_epoch=self.on_epoch,
                     checkpoint=checkpoints.fold(k) if checkpoints is not None else None)
            if after_fold is not None:
                after_fold(result)
        return results
