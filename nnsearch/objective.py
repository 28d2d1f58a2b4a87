"""The Optuna objective: a trial's sampled config, cross-validated, scored and tracked."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nnsearch.cv import FoldCache
from nnsearch.data.dataset import Dataset
from nnsearch.errors import NNSearchError, TrialFailed
from nnsearch.interrupt import Interruption
from nnsearch.search_space import SearchSpace
from nnsearch.tracking import TRIAL_RUN_ATTR, Tracker
from nnsearch.training import FoldResult, fit_folds

log = logging.getLogger("nnsearch")


def summarize_folds(folds: list[FoldResult]) -> dict[str, float]:
    """``cv/{metric}`` (mean over folds) and ``cv/{metric}_std`` (population std) of every metric."""
    out: dict[str, float] = {}
    for name in folds[0].metrics:
        values = np.array([f.metrics[name] for f in folds], dtype=float)
        out[f"cv/{name}"] = float(values.mean())
        out[f"cv/{name}_std"] = float(values.std())
    return out


class Objective:
    """Callable given to ``study.optimize``: samples a config, runs every fold, returns the CV mean.

    Each trial trains a fresh model per fold, seeded with ``seed + trial.number`` (the CV splits
    use their own seed, so they are the same in every trial).
    """

    def __init__(
        self,
        cfg: DictConfig,
        data: Dataset,
        space: SearchSpace,
        folds: FoldCache,
        tracker: Tracker | None,
        *,
        metric: str,
        epoch_metrics: list[str],
        interruption: Interruption | None = None,
    ) -> None:
        self.cfg, self.data, self.space, self.folds, self.tracker = cfg, data, space, folds, tracker
        self.metric = metric
        self.epoch_metrics = epoch_metrics
        self.monitor = f"val/{metric}"
        self.interruption = interruption or Interruption()

    def __call__(self, trial: Any) -> float:
        import optuna

        start = time.time()
        values = self.space.suggest(trial)
        trial_cfg = self.space.apply(self.cfg, values)
        seed = int(self.cfg.seed) + trial.number
        results: list[FoldResult] = []
        state, reason, objective = "COMPLETE", "", None
        try:
            with self.interruption.trial():
                fit_folds(trial_cfg, self.data, self.folds, seed=seed, epoch_metrics=self.epoch_metrics, trial=trial, monitor=self.monitor, results=results)
            cv = summarize_folds(results)
            objective = cv[f"cv/{self.metric}"]
            if not math.isfinite(objective):
                raise TrialFailed(f"{self.metric} is {objective}")
            for key, value in cv.items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("fold_scores", [r.metrics[self.metric] for r in results])
            return objective
        except optuna.TrialPruned as err:
            state, reason = "PRUNED", str(err)
            raise
        except (TrialFailed, NNSearchError) as err:
            state, reason = "FAIL", str(err)
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(f"trial {trial.number} failed: {reason}") from None
        except KeyboardInterrupt:
            state, reason = "KILLED", "interrupted (Ctrl-C)"
            raise
        except BaseException as err:
            state, reason = "FAIL", f"{type(err).__name__}: {err}"
            raise
        finally:
            self._track(trial, state, reason, values, trial_cfg, results, start, objective)
            self._log_line(trial, state, reason, objective, time.time() - start, results)

    def _track(self, trial: Any, state: str, reason: str, values: dict, trial_cfg: DictConfig, results: list[FoldResult], start: float, objective: float | None) -> None:
        if self.tracker is None:
            return
        complete = [r for r in results if r.metrics]
        cv = summarize_folds(complete) if state == "COMPLETE" else {}
        tags = {"sampler": type_name(self.cfg.sampler), "pruner": type_name(self.cfg.pruner), "folds": len(self.folds), "seed": int(self.cfg.seed) + trial.number}
        if reason:
            tags["reason"] = reason
        if state == "PRUNED":
            last = [r for r in results if r.history][-1:]
            tags["pruned_at"] = f"fold {last[0].index} epoch {last[0].epochs - 1}" if last else "start"
        try:
            run_id = self.tracker.log_trial(
                number=trial.number,
                state=state,
                params=values,
                folds=results,
                cv={**cv, "epochs": float(sum(r.epochs for r in results)), "train_time_s": time.time() - start},
                tags=tags,
                start_ms=int(start * 1000),
                objectives={self.metric: objective} if objective is not None else None,
                config_yaml=OmegaConf.to_yaml(trial_cfg, resolve=True) if self.cfg.tracking.log_config else None,
            )
            trial.set_user_attr(TRIAL_RUN_ATTR, run_id)
        except Exception as err:  # tracking must never lose the trial itself
            log.warning("MLflow logging of trial %d failed: %s", trial.number, err)

    def _log_line(self, trial: Any, state: str, reason: str, objective: float | None, seconds: float, results: list[FoldResult]) -> None:
        if state == "COMPLETE":
            std = trial.user_attrs.get(f"cv/{self.metric}_std", float("nan"))
            log.info("trial %d: %s = %.4f ± %.4f (%d folds, %.1f s)", trial.number, self.metric, objective, std, len(results), seconds)
        else:
            log.info("trial %d %s: %s (%.1f s)", trial.number, state.lower(), reason, seconds)


def type_name(node: DictConfig) -> str:
    target = node.get("_target_", "") if node is not None else ""
    return target.rsplit(".", 1)[-1] or "none"
