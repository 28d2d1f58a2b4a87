"""Pruning across folds: one step scheme, one report, one pruned exception.

A trial's folds report to Optuna on one axis of steps, ``fold * epochs_per_fold + epoch``, so steps
are unique and increasing across the whole trial and a pruner compares a trial with earlier ones
at the same fold and epoch: a bad trial can stop during its first fold instead of after all of
them. Folds trained side by side report on the same axis (``nnsearch.cv.pool.InTurnPruner``
judges the steps in this order).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import optuna


def step_of(fold: int, epoch: int, epochs_per_fold: int) -> int:
    """The Optuna step of ``epoch`` in ``fold``."""
    return fold * epochs_per_fold + epoch


def fold_and_epoch(step: int, epochs_per_fold: int) -> tuple[int, int]:
    """Inverse of :func:`step_of`."""
    return divmod(step, epochs_per_fold)


class FoldPruned(optuna.TrialPruned):
    """The trial was pruned at ``step``: ``fold``'s epoch ``epoch`` (the pruner's own decision point)."""

    def __init__(self, fold: int, epoch: int, step: int, reason: str = "") -> None:
        self.fold, self.epoch, self.step = fold, epoch, step
        super().__init__(reason or f"pruned at fold {fold}, epoch {epoch} (step {step})")

    @classmethod
    def at(cls, step: int, epochs_per_fold: int) -> FoldPruned:
        return cls(*fold_and_epoch(step, epochs_per_fold), step)

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (fold processes, DDP ranks)
        return (type(self), (self.fold, self.epoch, self.step, str(self)))


class FoldPruning(L.Callback):
    """Reports the fold's validation objective to the trial after each validation; raises :class:`FoldPruned`.

    Unlike optuna-integration's callback, a missing metric is an error that lists the metrics
    logged, and the step encodes the fold (:func:`step_of`), so reports of several folds never
    collide. The value is the module's newest ``history`` row when it keeps one (nnsearch's
    families), else Lightning's ``trainer.callback_metrics``.
    """

    def __init__(self, trial: Any, monitor: str, fold: int, epochs_per_fold: int, *, history: list[dict[str, float]] | None = None) -> None:
        self.trial, self.monitor, self.fold, self.epochs_per_fold = trial, monitor, fold, epochs_per_fold
        self.history = history  # the fold's rows; those restored from a checkpoint are reported again at the start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.history:  # a fold resumed from a checkpoint (nnsearch.fit.checkpoint): a retry is a new trial
            report_history(self.trial, self.monitor, self.fold, self.history, self.epochs_per_fold)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        history = getattr(pl_module, "history", None)
        logged = history[-1] if history else {k: float(v) for k, v in trainer.callback_metrics.items()}
        if self.monitor not in logged:
            raise KeyError(f"pruning metric '{self.monitor}' was not logged; logged: {', '.join(logged) or 'nothing'}")
        epoch = len(history) - 1 if history else trainer.current_epoch
        step = step_of(self.fold, epoch, self.epochs_per_fold)
        self.trial.report(float(logged[self.monitor]), step)
        if self.trial.should_prune():
            raise FoldPruned(self.fold, epoch, step)


def report_history(trial: Any, monitor: str | None, fold: int, history: list[dict[str, float]], epochs_per_fold: int) -> None:
    """Report epochs trained by an earlier attempt of the trial (restored from its checkpoints) to ``trial``, unjudged.

    The earlier attempt passed the pruner at each of them; reporting them again gives the retry's
    pruner the same curve to judge its next steps against.
    """
    if trial is None or monitor is None:
        return
    for epoch, row in enumerate(history):
        if monitor in row:
            trial.report(float(row[monitor]), step_of(fold, epoch, epochs_per_fold))


TrialTicket = tuple[str, int, Any]  # (study name, trial number, pruner): what a helper process needs to reopen a trial


def trial_ticket(trial: optuna.Trial | None) -> TrialTicket | None:
    """What a fold process or a DDP rank needs to report to ``trial`` through its own storage connection."""
    return None if trial is None else (trial.study.study_name, trial.number, trial.study.pruner)


def trial_id_of(storage: Any, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of ``study_name`` (Optuna's storage API)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def reopen_trial(storage: Any, ticket: TrialTicket | None) -> optuna.Trial | None:
    """The running trial of ``ticket``, read afresh from ``storage`` (with every step reported so far).

    The pruner then sees the trial's earlier reports, as it would in the study's own process.
    """
    if ticket is None:
        return None
    study_name, number, pruner = ticket
    trial_id = trial_id_of(storage, study_name, number)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner, sampler=optuna.samplers.RandomSampler())
    return optuna.trial.Trial(study, trial_id)
