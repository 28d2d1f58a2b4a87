"""Cross-validation settings (the ``cv`` group), built once from the config and checked eagerly."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError

FOLD_SCORES = ("last", "best")


@dataclass(frozen=True)
class CVSettings:
    """How a trial is cross-validated: ``folds`` splits of the development rows (seeded by ``seed``),
    after ``test_size`` of the rows are held out; ``parallel`` folds at once; ``fold_score`` picks a
    user module's logged value per fold (its last epoch's or its best epoch's)."""

    folds: int = 5
    seed: int = 0
    shuffle: bool = True
    stratified: bool = True
    test_size: float = 0.2
    parallel: Any = "auto"
    fold_score: str = "last"

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise NNSearchError(f"cv.folds must be an integer of at least 2, got {self.folds!r}.")
        if isinstance(self.test_size, bool) or not isinstance(self.test_size, (int, float)) or not 0.0 <= self.test_size < 1.0:
            raise NNSearchError(f"cv.test_size must be a fraction in (0, 1) or 0 for none, got {self.test_size!r}.")
        if self.fold_score not in FOLD_SCORES:
            raise NNSearchError(f"cv.fold_score must be last or best, got {self.fold_score!r}.")
        if self.parallel != "auto" and (isinstance(self.parallel, bool) or not str(self.parallel).isdigit() or int(self.parallel) < 1):
            raise NNSearchError(f"cv.parallel must be 'auto' or a positive integer, got {self.parallel!r}.")

    @classmethod
    def from_config(cls, cv: DictConfig) -> CVSettings:
        return cls(folds=cv.folds, seed=int(cv.seed), shuffle=bool(cv.get("shuffle", True)), stratified=bool(cv.get("stratified", True)),
                   test_size=cv.get("test_size", 0.0) or 0.0, parallel=cv.get("parallel", "auto"), fold_score=str(cv.get("fold_score", "last")))


def side_by_side_by_settings(cfg: DictConfig) -> bool:
    """Whether :func:`nnsearch.cv.pool.parallel_folds` will train folds side by side, as far as the
    settings alone tell, without importing torch to look for a GPU: the fold processes' fork server
    is started on this answer (:mod:`nnsearch.runtime.fork_server`), before torch is imported."""
    setting = OmegaConf.select(cfg, "cv.parallel", default=1)
    if setting in (None, 1, "1") or int(OmegaConf.select(cfg, "cv.folds", default=1) or 1) < 2:
        return False
    if str(OmegaConf.select(cfg, "pruner._target_", default="")).endswith("WilcoxonPruner"):
        return False
    if str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")) in ("gpu", "cuda", "mps"):
        return False
    if str(OmegaConf.select(cfg, "trainer.devices", default=1)) not in ("1", "auto", "None"):
        return False
    return setting != "auto" or fold_slots(cfg)[0] >= 2


def fold_slots(cfg: DictConfig) -> tuple[int, int]:
    """``(slots, threads)``: how many fold processes of ``runtime.threads`` torch threads each fit
    on the cores this process may use (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = int(OmegaConf.select(cfg, "runtime.threads", default=None) or 1)
    return max(1, cores // threads), threads
