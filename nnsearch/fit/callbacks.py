"""The Lightning callbacks nnsearch adds to a fold's fit: its epochs reported to the trial (pruning), its
training state checkpointed (a retried trial resumes; see :mod:`nnsearch.fit.checkpoint`), and what a
user's own module logs kept as the fold's history (:mod:`nnsearch.models.user`).

They live apart from the pruning and checkpoint schemes they serve so that the study's own process,
which only reads those schemes, never imports Lightning.
"""

from __future__ import annotations

import os
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

from nnsearch.fit.checkpoint import MAX_COST, FoldCheckpointing, rng_states, set_rng_states
from nnsearch.fit.pruning import FoldPruned, step_of
from nnsearch.models.user import epoch_values


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



class FoldCheckpoint(Checkpoint):
    """Saves the fold's state with ``trainer.save_checkpoint`` every ``every`` epochs or seconds.

    A ``Checkpoint`` subclass, so both engines run it after early stopping at an epoch's end (its
    counters are then up to date). Its own ``state_dict`` carries what Lightning's checkpoint lacks
    for an exact resume (see the module docstring); the random states are put back at
    ``on_train_start``, after the module, optimizer and callbacks were restored and just before
    the first resumed epoch draws from them.
    """

    def __init__(self, checkpointing: FoldCheckpointing, history: list[dict[str, float]], batches: Any) -> None:
        self.checkpointing, self.history, self.batches = checkpointing, history, batches
        self.engine = "lightning"
        self.restored_epochs = 0  # epochs read back from a checkpoint (0: the fold started afresh)
        self._rng: dict[str, Any] | None = None
        self._last_save = time.monotonic()
        self._save_seconds = 0.0

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        from nnsearch.fit.fast import TrainerView

        self.engine = "fast" if isinstance(trainer, TrainerView) else "lightning"

    @property
    def _generator(self) -> torch.Generator | None:
        """The training batches' own shuffling generator (in-memory batches, or a DataLoader given one)."""
        generator = getattr(self.batches, "generator", None)
        return generator if isinstance(generator, torch.Generator) else None

    def state_dict(self) -> dict[str, Any]:
        generator = self._generator
        return {"history": [dict(row) for row in self.history], "rng": rng_states(),
                "generator": generator.get_state() if generator is not None else None,
                "passes": getattr(self.batches, "epoch", None)}  # TensorBatches: passes over a DDP rank's sampler

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history[:] = state_dict["history"]
        self.restored_epochs = len(self.history)
        self._rng = state_dict["rng"]
        generator = self._generator
        if generator is not None and state_dict.get("generator") is not None:
            generator.set_state(state_dict["generator"])
        if state_dict.get("passes") is not None and hasattr(self.batches, "epoch"):
            self.batches.epoch = state_dict["passes"]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self._rng is not None:
            set_rng_states(self._rng)
            self._rng = None
        self._last_save = time.monotonic()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        if trainer.should_stop or epoch + 1 >= trainer.max_epochs:
            return  # the fold ends now: its result is recorded instead
        every = self.checkpointing.every
        if every.epochs:
            due = (epoch + 1) % every.epochs == 0
        else:
            waited = time.monotonic() - self._last_save
            due = waited >= max(every.seconds, self._save_seconds / MAX_COST)
            due = bool(trainer.strategy.broadcast(due))  # DDP ranks decide together: saving is collective
        if due:
            self.save(trainer)

    def save(self, trainer: Any) -> None:
        started = time.monotonic()
        path = self.checkpointing.path(self.engine)
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        trainer.save_checkpoint(tmp)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, path)
        self._last_save = time.monotonic()
        self._save_seconds = self._last_save - started


class LoggedHistory(L.Callback):
    """Appends what the module logged for each validated epoch (``trainer.callback_metrics``) to ``history``.

    Values are the epoch-level ones exactly as Lightning reduces them; ``*_step`` forks of
    ``on_step`` values are left out (they hold only the epoch's last batch).
    """

    def __init__(self, history: list[dict[str, float]]) -> None:
        self.history = history

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.history.append(epoch_values(trainer.callback_metrics))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Validation runs before the training epoch ends: the epoch's training values join its row here."""
        if self.history:
            self.history[-1].update(epoch_values(trainer.callback_metrics))
