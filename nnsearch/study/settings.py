"""The study's own settings (the ``study`` key), built once from the config and checked eagerly.

What it optimizes (``study.metric``, ``study.direction``, ``study.constraints``) is parsed by
:mod:`nnsearch.study.objectives`, which needs the data's task.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from nnsearch.errors import NNSearchError


@dataclass(frozen=True)
class StudySettings:
    """``name`` in ``storage`` (None: ``./optuna.journal``) runs until ``n_trials`` trials finished, ``timeout`` seconds
    passed, or ``max_failed_trials`` failed in a row."""

    name: str
    n_trials: int = 20
    storage: str | None = None
    timeout: float | None = None
    max_failed_trials: int = 10

    def __post_init__(self) -> None:
        if not self.name:
            raise NNSearchError("study.name is empty; name the study (it defaults to the study file's name).")
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise NNSearchError(f"study.n_trials must be a positive integer, got {self.n_trials!r}.")
        timeout = self.timeout
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
            raise NNSearchError(f"study.timeout must be a positive number of seconds (or null for no limit), got {timeout!r}.")
        failed = self.max_failed_trials
        if isinstance(failed, bool) or not isinstance(failed, int) or failed < 1:
            raise NNSearchError(f"study.max_failed_trials must be a positive integer, got {failed!r}.")

    @classmethod
    def from_config(cls, study: DictConfig) -> StudySettings:
        return cls(name=str(study.name), n_trials=study.n_trials, storage=study.get("storage"), timeout=study.get("timeout"),
                   max_failed_trials=study.get("max_failed_trials", 10))
