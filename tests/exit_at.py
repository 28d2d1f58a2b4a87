"""A Lightning callback for tests/fit/test_checkpoint.py: the process dies at one epoch's end, once.

``os._exit`` is a death without clean-up, as kill -9 or a preempted node: nothing after it runs.
It runs before nnsearch's checkpoint callback at that epoch's end (checkpoint callbacks run last),
so the newest checkpoint is the epoch before. The ``marker`` file makes it happen once: the retry
finds it and trains on. DDP ranks import it by its ``_target_`` (``exit_at.ExitAt``) from the
``sys.path`` they inherit from pytest. Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L


class ExitAt(L.Callback):
    def __init__(self, epoch: int, marker: str) -> None:
        self.epoch, self.marker = epoch, Path(marker)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            if trainer.is_global_zero:
                self.marker.touch()
            os._exit(1)
