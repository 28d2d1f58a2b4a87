"""A network for tests/cv/test_pool.py: in a fold process, fold 1 waits until the trial is decided.

With folds side by side, which fold gets how far first is up to the scheduler and the number of
cores. This MLP turns it into an event: built for fold 1 in a fold process (a fold learns which
one it is from its torch seed, ``nnsearch.cv.fold_seed``: ``seed * 1000 + fold``), it trains its
first batch only once the pool's stop event is set, which the fold process that was pruned sets
at once. Fold 1 is then running (waiting here) when the trial is pruned, and it stops at the end
of its first epoch, however slow the machine. Anywhere else it is a plain MLP.

Not a test module (no ``test_`` prefix); the fold processes import it by its ``_target_``, from
the ``sys.path`` they inherit from pytest. It reads the fold process's state in
``nnsearch.cv.pool`` (test-only knowledge of nnsearch's own internals).
"""

from __future__ import annotations

import multiprocessing
import time

import torch

from nnsearch.models.mlp import MLP

WAIT_S = 120.0  # past this the fold trains anyway, and the test's assertions say what went wrong


def _trial_decided() -> bool:
    from nnsearch.cv import pool

    stop = pool._STATE.get("stop")
    return stop is not None and stop.is_set()


class SecondFoldWaits(MLP):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        in_fold_process = multiprocessing.current_process().name != "MainProcess"
        self._wait = in_fold_process and torch.initial_seed() % 1000 == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._wait:
            self._wait = False
            deadline = time.monotonic() + WAIT_S
            while not _trial_decided() and time.monotonic() < deadline:
                time.sleep(0.02)
        return super().forward(x)
