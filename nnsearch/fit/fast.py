"""The fast engine: a LightningModule's fit on a lean loop, with the Trainer's semantics.

Why it exists: the models a study trains are small, and the Trainer's per-step bookkeeping (about
1 ms per optimizer step on the 2-core machines we measure on, see ``benchmarks/``) costs more than
their arithmetic. This loop uses only Lightning's public API: the module's own hooks, called in the
order of the Trainer's automatic optimization (``training_step`` inside the optimizer closure,
zero-grad before backward, ``on_before_optimizer_step``, clipping, schedulers stepped at the
Trainer's points, validation in eval and inference mode), Lightning's own callbacks (``EarlyStopping``,
the pruning report, any ``lightning.Callback`` that reads only what :class:`TrainerView` offers),
``self.log`` reduced as the Trainer reduces it (:mod:`nnsearch.fit.logged`), and Fabric to pick the
device as the Trainer's ``accelerator=auto`` would. With the same seed a fit gives the same curves
and metrics as ``trainer.fit`` (``tests/fit/test_engines.py``).

What it cannot reproduce it refuses before training (:func:`unsupported`); a module or callback
that reads a part of the trainer this loop does not offer raises :class:`EngineUnsupported`
mid-fit. Either way the caller runs the fold on the Trainer from the same seed, so this engine
can only change speed, never results.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from lightning.pytorch.trainer.states import TrainerFn, TrainerState, TrainerStatus

from nnsearch.fit.logged import EngineUnsupported, LoggedMetrics
from nnsearch.fit.settings import FitSettings

# Hooks whose override needs the Trainer's plugins or data movement: such a module runs on the Trainer.
TRAINER_ONLY_HOOKS = (
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


def unsupported(settings: FitSettings, module: L.LightningModule | None = None) -> str:
    """Why the fast engine cannot run this fit ('' when it can)."""
    if settings.extra or settings.target != "lightning.pytorch.Trainer":
        shown = ", ".join(f"trainer.{k}" for k in settings.extra) or f"trainer._target_={settings.target}"
        return f"{shown} (the fast engine runs the Trainer's defaults only)"
    if settings.precision not in PRECISIONS:
        return f"trainer.precision={settings.precision!r} (the fast engine trains in 32-bit only)"
    if settings.devices not in (1, "1", [0]):
        return f"trainer.devices={settings.devices!r} (the fast engine uses one device)"
    if device_of(settings.accelerator) is None:
        return f"trainer.accelerator={settings.accelerator!r} on this machine"
    if module is not None:
        if not module.automatic_optimization:
            return f"{type(module).__name__} uses manual optimization"
        hooks = [name for name in TRAINER_ONLY_HOOKS if _overrides(module, name)]
        if hooks:
            return f"{type(module).__name__} overrides {', '.join(hooks)}"
    return ""


@cache
def device_of(accelerator: str) -> torch.device | None:
    """The device the Trainer would pick for ``accelerator`` and one device (None: not CPU/CUDA)."""
    if accelerator == "cpu":
        return torch.device("cpu")
    try:
        device = L.Fabric(accelerator=accelerator, devices=1).device
    except Exception:  # noqa: BLE001 - e.g. accelerator=gpu without one: the Trainer gives the user's error
        return None
    return device if device.type in ("cpu", "cuda") else None


def _overrides(module: L.LightningModule, name: str) -> bool:
    return getattr(type(module), name, None) is not getattr(L.LightningModule, name, None)


@dataclass
class SchedulerConfig:
    """One entry of ``configure_optimizers``' ``lr_scheduler`` (Lightning's documented keys)."""

    scheduler: Any
    interval: str = "epoch"
    frequency: int = 1
    monitor: str | None = None
    strict: bool = True

    @property
    def reduce_on_plateau(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def parse_optimization(configured: Any) -> tuple[torch.optim.Optimizer, list[SchedulerConfig]]:
    """The optimizer and schedulers of ``configure_optimizers()``'s documented return forms.

    Written here because Lightning's parser is private; forms with several optimizers are
    refused (the Trainer runs them).
    """
    optimizers: list[Any]
    schedulers: list[Any] = []
    monitor = None
    if isinstance(configured, torch.optim.Optimizer):
        optimizers = [configured]
    elif isinstance(configured, dict):
        optimizers = [configured.get("optimizer")]
        schedulers = [configured["lr_scheduler"]] if configured.get("lr_scheduler") is not None else []
        monitor = configured.get("monitor")
    elif isinstance(configured, (list, tuple)) and len(configured) == 2 and all(isinstance(p, (list, tuple)) for p in configured):
        optimizers, schedulers = list(configured[0]), list(configured[1])
    elif isinstance(configured, (list, tuple)) and all(isinstance(p, torch.optim.Optimizer) for p in configured):
        optimizers = list(configured)
    else:
        raise EngineUnsupported(f"configure_optimizers returned {type(configured).__name__}")
    if len(optimizers) != 1 or not isinstance(optimizers[0], torch.optim.Optimizer):
        raise EngineUnsupported(f"configure_optimizers returned {len(optimizers)} optimizers")
    configs = []
    for entry in schedulers:
        config = SchedulerConfig(**{"monitor": monitor, **entry}) if isinstance(entry, dict) else SchedulerConfig(entry, monitor=monitor)
        config.interval = config.interval or "epoch"
        if config.interval not in ("epoch", "step"):
            raise ValueError(f"lr_scheduler interval must be 'epoch' or 'step', got {config.interval!r}.")
        if config.reduce_on_plateau:
            if config.monitor is None:
                raise ValueError("a ReduceLROnPlateau scheduler needs a 'monitor' in configure_optimizers")
            if config.interval == "step":
                raise EngineUnsupported("a ReduceLROnPlateau scheduler stepped every batch")
        configs.append(config)
    return optimizers[0], configs


class _Strategy:
    """The one-device answers of ``trainer.strategy`` that callbacks ask for."""

    def __init__(self, device: torch.device) -> None:
        self.root_device = device

    @staticmethod
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:  # noqa: A002 - Lightning's name
        return decision

    @staticmethod
    def broadcast(obj: Any, src: int = 0) -> Any:
        return obj

    @staticmethod
    def barrier(name: str | None = None) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise EngineUnsupported(f"trainer.strategy.{name} was read, which the fast engine does not offer")


class TrainerView:
    """What a module (``self.trainer``) and a callback (``trainer``) may read during a fast fit.

    Reading anything else raises :class:`EngineUnsupported` (and the fold runs on the Trainer)
    instead of silently returning a wrong value.
    """

    sanity_checking = testing = predicting = False
    fast_dev_run = False
    is_global_zero = True
    world_size = 1
    global_rank = local_rank = node_rank = 0
    num_devices = num_nodes = 1
    logger = None
    loggers: list = []
    min_epochs = min_steps = None
    max_steps = -1
    val_check_interval = 1.0
    check_val_every_n_epoch = 1
    num_sanity_val_steps = 0
    interrupted = False

    def __init__(self, module: L.LightningModule, callbacks: Sequence[L.Callback], *, max_epochs: int, device: torch.device,
                 n_train: int, n_val: int) -> None:
        self.lightning_module = self.model = module
        self.callbacks = list(callbacks)
        self.strategy = _Strategy(device)
        self.state = TrainerState(fn=TrainerFn.FITTING, status=TrainerStatus.RUNNING)
        self.max_epochs = max_epochs
        self.num_training_batches = n_train
        self.num_val_batches = [n_val]
        self.estimated_stepping_batches = max_epochs * n_train
        self.current_epoch = 0
        self.global_step = 0
        self.should_stop = False
        self.training, self.validating = True, False
        self.logged = LoggedMetrics()
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_scheduler_configs: list[SchedulerConfig] = []

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        return self.logged.callback_metrics

    logged_metrics = progress_bar_metrics = callback_metrics

    def save_checkpoint(self, filepath: str | os.PathLike, weights_only: bool = False, storage_options: Any = None) -> None:
        """``Trainer.save_checkpoint``: the keys of Lightning's checkpoint that this loop restores (:func:`fit`'s ``ckpt_path``).

        Callbacks' states and ``on_save_checkpoint`` hooks are saved and called as the Trainer does.
        """
        module = self.lightning_module
        checkpoint: dict[str, Any] = {"epoch": self.current_epoch, "global_step": self.global_step, "pytorch-lightning_version": L.__version__,
                                      "state_dict": module.state_dict()}
        if not weights_only:
            checkpoint["optimizer_states"] = [optimizer.state_dict() for optimizer in self.optimizers]
            checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in self.lr_scheduler_configs]
            checkpoint["callbacks"] = {c.state_key: state for c in self.callbacks if (state := c.state_dict())}
            for callback in self.callbacks:
                callback.on_save_checkpoint(self, module, checkpoint)  # type: ignore[arg-type]
        module.on_save_checkpoint(checkpoint)
        torch.save(checkpoint, filepath)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise EngineUnsupported(f"trainer.{name} was read, which the fast engine does not offer")


def fit(module: L.LightningModule, train: Iterable[Any], val: Sequence[Any] | Iterable[Any], settings: FitSettings,
        callbacks: Sequence[L.Callback] = (), *, ckpt_path: str | None = None) -> None:
    """Train ``module`` for up to ``settings.max_epochs`` epochs, validating after each, as ``trainer.fit`` would.

    ``ckpt_path``: a checkpoint of :meth:`TrainerView.save_checkpoint` to resume from, as ``trainer.fit(ckpt_path=...)``
    does: the module, callbacks, optimizer and schedulers are restored and training goes on at the next epoch.
    """
    reason = unsupported(settings, module)
    if reason:
        raise EngineUnsupported(reason)
    device = device_of(settings.accelerator)
    _set_torch_flags(settings.deterministic)
    module.to(device)
    # the Trainer puts monitoring callbacks (early stopping, checkpoints) last
    ordered = [c for c in callbacks if not isinstance(c, (EarlyStopping, Checkpoint))] + [c for c in callbacks if isinstance(c, (EarlyStopping, Checkpoint))]
    view = TrainerView(module, ordered, max_epochs=settings.max_epochs, device=device, n_train=len(train), n_val=len(val))  # type: ignore[arg-type]
    module.trainer = view  # type: ignore[assignment]
    module.log = view.logged.log  # type: ignore[method-assign]  # an instance attribute shadows LightningModule.log; log_dict calls it
    try:
        _Loop(module, view, settings).run(train, val, ckpt_path)
    finally:
        del module.log
        module.trainer = None  # type: ignore[assignment]


def _set_torch_flags(deterministic: bool) -> None:
    """What ``Trainer(deterministic=...)`` sets for the fit."""
    if deterministic:
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic)
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"


class _Loop:
    def __init__(self, module: L.LightningModule, view: TrainerView, settings: FitSettings) -> None:
        self.module, self.view, self.settings = module, view, settings
        self.logged = view.logged

    def hook(self, name: str, *args: Any, callbacks: Sequence[L.Callback] | None = None, module: bool = True) -> Any:
        """Callbacks' hook, then the module's, with ``self.log`` attributed to ``name``."""
        previous, self.logged.hook = self.logged.hook, name
        try:
            for callback in self.view.callbacks if callbacks is None else callbacks:
                getattr(callback, name)(self.view, self.module, *args)
            return getattr(self.module, name)(*args) if module else None
        finally:
            self.logged.hook = previous

    def call(self, name: str, *args: Any) -> Any:
        """The module's hook alone."""
        return self.hook(name, *args, callbacks=())

    def run(self, train: Iterable[Any], val: Iterable[Any], ckpt_path: str | None = None) -> None:
        module, view = self.module, self.view
        for callback in view.callbacks:
            callback.setup(view, module, "fit")  # type: ignore[arg-type]
        self.call("setup", "fit")
        self.call("configure_model")
        optimizer, view.lr_scheduler_configs = parse_optimization(self.call("configure_optimizers"))
        view.optimizers = [optimizer]
        start = self.restore(ckpt_path) if ckpt_path else 0
        self.hook("on_fit_start")
        module.train()
        self.hook("on_train_start")
        for epoch in range(start, view.max_epochs):
            view.current_epoch = epoch
            finished = self.train_epoch(train, optimizer, epoch)
            if finished:
                self.step_schedulers("epoch", epoch, plateau=False)
                self.validate(val)
            self.logged.end_epoch("train")
            monitoring = [c for c in view.callbacks if isinstance(c, (EarlyStopping, Checkpoint))]
            self.hook("on_train_epoch_end", callbacks=[c for c in view.callbacks if c not in monitoring])
            self.hook("on_train_epoch_end", callbacks=monitoring, module=False)
            if finished:
                self.step_schedulers("epoch", epoch, plateau=True)
            if view.should_stop:
                break
        self.hook("on_train_end")
        self.hook("on_fit_end")
        for callback in view.callbacks:
            callback.teardown(view, module, "fit")  # type: ignore[arg-type]
        self.call("teardown", "fit")

    def restore(self, ckpt_path: str) -> int:
        """Put back a checkpoint's state in the Trainer's order (module, callbacks, optimizer, schedulers); returns the next epoch."""
        module, view = self.module, self.view
        checkpoint = torch.load(ckpt_path, map_location=view.strategy.root_device, weights_only=False)
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        states = checkpoint.get("callbacks", {})
        for callback in view.callbacks:
            callback.on_load_checkpoint(view, module, checkpoint)  # type: ignore[arg-type]
            if callback.state_key in states:
                callback.load_state_dict(states[callback.state_key])
        for optimizer, state in zip(view.optimizers, checkpoint["optimizer_states"], strict=True):
            optimizer.load_state_dict(state)
        for config, state in zip(view.lr_scheduler_configs, checkpoint["lr_schedulers"], strict=True):
            config.scheduler.load_state_dict(state)
        view.global_step = checkpoint["global_step"]
        return int(checkpoint["epoch"]) + 1

    def train_epoch(self, train: Iterable[Any], optimizer: torch.optim.Optimizer, epoch: int) -> bool:
        """One training epoch; False when ``should_stop`` cut it short (validation is then skipped, as in Lightning)."""
        view = self.view
        params = [p for group in optimizer.param_groups for p in group["params"]]
        clip = self.settings.gradient_clip_val
        by_norm = self.settings.gradient_clip_algorithm == "norm"
        n_train = view.num_training_batches
        self.logged.start_epoch("train")
        self.hook("on_train_epoch_start")
        for batch_idx, batch in enumerate(train):
            self.logged.batch = batch
            if self.hook("on_train_batch_start", batch, batch_idx) == -1:
                break
            outputs: dict[str, Any] = {}

            def closure(batch: Any = batch, batch_idx: int = batch_idx, outputs: dict = outputs) -> torch.Tensor | None:
                out = self.call("training_step", batch, batch_idx)
                loss = out["loss"] if isinstance(out, dict) else out
                outputs["out"] = out
                self.hook("on_before_zero_grad", optimizer)
                self.call("optimizer_zero_grad", epoch, batch_idx, optimizer)
                if loss is not None:
                    self.hook("on_before_backward", loss)
                    self.call("backward", loss)
                    self.hook("on_after_backward")
                self.hook("on_before_optimizer_step", optimizer)
                if clip:
                    if by_norm:
                        torch.nn.utils.clip_grad_norm_(params, clip)
                    else:
                        torch.nn.utils.clip_grad_value_(params, clip)
                return None if loss is None else loss.detach()

            self.call("optimizer_step", epoch, batch_idx, optimizer, closure)
            view.global_step += 1
            self.step_schedulers("step", batch_idx, plateau=False)
            self.hook("on_train_batch_end", outputs.get("out"), batch, batch_idx)
            self.logged.batch = None
            if view.should_stop and batch_idx + 1 < n_train:
                return False
        return True

    def step_schedulers(self, interval: str, index: int, *, plateau: bool) -> None:
        for config in self.view.lr_scheduler_configs:
            if config.reduce_on_plateau != plateau or config.interval != interval or (index + 1) % config.frequency:
                continue
            metric = None
            if plateau:
                metric = self.view.callback_metrics.get(config.monitor)  # type: ignore[arg-type]
                if metric is None:
                    if config.strict:
                        raise KeyError(
                            f"ReduceLROnPlateau monitors '{config.monitor}', which is not logged; "
                            f"logged: {', '.join(self.view.callback_metrics) or 'nothing'}"
                        )
                    continue
            self.call("lr_scheduler_step", config.scheduler, metric)

    def validate(self, val: Iterable[Any]) -> None:
        """One validation epoch as the Trainer runs it: grads dropped, eval and inference mode, training modes restored last."""
        module, view = self.module, self.view
        module.zero_grad(set_to_none=True)
        modes = [(m, m.training) for m in module.modules()]
        view.training, view.validating = False, True
        module.eval()
        self.logged.start_epoch("validate")
        with torch.inference_mode():
            self.hook("on_validation_start")
            self.hook("on_validation_epoch_start")
            for batch_idx, batch in enumerate(val):
                self.logged.batch = batch
                self.hook("on_validation_batch_start", batch, batch_idx)
                out = self.call("validation_step", batch, batch_idx)
                self.hook("on_validation_batch_end", out, batch, batch_idx)
            self.logged.batch = None
            self.logged.end_epoch("validate")
            self.hook("on_validation_epoch_end")
            self.hook("on_validation_end")
        for m, training in modes:
            m.training = training
        view.training, view.validating = True, False
