"""A tight training loop that drives a LightningModule's own hooks without a ``lightning.Trainer``.

Why: the models a study trains are small, and Lightning's per-step bookkeeping (about 1 ms per
optimizer step on the 2-core machines we measure on, see ``benchmarks/``) costs more than their
arithmetic. This loop calls the same hooks, in the same order, as Lightning's automatic
optimization: ``configure_optimizers``, ``training_step`` inside the optimizer closure, zero-grad
before backward, ``on_before_optimizer_step``, gradient clipping, scheduler steps at Lightning's
points (epoch-interval ones right after the last batch, ``ReduceLROnPlateau`` after the epoch's
validation), validation under ``torch.inference_mode`` in eval mode. With the same seed a fit
therefore produces the same curves and metrics as ``trainer.fit`` (``tests/test_fast_path.py``).

What it cannot reproduce it refuses before training (:func:`check_module`, :func:`resolve_device`)
with :class:`FastPathUnsupported`; a module that reads a part of ``self.trainer`` this loop does not
imitate raises the same error mid-fit. Either way the caller re-runs the fold on Lightning from the
same seed, so the fast path can only change speed, never results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

# Hooks whose override would make this loop diverge from Lightning: they need the real Trainer,
# its precision plugin or its data movement. A module that overrides one runs on Lightning.
UNSUPPORTED_HOOKS = (
    "configure_gradient_clipping",
    "clip_gradients",
    "on_validation_model_eval",
    "on_validation_model_train",
    "on_validation_model_zero_grad",
    "transfer_batch_to_device",
    "on_before_batch_transfer",
    "on_after_batch_transfer",
    "configure_callbacks",
)
PRECISIONS = ("32-true", "32", 32)


class FastPathUnsupported(Exception):
    """This fit needs something only Lightning's Trainer does; the message says what."""


def resolve_device(*, accelerator: str, devices: Any, precision: Any) -> torch.device:
    """The single device a fast fit runs on, chosen as Lightning's ``auto`` would choose it."""
    if precision not in PRECISIONS:
        raise FastPathUnsupported(f"trainer.precision={precision!r} (the fast loop trains in 32-bit only)")
    if devices not in (1, "1", [0]):
        raise FastPathUnsupported(f"trainer.devices={devices!r} (the fast loop uses one device)")
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    if accelerator == "auto" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return torch.device("cpu")
    raise FastPathUnsupported(f"trainer.accelerator={accelerator!r} on this machine")


def _overrides(module: L.LightningModule, name: str) -> bool:
    return getattr(type(module), name, None) is not getattr(L.LightningModule, name, None)


def check_module(module: L.LightningModule) -> None:
    """Refuse modules whose training this loop would not reproduce exactly."""
    if not module.automatic_optimization:
        raise FastPathUnsupported(f"{type(module).__name__} uses manual optimization")
    hooks = [name for name in UNSUPPORTED_HOOKS if _overrides(module, name)]
    if hooks:
        raise FastPathUnsupported(f"{type(module).__name__} overrides {', '.join(hooks)}")


@dataclass
class EarlyStopping:
    """Lightning's ``EarlyStopping`` decision (patience, ``min_delta``, non-finite stops) as a pure helper.

    Values are compared as float32 tensors, as Lightning logs them, so both paths stop at the same epoch.
    """

    monitor: str
    mode: str = "min"
    patience: int = 3
    min_delta: float = 0.0
    wait: int = 0
    best: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"early stopping mode must be 'min' or 'max', got {self.mode!r}.")
        if self.patience < 1:
            raise ValueError(f"early stopping patience must be at least 1, got {self.patience}.")
        self.best = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)

    def should_stop(self, current: torch.Tensor) -> bool:
        current = current.squeeze()
        if not torch.isfinite(current):
            return True
        # Lightning flips min_delta's sign for "min" and compares ``current - min_delta`` with the best
        delta = self.min_delta if self.mode == "max" else -self.min_delta
        better = torch.gt if self.mode == "max" else torch.lt
        if better(current - delta, self.best):
            self.best, self.wait = current, 0
            return False
        self.wait += 1
        return self.wait >= self.patience


