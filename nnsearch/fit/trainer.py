"""The Lightning engine: ``lightning.Trainer``, built from :class:`FitSettings` for one fit."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from nnsearch.fit.settings import FitSettings

if TYPE_CHECKING:  # the study's own process quiets Lightning without importing it
    import lightning as L


def quiet_lightning() -> None:
    """Silence Lightning's per-Trainer banners and warnings that do not apply to in-memory batches."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*number of training batches.*", ".*LeafSpec.*", ".*isinstance.*treespec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def make_trainer(settings: FitSettings, callbacks: list[L.Callback], *, strategy: Any = "auto", plugins: list | None = None) -> L.Trainer:
    """A Trainer for one fit, built by Hydra from ``trainer`` (``trainer._target_`` and any Trainer argument);
    logging, checkpoints and progress bars off: nnsearch tracks the curves itself."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import Checkpoint

    node = {"_target_": settings.target, "num_sanity_val_steps": 0, "log_every_n_steps": 1_000_000, **settings.trainer_arguments()}
    # objects are passed as they are: Hydra would try to convert callbacks and plugins into configs
    return instantiate(node, _convert_="all", callbacks=callbacks, strategy=strategy, plugins=plugins, logger=False,
                       enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),  # only nnsearch's trial checkpoints
                       enable_progress_bar=False, enable_model_summary=False)


def fit(trainer: L.Trainer, module: L.LightningModule, train: Any, val: Any, *, ckpt_path: str | None = None) -> None:
    """``trainer.fit`` (resumed from ``ckpt_path`` when given), with a stop signal raised as KeyboardInterrupt.

    Lightning turns Ctrl-C into ``sys.exit(1)`` (and ignores further SIGINTs until the study's
    handler is restored): make it a KeyboardInterrupt again, which the study handles.
    """
    try:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val, ckpt_path=ckpt_path)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
