"""A network for tests/cv/test_pool.py: in a fold process, fold 1 waits for fold 0's first report.

With folds side by side, which fold gets how far first is up to the scheduler and the number of
cores. This MLP turns it into an event: built for fold 1 in a fold process (a fold learns which
one it is from its torch seed, ``nnsearch.cv.fold_seed``: ``seed * 1000 + fold``), it trains its
first batch only once the running trial in ``./optuna.journal`` holds step 0, fold 0's first
report. Anywhere else (the study's own process, other folds) it is a plain MLP.

Not a test module (no ``test_`` prefix); the fold processes import it by its ``_target_``, from
the ``sys.path`` they inherit from pytest.
"""

from __future__ import annotations

import multiprocessing
import time

import torch

from nnsearch.models.mlp import MLP

WAIT_S = 120.0  # past this the fold trains anyway, and the test's assertions say what went wrong


def _step_zero_reported() -> bool:
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from optuna.trial import TrialState

    storage = JournalStorage(JournalFileBackend("optuna.journal"))
    for study in storage.get_all_studies():
        running = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))
        if any(0 in t.intermediate_values for t in running):
            return True
    return False


class SecondFoldWaits(MLP):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        in_fold_process = multiprocessing.current_process().name != "MainProcess"
        self._wait = in_fold_process and torch.initial_seed() % 1000 == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._wait:
            self._wait = False
            deadline = time.monotonic() + WAIT_S
            while not _step_zero_reported() and time.monotonic() < deadline:
                time.sleep(0.02)
        return super().forward(x)
