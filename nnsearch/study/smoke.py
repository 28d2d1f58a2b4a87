"""The smoke test: whatever would fail every trial fails once, before the study exists.

For the base config and for each search-space parameter at the ends of its range (``low`` and
``high``, log ranges too; every categorical choice; every model family a trial may pick), the
LightningModule is built, its optimizer and scheduler are built through the module's own
``configure_optimizers``, and one real training step runs on the first rows of fold 0: forward,
loss, backward, ``optimizer.step``. The loss of that step must be finite. A failure names the
setting that caused it, e.g. ``search_space.model.dropout=1.0: model.dropout must be in [0, 1)``.

Each probe changes one value of the base config, so a value that only fails beside another
parameter's base value (``n_heads`` that does not divide the base ``d_model``) would be blamed
unfairly: a failing probe is tried again beside each other parameter's probe values, and only a
value that fails with all of them is refused. Combinations that fail in some trials stay the
trials' business (they fail with their reason and the study goes on).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from nnsearch.errors import NNSearchError

log = logging.getLogger("nnsearch")
# Every probe builds a model and takes one step (a few ms for the shipped models, tens for a large
# one); beyond this many probes a big space would delay every start by seconds. The extremes of
# every parameter come first, so the cap drops only middle categorical choices of big spaces.
MAX_PROBES = 40
MAX_ROWS = 8  # rows of the training step: the real batch size up to this (so data.batch_size=1 meets BatchNorm as trials would)


@dataclass(frozen=True)
class Probe:
    """One configuration to try: the base config with ``values`` applied."""

    values: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""  # what the user is told caused a failure ("" = the base config)


def smoke_test(cfg: DictConfig, data: Any, fold: Any, space: Any) -> None:
    """Build and train one step of every probe of :func:`probes`; raise the first failure as one line."""
    from nnsearch.study.search_space import SearchSpace

    all_probes = probes(space)
    if len(all_probes) > MAX_PROBES:
        log.debug("smoke test: %d of %d search-space probes (MAX_PROBES)", MAX_PROBES, len(all_probes))
    with torch.random.fork_rng(devices=[]):  # the trials' seeds must not depend on how many probes ran
        for probe in all_probes[:MAX_PROBES]:
            config = SearchSpace.apply(cfg, probe.values) if probe.values else cfg
            try:
                check_one(config, data, fold)
            except NNSearchError as err:
                if not probe.label:
                    raise
                if any(_passes(SearchSpace.apply(cfg, {**other.values, **probe.values}), data, fold) for other in _others(all_probes, probe)):
                    continue
                raise NNSearchError(f"{probe.label}: {err}") from None


def probes(space: Any) -> list[Probe]:
    """The base config, every family a trial may choose, then each parameter's extremes, then the rest."""
    from optuna.distributions import CategoricalDistribution

    if space is None:
        return [Probe()]
    by_path = {p.path: p for p in space.parameters}
    extremes: list[Probe] = []
    middles: list[Probe] = []
    groups: list[Probe] = []
    for p in space.parameters:
        d = p.distribution
        if p.grid_values is not None:
            values, rest = [min(p.grid_values), max(p.grid_values)], []
        elif isinstance(d, CategoricalDistribution):
            values, rest = [d.choices[0], d.choices[-1]], list(d.choices[1:-1])
        else:
            values, rest = [d.low, d.high], []
        for i, value in enumerate(dict.fromkeys([*values, *rest])):
            probe = Probe(_activated(p, value, by_path), f"search_space.{p.path}={value}")
            (groups if p.is_group else extremes if i < len(dict.fromkeys(values)) else middles).append(probe)
    return [Probe(), *groups, *extremes, *middles]


def _activated(param: Any, value: Any, by_path: Mapping[str, Any]) -> dict[str, Any]:
    """``{param: value}`` plus the values its condition needs (``model: transformer`` for ``model.d_model``)."""
    values: dict[str, Any] = {}
    pending = [param]
    while pending:
        current = pending.pop()
        for name, allowed in current.when:
            if name not in values:
                values[name] = allowed[0]
                pending.append(by_path[name])
    values[param.path] = value
    return values


def _others(all_probes: list[Probe], probe: Probe) -> list[Probe]:
    """Probes of the other parameters whose values can stand beside ``probe``'s (conditions agree)."""
    return [
        other
        for other in all_probes[1:]
        if other.values and not any(k in probe.values and probe.values[k] != v for k, v in other.values.items())
    ]


def _passes(config: DictConfig, data: Any, fold: Any) -> bool:
    try:
        check_one(config, data, fold)
    except NNSearchError:
        return False
    return True


