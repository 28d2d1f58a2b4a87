"""How a study is launched (the ``launch`` key): worker processes, GPUs, retries; built once and checked eagerly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnsearch.errors import NNSearchError

BACKENDS = ("local", "submitit", "ray")


def _resource(name: str, value: Any) -> float:
    """A Ray resource amount: positive, and a whole number above 1 (Ray packs fractions of one unit only)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise NNSearchError(f"launch.ray.{name} must be a positive number (a fraction such as 0.5 shares one device), got {value!r}.")
    if value > 1 and value != int(value):
        raise NNSearchError(f"launch.ray.{name}={value}: Ray takes a fraction below 1 or a whole number, e.g. 0.5 or 2.")
    return float(value)


@dataclass(frozen=True)
class RaySettings:
    """``launch.backend=ray``: where the cluster is and what one trial (one worker) holds on it.

    ``address``: None starts a local Ray instance; ``auto`` joins the cluster this machine belongs
    to; ``ray://HOST:10001`` is Ray Client; ``HOST:6379`` a head's GCS address. ``working_dir``
    (default ``.``: the folder the study runs from) travels to every node, so the user's own
    packages import there; None when the cluster's image already has the code.
    """

    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    working_dir: str | None = "."

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise NNSearchError(f"launch.ray.address must be auto, ray://HOST:PORT or HOST:PORT (unset: a local Ray instance), got {self.address!r}.")
        if self.address and "://" in self.address and not self.address.startswith("ray://"):
            raise NNSearchError(f"launch.ray.address={self.address}: a Ray address is auto, ray://HOST:PORT or HOST:PORT.")
        object.__setattr__(self, "cpus_per_trial", _resource("cpus_per_trial", self.cpus_per_trial))
        if self.gpus_per_trial != 0 or isinstance(self.gpus_per_trial, bool):  # 0: trials on CPU
            object.__setattr__(self, "gpus_per_trial", _resource("gpus_per_trial", self.gpus_per_trial))

    @classmethod
    def from_config(cls, ray: Any) -> RaySettings:
        if not ray:
            return cls()
        values = OmegaConf.to_container(ray, resolve=True) if isinstance(ray, DictConfig) else dict(ray)
        return cls(**values)


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
    ray: RaySettings = field(default_factory=RaySettings)

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
        if self.backend == "ray" and self.gpus:
            raise NNSearchError("launch.gpus pins this machine's GPUs; with launch.backend=ray, Ray assigns them: set launch.ray.gpus_per_trial (e.g. 1, or 0.5 for two trials per GPU).")

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
                   ray=RaySettings.from_config(launch.get("ray")))
