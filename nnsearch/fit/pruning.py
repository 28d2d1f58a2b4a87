"""Pruning across folds: one step scheme, one report, one pruned exception.

A trial's folds report to Optuna on one axis of steps, ``fold * epochs_per_fold + epoch``, so steps
are unique and increasing across the whole trial and a pruner compares a trial with earlier ones
at the same fold and epoch: a bad trial can stop during its first fold instead of after all of
them. Folds trained side by side report on the same axis (``nnsearch.cv.pool.InTurnPruner``
judges the steps in this order).
"""

from __future__ import annotations

from typing import Any

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
