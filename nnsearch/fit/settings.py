"""The settings of one fit, built once from the config's ``trainer`` group and checked eagerly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError

ENGINES = ("fast", "lightning")
CLIP_ALGORITHMS = ("norm", "value")
ES_MODES = ("min", "max")


@dataclass(frozen=True)
class EarlyStopSettings:
    """Lightning's ``EarlyStopping`` arguments (``trainer.early_stopping``; off when ``patience`` is null)."""

    monitor: str = "val/loss"
    mode: str = "min"
    patience: int = 3
    min_delta: float = 0.0

    def callback(self) -> Any:
        from lightning.pytorch.callbacks import EarlyStopping

        return EarlyStopping(monitor=self.monitor, mode=self.mode, patience=self.patience, min_delta=self.min_delta)


@dataclass(frozen=True)
class FitSettings:
    """How each fold is fitted: the Lightning Trainer's arguments and the engine that runs them.

    ``engine``: ``fast`` runs the module's own hooks on a lean loop (:mod:`nnsearch.fit.fast`), with
    the Trainer's results; ``lightning`` always uses ``lightning.Trainer``.
    """

    max_epochs: int = 20
    accelerator: str = "auto"
    devices: Any = 1
    precision: Any = "32-true"
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = "norm"
    deterministic: bool = False
    engine: str = "fast"
    early_stopping: EarlyStopSettings | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise NNSearchError(f"Unknown trainer.engine '{self.engine}'; choose one of {', '.join(ENGINES)}.")
        if isinstance(self.max_epochs, bool) or not isinstance(self.max_epochs, int) or self.max_epochs < 1:
            raise NNSearchError(f"trainer.max_epochs must be a positive integer, got {self.max_epochs!r}.")
        if self.gradient_clip_algorithm not in CLIP_ALGORITHMS:
            raise NNSearchError(f"trainer.gradient_clip_algorithm must be norm or value, got {self.gradient_clip_algorithm!r}.")
        es = self.early_stopping
        if es is not None:
            if es.mode not in ES_MODES:
                raise NNSearchError(f"trainer.early_stopping.mode must be min or max, got {es.mode!r}.")
            if isinstance(es.patience, bool) or not isinstance(es.patience, int) or es.patience < 0:
                raise NNSearchError(f"trainer.early_stopping.patience must be a non-negative integer or null, got {es.patience!r}.")

    @classmethod
    def from_config(cls, trainer: DictConfig | dict) -> FitSettings:
        t = OmegaConf.to_container(trainer, resolve=True) if isinstance(trainer, DictConfig) else dict(trainer)
        es = t.get("early_stopping") or {}
        stop = None
        if es.get("patience") is not None:
            stop = EarlyStopSettings(
                monitor=es.get("monitor", "val/loss"), mode=es.get("mode", "min"), patience=es["patience"], min_delta=float(es.get("min_delta") or 0.0)
            )
        return cls(
            max_epochs=t.get("max_epochs", 20),
            accelerator=str(t.get("accelerator", "auto")),
            devices=t.get("devices", 1),
            precision=t.get("precision", "32-true"),
            gradient_clip_val=t.get("gradient_clip_val"),
            gradient_clip_algorithm=t.get("gradient_clip_algorithm") or "norm",
            deterministic=bool(t.get("deterministic", False)),
            engine=t.get("engine") or "fast",
            early_stopping=stop,
        )

    def callbacks(self) -> list[Any]:
        """The Lightning callbacks these settings add to every fit."""
        return [self.early_stopping.callback()] if self.early_stopping is not None else []