def check_one(config: DictConfig, data: Any, fold: Any) -> None:
    """Build the module of ``config`` and its optimizers, pass a batch through it and train one step."""
    from nnsearch.models.build import build_module
    from nnsearch.study.preflight import check_settings

    check_settings(config)
    module = build_module(config, data, fold, [])
    rows = min(int(config.data.get("batch_size") or MAX_ROWS), MAX_ROWS, len(fold.x_train))
    x, y = fold.x_train[:rows], fold.y_train[:rows]
    try:
        with torch.no_grad():
            module.eval()(x[:2])
    except (RuntimeError, ValueError) as err:
        raise NNSearchError(f"model {config.model._target_} cannot process samples of shape {data.input_shape}: {_first(err)}") from None
    optimizer = _optimizer(module, config)
    if not module.automatic_optimization:
        # a manual-optimization module (the GAN) steps its optimizers through ``self.optimizers()``,
        # which only a Lightning Trainer provides, and a Trainer per probe would cost more than the
        # rest of the smoke test together: its optimizers are built and its forward pass runs, no step
        return
    _train_one_step(module, optimizer, x, y)


def _optimizer(module: Any, config: DictConfig) -> torch.optim.Optimizer | None:
    """The first optimizer ``configure_optimizers`` returns (in any of Lightning's documented shapes);
    building it (and its scheduler) is where ``optimizer.lr=-1`` or a bad scheduler setting fails."""
    try:
        configured = module.configure_optimizers()
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        target = config.optimizer.get("_target_", "the optimizer")
        scheduler = (config.get("scheduler") or {}).get("_target_")
        with_scheduler = f" (with scheduler {scheduler})" if scheduler else ""
        raise NNSearchError(f"optimizer {target}{with_scheduler} rejects its settings: {_first(err)}") from None
    return next(iter(_optimizers_in(configured)), None)


def _optimizers_in(configured: Any) -> list[torch.optim.Optimizer]:
    if isinstance(configured, torch.optim.Optimizer):
        return [configured]
    if isinstance(configured, Mapping):
        return _optimizers_in(configured.get("optimizer"))
    if isinstance(configured, (list, tuple)):
        return [o for item in configured for o in _optimizers_in(item)]
    return []


def _train_one_step(module: Any, optimizer: torch.optim.Optimizer | None, x: torch.Tensor, y: torch.Tensor) -> None:
    module.train()
    losses: list[torch.Tensor] = []

    def closure() -> torch.Tensor | None:
        if optimizer is not None:
            optimizer.zero_grad()
        out = module.training_step((x, y), 0)
        loss = out.get("loss") if isinstance(out, Mapping) else out
        if loss is None:  # the module skipped this batch (an autoencoder's batch of anomalies only)
            return None
        if not losses and not torch.isfinite(loss).all():
            raise NNSearchError(f"the first training step fails: loss is {loss.detach().float().mean().item()}")
        losses.append(loss.detach())
        loss.backward()
        return loss

    try:
        if optimizer is None:
            closure()
        else:
            optimizer.step(closure)
    except (RuntimeError, ValueError) as err:
        raise NNSearchError(f"the first training step fails: {_first(err)}") from None


def _first(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def smoke_own_code(cfg: DictConfig, data: Any, fold: Any, metrics: list[str]) -> None:
    """The smoke test of a study on the user's own module or data: a real Lightning fit of two batches of fold 0.

    It fails once, in one line, on what would fail every trial: a module without
    ``configure_optimizers``, a DataLoader item that does not collate, a forward pass that does
    not fit the data, or a ``study.metric`` that the module never logs (the line lists what it logs).
    """
    import lightning as L

    from nnsearch.fit.fold import configured_callbacks
    from nnsearch.models.metrics import metric_names
    from nnsearch.models.build import build_module
    from nnsearch.fit.callbacks import LoggedHistory
    from nnsearch.models.user import build_user_module, epoch_values, is_user_module

    own_module = is_user_module(cfg.model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_user_module(cfg.model) if own_module else build_module(cfg, data, fold, [])
        if hasattr(fold, "train_rows") or getattr(data, "kind", None) == "datamodule":
            train, val = data.loaders(fold, seed=0)
        else:
            from nnsearch.data.batches import TensorBatches

            train = TensorBatches(fold.x_train, fold.y_train, int(cfg.data.batch_size))
            val = TensorBatches(fold.x_val, fold.y_val_scaled, int(cfg.data.batch_size))
        history: list[dict[str, float]] = []
        trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=0, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                            callbacks=[LoggedHistory(history), *configured_callbacks(cfg)])
        try:
            with warnings.catch_warnings():
                # its two validation batches of a few rows miss classes: torchmetrics' warning would say nothing of the study
                warnings.filterwarnings("ignore", message=r"No (positive|negative) samples in targets")
                trainer.fit(module, train, val)
        except NNSearchError:
            raise
        except Exception as err:  # noqa: BLE001 - the user's code may raise anything; it is stated in one line
            target = (cfg.model.get("module") or cfg.model.get("net") or cfg.model).get("_target_")
            raise NNSearchError(f"{target} fails its first training steps on fold 0: {type(err).__name__}: {_first(err)}") from None
    if not own_module:
        return
    logged = epoch_values(trainer.callback_metrics)
    standard = metric_names(data.task) if data.task is not None and data.task.is_supervised else []
    for metric in metrics:
        if metric not in logged and metric not in standard:
            shown = ", ".join(sorted(logged)) or "nothing"
            raise NNSearchError(f"study.metric '{metric}' is never logged by {cfg.model.module._target_}: it logs {shown} "
                                "(log it with self.log in validation_step or on_validation_epoch_end).")