class TrainerView:
    """What a module may read from ``self.trainer`` during a fast fit.

    Reading anything else raises :class:`FastPathUnsupported` (and the fold re-runs on Lightning)
    instead of silently returning a wrong value.
    """

    sanity_checking = False
    testing = False
    predicting = False
    is_global_zero = True
    world_size = 1
    global_rank = local_rank = node_rank = 0
    num_devices = num_nodes = 1
    fast_dev_run = False
    logger = None
    loggers: list = []
    min_epochs = min_steps = None
    max_steps = -1

    def __init__(self, module: L.LightningModule, *, max_epochs: int, n_train: int, n_val: int) -> None:
        self.lightning_module = self.model = module
        self.max_epochs = max_epochs
        self.num_training_batches = n_train
        self.num_val_batches = [n_val]
        self.estimated_stepping_batches = max_epochs * n_train
        self.current_epoch = 0
        self.global_step = 0
        self.should_stop = False
        self.training, self.validating = True, False
        self.callback_metrics: dict[str, torch.Tensor] = {}
        self.logged_metrics = self.progress_bar_metrics = self.callback_metrics
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_scheduler_configs: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise FastPathUnsupported(f"the module reads trainer.{name}, which the fast loop does not provide")

    def record(self, name: str, value: Any) -> None:
        """``self.log``: keep the value as Lightning's ``callback_metrics`` would (a tensor)."""
        if isinstance(value, torch.Tensor):
            value = value.detach().clone()
        else:
            value = torch.tensor(value)
        self.callback_metrics[name] = value


def _attach(module: L.LightningModule, view: TrainerView) -> None:
    module.trainer = view  # type: ignore[assignment]
    # instance attributes shadow LightningModule.log/log_dict, which need the real Trainer's results
    module.log = lambda name, value, *a, **k: view.record(name, value)  # type: ignore[method-assign]
    module.log_dict = lambda values, *a, **k: [view.record(n, v) for n, v in values.items()]  # type: ignore[method-assign]


def _optimization(module: L.LightningModule) -> tuple[torch.optim.Optimizer, list[Any]]:
    """The optimizer and Lightning's scheduler configs, parsed by Lightning's own helpers."""
    from lightning.pytorch.core.optimizer import _configure_optimizers, _configure_schedulers_automatic_opt

    optimizers, schedulers, monitor = _configure_optimizers(module.configure_optimizers())
    if len(optimizers) != 1:
        raise FastPathUnsupported(f"configure_optimizers returned {len(optimizers)} optimizers")
    configs = _configure_schedulers_automatic_opt(schedulers, monitor)
    for config in configs:
        if config.reduce_on_plateau and config.interval == "step":
            raise FastPathUnsupported("a ReduceLROnPlateau scheduler stepped every batch")
    return optimizers[0], configs


def _step_schedulers(module: L.LightningModule, view: TrainerView, interval: str, index: int, *, plateau: bool) -> None:
    for config in view.lr_scheduler_configs:
        if config.reduce_on_plateau != plateau or config.interval != interval or (index + 1) % config.frequency:
            continue
        metric = None
        if plateau:
            metric = view.callback_metrics.get(config.monitor)
            if metric is None:
                if config.strict:
                    raise KeyError(
                        f"ReduceLROnPlateau monitors '{config.monitor}', which is not logged; "
                        f"logged: {', '.join(view.callback_metrics) or 'nothing'}"
                    )
                continue
        module.lr_scheduler_step(config.scheduler, metric)


def fit(
    module: L.LightningModule,
    train: Iterable[Any],
    val: Sequence[Any] | Iterable[Any],
    *,
    max_epochs: int,
    device: torch.device,
    gradient_clip_val: float | None = None,
    gradient_clip_algorithm: str = "norm",
    early_stopping: EarlyStopping | None = None,
    after_validation: Sequence[Callable[[L.LightningModule], None]] = (),
) -> int:
    """Train ``module`` for up to ``max_epochs`` epochs, validating after each; returns epochs run.

    ``after_validation`` callables run where Lightning runs callbacks' ``on_validation_end`` (the
    pruning report); they may raise to stop the fit.
    """
    check_module(module)
    if gradient_clip_algorithm not in ("norm", "value"):
        raise FastPathUnsupported(f"trainer.gradient_clip_algorithm={gradient_clip_algorithm!r}")
    module.to(device)
    view = TrainerView(module, max_epochs=max_epochs, n_train=len(train), n_val=len(val))  # type: ignore[arg-type]
    _attach(module, view)
    try:
        return _run(module, view, train, val, gradient_clip_val, gradient_clip_algorithm, early_stopping, after_validation)
    finally:
        del module.log, module.log_dict
        module.trainer = None  # type: ignore[assignment]


