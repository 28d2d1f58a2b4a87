"""The settings of one fit, built once from the config's ``trainer`` group and checked eagerly."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nnsearch.errors import NNSearchError

ENGINES = ("fast", "lightning")
CLIP_ALGORITHMS = ("norm", "value")
ES_MODES = ("min", "max")


# Saving a small model's state takes a few milliseconds; a fold of a few seconds needs no checkpoint
# at all. Every 60 s, and never sooner than 50 times the last save's own duration: the saving costs at
# most 2 % of training time, whatever the model's size (measured: see the README, "Trial checkpoints").
DEFAULT_EVERY = "60s"


@dataclass(frozen=True)
class CheckpointEvery:
    """``trainer.checkpoint_every``: a number of epochs (``5``), seconds of training (``"60s"``), or off (null, 0)."""

    epochs: int = 0
    seconds: float = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.epochs or self.seconds)

    @classmethod
    def parse(cls, value: Any) -> CheckpointEvery:
        if value in (None, False, 0, "0", "off", "none"):
            return cls()
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return cls(epochs=value)
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*s\s*", str(value))
        if match and float(match.group(1)) > 0:
            return cls(seconds=float(match.group(1)))
        raise NNSearchError(
            f"trainer.checkpoint_every must be a number of epochs (5), of seconds ('60s'), or null for none, got {value!r}."
        )


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
    target: str = "lightning.pytorch.Trainer"  # trainer._target_: Lightning's Trainer, or a subclass of your own
    extra: dict[str, Any] = field(default_factory=dict)  # any other Trainer argument (accumulate_grad_batches, limit_train_batches, ...)
    checkpoint_every: CheckpointEvery = field(default_factory=lambda: CheckpointEvery.parse(DEFAULT_EVERY))  # trial checkpoints

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

    def trainer_arguments(self) -> dict[str, Any]:
        """The Trainer's keyword arguments from these settings (nnsearch's own, like ``engine``, left out)."""
        return {"max_epochs": self.max_epochs, "accelerator": self.accelerator, "devices": self.devices, "precision": self.precision,
                "gradient_clip_val": self.gradient_clip_val, "gradient_clip_algorithm": self.gradient_clip_algorithm,
                "deterministic": self.deterministic, **self.extra}

    @classmethod
    def from_config(cls, trainer: DictConfig | dict) -> FitSettings:
        t = OmegaConf.to_container(trainer, resolve=True) if isinstance(trainer, DictConfig) else dict(trainer)
        known = {"max_epochs", "accelerator", "devices", "precision", "gradient_clip_val", "gradient_clip_algorithm", "deterministic", "engine",
                 "early_stopping", "_target_", "checkpoint_every"}
        extra = {k: v for k, v in t.items() if k not in known}
        target = str(t.get("_target_") or "lightning.pytorch.Trainer")
        _check_trainer_arguments(target, extra)
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
            target=target,
            extra=extra,
            checkpoint_every=CheckpointEvery.parse(t.get("checkpoint_every", DEFAULT_EVERY)),
        )

    def callbacks(self) -> list[Any]:
        """The Lightning callbacks these settings add to every fit."""
        return [self.early_stopping.callback()] if self.early_stopping is not None else []


# set by nnsearch for every fit: tracking, checkpoints and progress are its own, and its callbacks are added per fold
RESERVED = ("callbacks", "logger", "enable_checkpointing", "enable_progress_bar", "enable_model_summary", "strategy", "plugins")


def _check_trainer_arguments(target: str, extra: dict[str, Any]) -> None:
    """Every key of ``trainer`` beyond nnsearch's own must be an argument of the Trainer it builds."""
    if not extra:
        return
    import inspect

    from hydra.utils import get_class

    try:
        trainer_class = get_class(target)
    except Exception as err:  # noqa: BLE001 - Hydra wraps the import error
        from nnsearch.config.building import import_failed

        raise import_failed("trainer._target_", target, err) from None
    params = inspect.signature(trainer_class.__init__).parameters
    unknown = sorted(k for k in extra if k not in params)
    if unknown:
        raise NNSearchError(f"trainer.{unknown[0]} is not an argument of {target}; see its documentation for the arguments it takes.")
    reserved = sorted(k for k in extra if k in RESERVED)
    if reserved:
        raise NNSearchError(f"trainer.{reserved[0]} is set by nnsearch for every fold (use the callbacks group for callbacks).")


def cuda_device_count() -> int:
    """``torch.cuda.device_count()``, answered without importing torch on a Linux machine with no GPU
    driver (no NVIDIA, ROCm or WSL device node): beside fold processes the study's process never
    imports torch before the final model (about 1.7 s of CPU on the way to the first trial)."""
    if sys.platform == "linux" and not any(os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")):
        return 0
    import torch

    return torch.cuda.device_count()


def world_size(cfg: DictConfig) -> int:
    """Processes per fold (:mod:`nnsearch.fit.ddp`): ``trainer.devices`` as a count or a list of device indices (``-1``: all GPUs)."""
    if int(cfg.trainer.get("num_nodes") or 1) > 1:
        raise NNSearchError("trainer.num_nodes > 1 is not supported: a trial runs on one machine; spread trials over machines with launch workers.")
    devices = cfg.trainer.devices
    if isinstance(devices, (list, tuple, ListConfig)):
        return len(devices)
    if isinstance(devices, str):
        devices = devices.strip()
        if "," in devices:
            return len([d for d in devices.split(",") if d.strip()])
        if devices in ("auto", "-1"):
            return max(1, cuda_device_count()) if cfg.trainer.accelerator in ("auto", "gpu", "cuda") else 1
        devices = int(devices)
    if devices == -1:
        return max(1, cuda_device_count())
    return int(devices)
