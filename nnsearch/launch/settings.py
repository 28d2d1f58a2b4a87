"""How a study is launched (the ``launch`` key): worker processes, GPUs, retries; built once and checked eagerly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError

BACKENDS = ("local", "submitit")


@dataclass(frozen=True)
class LaunchSettings:
    """``workers`` processes share the study (or one per GPU of ``gpus`` x ``workers_per_gpu``) on ``backend``."""

    workers: int = 1
    gpus: tuple = ()
    workers_per_gpu: int = 1
    worker_index: int = 0
    backend: str = "local"
    max_retry: int = 2
    max_restarts: int = 2
    submitit: dict[str, Any] = field(default_factory=dict)
    checkpoint_dir: str | None = None  # trial checkpoints (nnsearch.fit.checkpoint); None: beside the study's storage

    def __post_init__(self) -> None:
        for name in ("workers", "workers_per_gpu"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NNSearchError(f"launch.{name} must be at least 1, got {value!r}.")
        for name in ("max_retry", "max_restarts", "worker_index"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise NNSearchError(f"launch.{name} must be a non-negative integer, got {value!r}.")
        if self.backend not in BACKENDS:
            raise NNSearchError(f"launch.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}.")

    @property
    def n_workers(self) -> int:
        return len(self.gpus) * self.workers_per_gpu if self.gpus else self.workers

    @property
    def distributed(self) -> bool:
        """Trials run in worker processes (this process supervises them) rather than here."""
        return self.n_workers > 1 or self.backend != "local"

    @classmethod
    def from_config(cls, launch: DictConfig | None) -> LaunchSettings:
        if launch is None:
            return cls()
        gpus = launch.get("gpus")
        return cls(workers=launch.get("workers", 1), gpus=tuple(OmegaConf.to_container(gpus)) if gpus else (),
                   workers_per_gpu=launch.get("workers_per_gpu", 1), worker_index=int(launch.get("worker_index") or 0),
                   backend=str(launch.get("backend", "local")), max_retry=launch.get("max_retry", 2), max_restarts=launch.get("max_restarts", 2),
                   submitit=OmegaConf.to_container(launch.submitit) if launch.get("submitit") else {},
                   checkpoint_dir=str(launch.checkpoint_dir) if launch.get("checkpoint_dir") else None)
