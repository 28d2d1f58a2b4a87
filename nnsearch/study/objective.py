"""The Optuna objective: a trial's sampled config, cross-validated, scored and tracked."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nnsearch.cv.splits import FoldCache
from nnsearch.data.dataset import Dataset
from nnsearch.errors import NNSearchError, TrialFailed, TrialSkipped
from nnsearch.runtime.interrupt import Interruption
from nnsearch.study.objectives import Objectives
from nnsearch.study.search_space import SearchSpace
from nnsearch.config.credentials import redacted_yaml
from nnsearch.study.trials import CLAIMED, mark_owner, original_number, requeue
from nnsearch.fit.checkpoint import TrialCheckpoints, trial_folder
from nnsearch.tracking.runs import TRIAL_RUN_ATTR, Tracker
from nnsearch.fit.result import FoldResult
from nnsearch.fit.pruning import FoldPruned

log = logging.getLogger("nnsearch")


def summarize_folds(folds: list[FoldResult]) -> dict[str, float]:
    """``cv/{metric}`` (mean over folds) and ``cv/{metric}_std`` (population std) of every metric."""
    out: dict[str, float] = {}
    for name in folds[0].metrics:
        values = np.array([f.metrics[name] for f in folds], dtype=float)
        out[f"cv/{name}"] = float(values.mean())
        out[f"cv/{name}_std"] = float(values.std())
    return out


def resumed_from(results: list[FoldResult]) -> str:
    """Where a retried trial took up its earlier attempt: ``fold 1 epoch 17`` (fold 1 resumed at its epoch 17,
    counted from 0: 17 epochs of it, and every fold before it, read back from checkpoints; a fold read back whole
    shows its number of epochs); '' for a trial trained from the start."""
    restored = [r for r in results if r.restored_whole or r.restored_epochs]
    if not restored:
        return ""
    last = restored[-1]
    return f"fold {last.index} epoch {last.restored_epochs}"


def type_name(node: DictConfig | None) -> str:
    target = node.get("_target_", "") if node is not None else ""
    return target.rsplit(".", 1)[-1] or "none"


class Objective:
    """Callable given to ``study.optimize``: samples a config, runs every fold, returns the CV mean(s).

    Each trial trains a fresh model per fold, seeded from ``seed + trial.number`` (the CV splits
    use their own seed, so they are the same in every trial). With several objectives it returns
    one value per metric of ``study.metric``, in order.
    """

    def __init__(
        self,
        cfg: DictConfig,
        data: Dataset,
        space: SearchSpace,
        folds: FoldCache,
        tracker: Tracker | None,
        *,
        objectives: Objectives,
        epoch_metrics: list[str],
        prune: bool = True,
        interruption: Interruption | None = None,
        progress: Any = None,
        fold_pool: Any = None,
        max_retry: int = 2,
        checkpoint_dir: str | None = None,
    ) -> None:
        self.cfg, self.data, self.space, self.folds, self.tracker = cfg, data, space, folds, tracker
        self.objectives = objectives
        self.epoch_metrics = epoch_metrics
        # pruners compare single values, so only a single-objective study reports intermediates
        from nnsearch.models.user import is_user_module

        # the pruned value: a user's module reports what it logs under that name, nnsearch's modules log val/{metric}
        logged_name = objectives.metrics[0] if is_user_module(cfg.model) else f"val/{objectives.metrics[0]}"
        self.monitor = logged_name if prune and not objectives.multi else None
        # the Wilcoxon pruner compares per-fold scores (step = fold), not per-epoch curves
        self.per_fold = self.monitor is not None and type_name(cfg.pruner) == "WilcoxonPruner"
        self.interruption = interruption or Interruption()
        self.progress = progress
        # per-epoch updates only feed the live status line; plain and off modes skip the call
        on_epoch = progress.epoch_end if progress is not None and progress.mode == "live" else None
        # folds side by side in processes (cv.parallel), or in turn in this process
        if fold_pool is None:
            from nnsearch.cv.in_turn import InTurn  # folds trained here: this process imports Lightning

            fold_pool = InTurn(data, folds, on_epoch=on_epoch)
        self.executor = fold_pool
        self.sampler_name, self.pruner_name = type_name(cfg.sampler), type_name(cfg.pruner)
        self.enumerating = self.sampler_name in ("GridSampler", "BruteForceSampler")
        from nnsearch.fit.checkpoint import checkpoint_root
        from nnsearch.fit.settings import FitSettings
        from nnsearch.tracking.settings import TrackingSettings

        # the launcher's launch.checkpoint_dir and launch.max_retry (a retried trial keeps its checkpoints)
        self.checkpoint_root = checkpoint_root(checkpoint_dir, cfg.study.get("storage"))
        self.checkpoint_every = FitSettings.from_config(cfg.trainer).checkpoint_every
        self.keep_checkpoints = TrackingSettings.from_config(cfg.tracking).keep_checkpoints
        self.max_retry = max_retry

    def _skip_reason(self, trial: Any) -> str:
        """Why this trial must not run: the study is full, or another worker has these params.

        Workers sharing a study can each start a trial when one is missing, and a grid sampler
        in two workers can hand out the same point; trial numbers are assigned atomically, so
        the later trial yields. It is recorded as failed and counts towards nothing.
        """
        import optuna

        earlier = [t for t in trial.study.get_trials(deepcopy=False, states=CLAIMED) if t.number < trial.number]
        if len(earlier) >= int(self.cfg.study.n_trials):
            trial.study.stop()
            return f"surplus: the study already has {len(earlier)} trials finished or running"
        if self.enumerating:
            same = [t.number for t in earlier if t.params == trial.params and t.state != optuna.trial.TrialState.FAIL]
            if same:
                return f"duplicate of trial {same[0]} (grid point already evaluated)"
        return ""

    def __call__(self, trial: Any) -> float | tuple[float, ...]:
        import optuna

        start = time.time()
        mark_owner(trial)
        values = self.space.suggest(trial)
        skip = self._skip_reason(trial)
        if skip:
            trial.set_user_attr("skipped", skip)
            raise TrialSkipped(skip)
        if self.progress is not None:
            self.progress.trial_started(trial.number)
        trial_cfg = self.space.apply(self.cfg, values)
        frozen = self._frozen(trial)
        original = original_number(frozen)  # a retry trains (and resumes) as the trial it retries
        seed = int(self.cfg.seed) + original
        checkpoints = TrialCheckpoints(trial_folder(self.checkpoint_root, trial.study.study_name, original), self.checkpoint_every)
        results: list[FoldResult] = []
        state, reason, scores = "COMPLETE", "", None
        pruned: optuna.TrialPruned | None = None
        requeued = False
        try:
            with self.interruption.interruptible():
                measured = self._model_metrics(trial_cfg)
                if self.per_fold:  # folds in turn (cv.parallel resolves to 1 for this pruner)
                    self.executor.fit_folds(trial_cfg, seed=seed, epoch_metrics=self.epoch_metrics, results=results, after_fold=self._wilcoxon_report(trial),
                                            checkpoints=checkpoints)
                else:
                    self.executor.fit_folds(trial_cfg, seed=seed, epoch_metrics=self.epoch_metrics, trial=trial, monitor=self.monitor, results=results,
                                            checkpoints=checkpoints)
            cv = summarize_folds(results)
            totals = {**{k[3:]: v for k, v in cv.items() if not k.endswith("_std")}, **measured}
            scores = {m: totals[m] for m in self.objectives.metrics}
            bad = {m: v for m, v in scores.items() if not math.isfinite(v)}
            if bad:
                raise TrialFailed(", ".join(f"{m} is {v}" for m, v in bad.items()))
            for key, value in {**cv, **measured}.items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("fold_scores", [r.metrics[self.objectives.metrics[0]] for r in results if self.objectives.metrics[0] in r.metrics])
            for key, value in self.objectives.constraint_values(totals).items():
                trial.set_constraint(key, value)
            out = tuple(scores.values())
            return out if self.objectives.multi else out[0]
        except optuna.TrialPruned as err:
            state, reason = "PRUNED", str(err)
            pruned = err
            raise
        except (TrialFailed, NNSearchError) as err:
            state, reason = "FAIL", str(err)
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(f"trial {trial.number} failed: {reason}") from None
        except KeyboardInterrupt:
            state, reason = "KILLED", "interrupted (Ctrl-C)"
            requeued = requeue(trial.study, frozen, self.max_retry)
            if requeued:  # the same command resumes it from its checkpoints
                reason += "; queued again, to resume from its checkpoints"
            raise
        except BaseException as err:
            state, reason = "FAIL", f"{type(err).__name__}: {err}"
            raise
        finally:
            epochs = sum(r.epochs for r in results)
            trial.set_user_attr("epochs", epochs)
            weights = checkpoints.final_weights() if state == "COMPLETE" and self._keep_weights(trial, scores) else None
            self._track(trial, state, reason, values, trial_cfg, results, start, scores, pruned, weights, seed=seed)
            if not requeued:  # only a trial queued again is resumed
                checkpoints.delete()
            self._log_line(trial, state, reason, scores, time.time() - start, results)
            if self.progress is not None:
                self.progress.trial_finished(trial.number, state, tuple(scores.values()) if scores else None)

    @staticmethod
    def _frozen(trial: Any) -> Any:
        """The trial's stored record (its system attributes say which trial it retries)."""
        return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)

    def _keep_weights(self, trial: Any, scores: dict | None) -> bool:
        """``tracking.keep_checkpoints``: log this complete trial's final weights (``complete``; ``best``: when it is
        the best trial so far, of a single-objective study; a multi-objective study logs every complete trial's)."""
        if self.keep_checkpoints == "complete" or (self.keep_checkpoints == "best" and self.objectives.multi):
            return True
        if self.keep_checkpoints != "best" or not scores:
            return False
        import optuna

        value = next(iter(scores.values()))
        done = [t.value for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.number != trial.number]
        if not done:
            return True
        return value > max(done) if self.objectives.directions[0] == "maximize" else value < min(done)

    def _wilcoxon_report(self, trial: Any) -> Any:
        """After each fold, its final objective reported at step = fold index.

        This is the scheme of Optuna's WilcoxonPruner: the trial's per-fold scores are paired
        with the best trial's on the same folds, and it stops once it is significantly worse.
        """
        metric, last = self.objectives.metrics[0], len(self.folds) - 1

        def report(result: FoldResult) -> None:
            trial.report(result.metrics[metric], result.index)
            if result.index < last and trial.should_prune():
                k = result.index
                raise FoldPruned(k, result.epochs - 1, k, f"pruned after fold {k} (Wilcoxon test against the best trial's folds)")

        return report

    def _model_metrics(self, trial_cfg: DictConfig) -> dict[str, float]:
        """Size/latency of this trial's network, when an objective or constraint asks for them."""
        names = self.objectives.model_metrics
        if not names:
            return {}
        from nnsearch.config.building import build_network
        from nnsearch.models.size import measure

        net = build_network(trial_cfg, self.data.input_shape, self.data.n_outputs)
        return measure(names, net, self.folds.get(0).x_val)

    def _track(self, trial: Any, state: str, reason: str, values: dict, trial_cfg: DictConfig, results: list[FoldResult], start: float, scores: dict | None,
               pruned: Any = None, weights: dict | None = None, *, seed: int) -> None:
        if self.tracker is None:
            return
        complete = [r for r in results if r.metrics]
        cv = summarize_folds(complete) if state == "COMPLETE" else {}
        measured = {k: v for k, v in trial.user_attrs.items() if k in self.objectives.model_metrics} if state == "COMPLETE" else {}
        tags = {"sampler": self.sampler_name, "pruner": self.pruner_name, "folds": len(self.folds), "seed": seed,
                "sampler.seed": self.cfg.sampler.get("seed")}
        for key, tag in (("model.init_from", "init_from"), ("distill.teacher", "distill.teacher")):
            started_from = OmegaConf.select(trial_cfg, key)
            if started_from:  # where the trial's weights or soft labels came from
                tags[tag] = started_from
        if reason:
            tags["reason"] = reason
        resumed = resumed_from(results)
        if resumed:
            tags["resumed_from"] = resumed
        if isinstance(pruned, FoldPruned):
            # the pruner's own decision point: with folds side by side the last fold to stop need not be the one pruned
            tags["pruned_at"] = f"fold {pruned.fold} epoch {pruned.epoch}"
            tags["pruned_step"] = pruned.step
        try:
            run_id = self.tracker.log_trial(
                number=trial.number,
                state=state,
                params=values,
                folds=results,
                cv={**cv, **measured, "epochs": float(sum(r.epochs for r in results)), "train_time_s": time.time() - start},
                tags=tags,
                start_ms=int(start * 1000),
                objectives=scores if state == "COMPLETE" else None,
                config_yaml=redacted_yaml(trial_cfg) if self.cfg.tracking.log_config else None,
                weights=weights,
            )
            trial.set_user_attr(TRIAL_RUN_ATTR, run_id)
        except Exception as err:  # tracking must never lose the trial itself
            log.warning("MLflow logging of trial %d failed: %s", trial.number, err)

    def _log_line(self, trial: Any, state: str, reason: str, scores: dict | None, seconds: float, results: list[FoldResult]) -> None:
        if state == "COMPLETE" and scores:
            parts = []
            for metric, value in scores.items():
                std = trial.user_attrs.get(f"cv/{metric}_std")
                parts.append(f"{metric} = {value:.4f} ± {std:.4f}" if std is not None else f"{metric} = {value:g}")
            attrs = {k.removeprefix("cv/"): v for k, v in trial.user_attrs.items() if isinstance(v, (int, float))}
            violated = [k for k, v in self.objectives.constraint_values(attrs).items() if v > 0] if self.objectives.constraints else []
            note = f" [infeasible: {', '.join(violated)} not met]" if violated else ""
            log.info("trial %d: %s (%d folds, %.1f s)%s", trial.number, ", ".join(parts), len(results), seconds, note)
        else:
            log.info("trial %d %s: %s (%.1f s)", trial.number, state.lower(), reason, seconds)
