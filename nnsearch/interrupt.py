"""Ctrl-C that never lands inside Optuna's or MLflow's bookkeeping.

A KeyboardInterrupt raised while Optuna writes a trial's result to its storage can leave the
study inconsistent (and Optuna 5 then fails with an UnboundLocalError). While a trial trains,
Ctrl-C interrupts it at once; anywhere else it is deferred: the study stops after the trial
being recorded and the interrupt is raised from nnsearch's own code.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Interruption:
    """Installs a SIGINT handler for the duration of a study (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._in_trial = False
        self._previous: Any = None

    def __enter__(self) -> Interruption:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self._in_trial:
            raise KeyboardInterrupt

    @contextmanager
    def trial(self) -> Iterator[None]:
        """The span in which Ctrl-C may interrupt immediately: training, not recording."""
        if self.requested:
            raise KeyboardInterrupt
        self._in_trial = True
        try:
            yield
        finally:
            self._in_trial = False
            # Lightning ignores SIGINT after catching one; take it back
            if self._previous is not None and signal.getsignal(signal.SIGINT) is not self._on_sigint:
                signal.signal(signal.SIGINT, self._on_sigint)

    def stop_study_if_requested(self, study: Any, trial: Any) -> None:
        """An Optuna callback: end ``optimize`` after the trial just recorded."""
        if self.requested:
            study.stop()

    def raise_if_requested(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Start helper processes inside this: they inherit a blocked SIGINT (through exec), so a Ctrl-C
    reaches only the study's process, which stops its helpers itself (DDP ranks, fold processes)
    instead of each printing a KeyboardInterrupt traceback. A Ctrl-C pressed meanwhile is held,
    not lost: it is delivered to this process when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
