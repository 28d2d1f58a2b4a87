"""``self.log`` on the fast engine, reduced as Lightning's Trainer reduces it.

Why by hand: the Trainer's reduction (its ``ResultCollection``) is private, and under Fabric a
LightningModule's ``self.log`` goes straight to the loggers, unreduced, and refuses torchmetrics
objects. This keeps the documented semantics a module relies on (and
``tests/fit/test_engines.py`` compares with the Trainer value by value):

- defaults by hook: ``on_step`` in ``training_step`` and the training batch hooks, ``on_epoch``
  in validation and in epoch-level hooks;
- ``reduce_fx`` ``mean`` (weighted by ``batch_size``, inferred from the batch as Lightning does),
  ``sum``, ``max``, ``min``, accumulated in the default float dtype;
- a torchmetrics ``Metric`` logged ``on_epoch`` is computed at the end of the epoch, then reset;
- ``callback_metrics`` holds ``name`` (and ``name_step``/``name_epoch`` when both are on), as
  ``trainer.callback_metrics`` does, for callbacks, early stopping and ``ReduceLROnPlateau``.

What it cannot reproduce (a ``Metric`` logged per step) it refuses with ``EngineUnsupported``, and
the fold runs on the Trainer instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities.data import extract_batch_size

TRAIN_STEP_HOOKS = frozenset(
    {"training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
     "on_before_optimizer_step", "on_before_zero_grad", "optimizer_step", "lr_scheduler_step"}
)
VALIDATION_STEP_HOOKS = frozenset({"validation_step", "on_validation_batch_start", "on_validation_batch_end"})
REDUCTIONS = {"mean": "mean", "sum": "sum", "max": "max", "min": "min", torch.mean: "mean", torch.sum: "sum", torch.max: "max", torch.min: "min"}


class EngineUnsupported(Exception):
    """This fit needs something only Lightning's Trainer does; the message says what."""


def stage_of(hook: str) -> str:
    return "validate" if "validation" in hook else "train"


@dataclass
class _Logged:
    on_step: bool
    on_epoch: bool
    reduce: str
    value: Any  # running tensor, or the torchmetrics Metric itself
    batches: torch.Tensor | None = None  # cumulated batch size of a mean


class LoggedMetrics:
    """The values a module logs during one fit, reduced per epoch of each stage (train, validate)."""

    def __init__(self) -> None:
        self.callback_metrics: dict[str, torch.Tensor] = {}
        self.hook = "training_step"
        self.batch: Any = None
        self._results: dict[str, dict[str, _Logged]] = {"train": {}, "validate": {}}
        self._epoch_ended = {"train": False, "validate": False}

    def start_epoch(self, stage: str) -> None:
        for logged in self._results[stage].values():
            if not isinstance(logged.value, torch.Tensor):
                logged.value.reset()
        self._results[stage] = {}
        self._epoch_ended[stage] = False

    def end_epoch(self, stage: str) -> None:
        """The stage's epoch values, in ``callback_metrics`` from now on (Lightning's epoch end)."""
        self._epoch_ended[stage] = True
        for name, logged in self._results[stage].items():
            self._publish_epoch(name, logged)

    def log(self, name: str, value: Any, *, on_step: bool | None = None, on_epoch: bool | None = None,
            reduce_fx: Any = "mean", batch_size: int | None = None, **_: Any) -> None:
        hook, stage = self.hook, stage_of(self.hook)
        step_hook = hook in TRAIN_STEP_HOOKS
        on_step = step_hook if on_step is None else on_step
        on_epoch = (not step_hook) if on_epoch is None else on_epoch
        if not (on_step or on_epoch):
            raise ValueError(f"self.log({name!r}) in {hook}: on_step and on_epoch cannot both be False.")
        if on_step and hook not in TRAIN_STEP_HOOKS | VALIDATION_STEP_HOOKS:
            raise ValueError(f"self.log({name!r}, on_step=True) is not allowed in {hook}: it runs once per epoch.")
        if reduce_fx not in REDUCTIONS:
            raise ValueError(f"self.log({name!r}, reduce_fx={reduce_fx!r}): choose mean, sum, max or min.")
        reduce = REDUCTIONS[reduce_fx]
        logged = self._results[stage].get(name)
        if _is_metric(value):
            if on_step:
                raise EngineUnsupported(f"self.log({name!r}) of a torchmetrics object per step")
            if logged is None:
                logged = self._results[stage][name] = _Logged(on_step, on_epoch, reduce, value)
            self._after_update(stage, name, logged)
            return
        value = _as_tensor(name, value)
        if on_step:
            self.callback_metrics[name] = value
            if on_epoch:
                self.callback_metrics[f"{name}_step"] = value
        if not on_epoch:
            return
        if logged is None:
            start = {"max": float("-inf"), "min": float("inf")}.get(reduce, 0.0)
            logged = self._results[stage][name] = _Logged(
                on_step, on_epoch, reduce, torch.tensor(start, dtype=torch.get_default_dtype()), torch.tensor(0)
            )
        if reduce == "mean":
            size = batch_size if batch_size is not None else self._batch_size()
            logged.value = logged.value + value * size
            logged.batches = logged.batches + size
        elif reduce == "sum":
            logged.value = logged.value + value
        else:
            logged.value = (torch.maximum if reduce == "max" else torch.minimum)(logged.value.to(value.device), value)
        self._after_update(stage, name, logged)

    def _batch_size(self) -> int:
        if self.batch is None:
            return 1
        try:
            return extract_batch_size(self.batch)
        except Exception:  # noqa: BLE001 - Lightning falls back to 1 as well
            return 1

    def _after_update(self, stage: str, name: str, logged: _Logged) -> None:
        if self._epoch_ended[stage]:  # logged in an epoch-end hook: the epoch value includes it at once
            self._publish_epoch(name, logged)

    def _publish_epoch(self, name: str, logged: _Logged) -> None:
        if not logged.on_epoch:
            return
        if isinstance(logged.value, torch.Tensor):
            value = logged.value / logged.batches if logged.reduce == "mean" else logged.value.clone()
        else:
            value = logged.value.compute()
        self.callback_metrics[name] = value
        if logged.on_step:
            self.callback_metrics[f"{name}_epoch"] = value


def _is_metric(value: Any) -> bool:
    try:
        from torchmetrics import Metric
    except ImportError:  # pragma: no cover - torchmetrics comes with lightning
        return False
    return isinstance(value, Metric)


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    """A detached scalar in a float dtype, as Lightning stores a logged value."""
    dtype = torch.get_default_dtype()
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"self.log({name!r}, value): value must have one element, got shape {tuple(value.shape)}.")
        value = value.detach().clone().squeeze()
        return value if value.dtype in (torch.float32, torch.float64) else value.to(dtype)
    if isinstance(value, (int, float, bool)):
        return torch.tensor(float(value), dtype=dtype)
    raise ValueError(f"self.log({name!r}, {value!r}): {type(value).__name__} values cannot be logged.")
