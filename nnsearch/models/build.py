"""From the composed config to the LightningModule that one fold trains.

The network built from ``cfg.model`` picks its training family: an :class:`Autoencoder` trains on
reconstruction, a :class:`GAN` adversarially, anything else as a supervised predictor of ``y``.
Each family accepts only the data tasks it can learn, so a mismatch (an autoencoder on a
classification set, an LSTM on anomaly data) fails with what to change before any trial starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from nnsearch.config.building import build_network, optional_partial
from nnsearch.data.dataset import Dataset, Task
from nnsearch.errors import NNSearchError
from nnsearch.models.autoencoder import Autoencoder
from nnsearch.models.autoencoder_module import AutoencoderModule
from nnsearch.models.base import HistoryModule
from nnsearch.models.distill import DistillSettings
from nnsearch.models.gan import GAN
from nnsearch.models.gan_module import GANModule
from nnsearch.models.module import SupervisedModule
from nnsearch.models.transfer import init_and_freeze

if TYPE_CHECKING:
    from nnsearch.data.fold import Fold


@dataclass(frozen=True)
class Family:
    name: str
    tasks: tuple[Task, ...]
    hint: str  # how to get data this family can learn


SUPERVISED = Family("a supervised model", (Task.BINARY, Task.MULTICLASS, Task.REGRESSION, Task.MULTITASK), "use model=autoencoder or model=gan for it")
AUTOENCODER = Family(
    "model=autoencoder", (Task.RECONSTRUCTION, Task.ANOMALY), "set data.task=reconstruction, or use anomaly data such as data=digits_anomaly"
)
ADVERSARIAL = Family("model=gan", (Task.GENERATION,), "set data.task=generation")


def _weights_node(cfg: DictConfig) -> dict | None:
    from omegaconf import OmegaConf

    node = cfg.model.get("task_weights")
    if node is not None and not OmegaConf.is_dict(node):
        raise NNSearchError(f"model.task_weights maps each target to its loss weight, e.g. {{a: 1.0, b: 0.5}}; got {node!r}.")
    return OmegaConf.to_container(node, resolve=True) if node is not None else None  # type: ignore[return-value]


def _metric_weights(cfg: DictConfig, data: Dataset) -> dict[str, float] | None:
    """``study.metric_weights`` when the objective is their weighted sum (``study.metric=weighted``)."""
    from omegaconf import OmegaConf

    from nnsearch.models.metrics import WEIGHTED, check_metric_weights

    study = cfg.get("study") or {}
    metric = study.get("metric")
    if WEIGHTED not in (list(metric) if OmegaConf.is_list(metric) else [metric]):
        return None
    weights = study.get("metric_weights")
    return check_metric_weights(OmegaConf.to_container(weights) if OmegaConf.is_config(weights) else weights, data.targets)


def family_of(net: object) -> Family:
    if isinstance(net, Autoencoder):
        return AUTOENCODER
    if isinstance(net, GAN):
        return ADVERSARIAL
    return SUPERVISED


def build_module(cfg: DictConfig, data: Dataset, fold: Fold, epoch_metrics: list[str]) -> HistoryModule:
    """A fresh network from ``cfg.model`` inside the LightningModule of its family."""
    _check_token_input(cfg, data)
    net = build_network(cfg, data.input_shape, data.n_outputs)
    tracking_uri = OmegaConf.select(cfg, "tracking.uri")
    init_and_freeze(net, cfg.model, tracking_uri)
    family = family_of(net)
    if data.task not in family.tasks:
        kinds = ", ".join(t.value for t in family.tasks)
        raise NNSearchError(
            f"{family.name} ({cfg.model._target_}) learns {kinds} tasks, but data '{data.name}' is a {data.task.value} task: {family.hint}."
        )
    optimizer = optional_partial("optimizer", cfg.optimizer)
    scheduler = optional_partial("scheduler", cfg.get("scheduler"))
    distill = DistillSettings.from_config(cfg.get("distill"))
    if distill.enabled and family is not SUPERVISED:
        raise NNSearchError(f"distill.teacher trains a supervised model, not {family.name}.")
    if data.task is Task.MULTITASK:
        from nnsearch.models.multitask import MultiTaskModule, task_weights

        return MultiTaskModule(net, data.targets, optimizer, scheduler, weights=task_weights(data.targets, _weights_node(cfg)),
                               epoch_metrics=tuple(epoch_metrics), target_scale=fold.target_scale, metric_weights=_metric_weights(cfg, data))
    if cfg.model.get("task_weights"):
        raise NNSearchError(f"model.task_weights weighs the targets of multi-task data (data.target=[a, b]); data '{data.name}' has one target.")
    if family is AUTOENCODER:
        return AutoencoderModule(net, data.task, optimizer, scheduler, epoch_metrics=tuple(epoch_metrics))
    if family is ADVERSARIAL:
        return GANModule(net, data.task, optimizer, scheduler, epoch_metrics=tuple(epoch_metrics))
    return SupervisedModule(
        net,
        data.task,
        optimizer,
        scheduler,
        n_classes=len(data.classes),
        epoch_metrics=tuple(epoch_metrics),
        target_scale=fold.target_scale,
        distill=(float(distill.temperature), float(distill.alpha)) if distill.enabled else None,
    )


def _check_token_input(cfg: DictConfig, data: Dataset) -> None:
    """Token ids (``data=text``) need a shipped family with an embedding: one without would read ids as numbers."""
    tokenized = getattr(getattr(data, "featurizer", None), "vocab_size", None) is not None
    shipped = str(cfg.model.get("_target_", "")).startswith("nnsearch.models.")
    if tokenized and shipped and cfg.model.get("vocab_size") is None:
        raise NNSearchError(
            f"data '{data.name}' is text as token ids: use model=rnn, lstm, gru or transformer (an embedding reads them), not {cfg.model._target_}."
        )