def _run(
    module: L.LightningModule,
    view: TrainerView,
    train: Iterable[Any],
    val: Iterable[Any],
    clip_val: float | None,
    clip_algorithm: str,
    early_stopping: EarlyStopping | None,
    after_validation: Sequence[Callable[[L.LightningModule], None]],
) -> int:
    module.setup("fit")
    module.configure_model()
    optimizer, view.lr_scheduler_configs = _optimization(module)
    view.optimizers = [optimizer]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    module.on_fit_start()
    module.train()
    module.on_train_start()
    n_train = view.num_training_batches
    epochs = 0
    for epoch in range(view.max_epochs):
        view.current_epoch = epoch
        module.on_train_epoch_start()
        # an epoch cut short by ``should_stop`` skips validation, as in Lightning; one ended by
        # ``on_train_batch_start`` returning -1 counts as finished
        finished_epoch = True
        for batch_idx, batch in enumerate(train):
            if module.on_train_batch_start(batch, batch_idx) == -1:
                break
            outputs: dict[str, Any] = {}

            def closure(batch: Any = batch, batch_idx: int = batch_idx, outputs: dict = outputs) -> torch.Tensor | None:
                out = module.training_step(batch, batch_idx)
                loss = out["loss"] if isinstance(out, dict) else out
                outputs["out"] = out
                module.on_before_zero_grad(optimizer)
                module.optimizer_zero_grad(epoch, batch_idx, optimizer)
                if loss is not None:
                    module.on_before_backward(loss)
                    module.backward(loss)
                    module.on_after_backward()
                module.on_before_optimizer_step(optimizer)
                if clip_val:
                    if clip_algorithm == "norm":
                        torch.nn.utils.clip_grad_norm_(params, clip_val)
                    else:
                        torch.nn.utils.clip_grad_value_(params, clip_val)
                return None if loss is None else loss.detach()

            module.optimizer_step(epoch, batch_idx, optimizer, closure)
            view.global_step += 1
            _step_schedulers(module, view, "step", batch_idx, plateau=False)
            module.on_train_batch_end(outputs.get("out"), batch, batch_idx)
            if view.should_stop and batch_idx + 1 < n_train:
                finished_epoch = False
                break
        epochs += 1
        if finished_epoch:
            _step_schedulers(module, view, "epoch", epoch, plateau=False)
            _validate(module, view, val, after_validation)
        module.on_train_epoch_end()
        if finished_epoch and early_stopping is not None:
            current = view.callback_metrics.get(early_stopping.monitor)
            if current is None:
                raise KeyError(
                    f"early stopping monitors '{early_stopping.monitor}', which is not logged; "
                    f"logged: {', '.join(view.callback_metrics) or 'nothing'}"
                )
            view.should_stop = view.should_stop or early_stopping.should_stop(current)
        if finished_epoch:
            _step_schedulers(module, view, "epoch", epoch, plateau=True)
        if view.should_stop:
            break
    module.on_train_end()
    module.on_fit_end()
    module.teardown("fit")
    return epochs


def _validate(
    module: L.LightningModule,
    view: TrainerView,
    val: Iterable[Any],
    callbacks: Sequence[Callable[[L.LightningModule], None]],
) -> None:
    """One validation epoch as Lightning runs it: grads dropped, eval and inference mode, callbacks'
    ``on_validation_end`` before the module's, training modes restored last."""
    module.zero_grad(set_to_none=True)
    modes = [(m, m.training) for m in module.modules()]
    view.training, view.validating = False, True
    module.eval()
    with torch.inference_mode():
        module.on_validation_start()
        module.on_validation_epoch_start()
        for batch_idx, batch in enumerate(val):
            module.on_validation_batch_start(batch, batch_idx)
            out = module.validation_step(batch, batch_idx)
            module.on_validation_batch_end(out, batch, batch_idx)
        module.on_validation_epoch_end()
        for callback in callbacks:
            callback(module)
        module.on_validation_end()
    for m, training in modes:
        m.training = training
    view.training, view.validating = True, False
