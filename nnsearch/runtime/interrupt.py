"""Ctrl-C and SIGTERM that never land inside Optuna's or MLflow's bookkeeping, and helper
processes that never outlive the process they work for.

A KeyboardInterrupt raised while Optuna writes a trial's result to its storage can leave the
study inconsistent (and Optuna 5 then fails with an UnboundLocalError). While a trial trains (or
the study's report and final model are made), Ctrl-C interrupts at once; anywhere else it is
deferred: the study stops after the trial being recorded and the interrupt is raised from
nnsearch's own code. SIGTERM (``kill``, a scheduler's stop) is handled the same way.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interruption:
    """Installs SIGINT and SIGTERM handlers for the duration of a study (main thread only).

    ``signal`` is the one received (None before), so the CLI can exit with 128 + its number.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._in_trial = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interruption:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.signal = self.signal or signum
        if self._in_trial:
            raise KeyboardInterrupt

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """The span in which a stop signal interrupts immediately: training, not recording."""
        if self.requested:
            raise KeyboardInterrupt
        self._in_trial = True
        try:
            yield
        finally:
            self._in_trial = False
            # Lightning ignores SIGINT after catching one; take it back
            if self._previous and signal.getsignal(signal.SIGINT) is not self._on_signal:
                signal.signal(signal.SIGINT, self._on_signal)

    def stop_study_if_requested(self, study: Any, trial: Any) -> None:
        """An Optuna callback: end ``optimize`` after the trial just recorded."""
        if self.requested:
            study.stop()

    def raise_if_requested(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Start helper processes inside this: they inherit blocked SIGINT and SIGTERM (through exec),
    so a Ctrl-C or a ``kill`` of the process group reaches only the study's process, which stops
    its helpers itself (DDP ranks, fold processes) instead of each printing a KeyboardInterrupt
    traceback. A signal sent meanwhile is held, not lost: it is delivered to this process when the
    block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def die_with_parent() -> None:
    """In a ``multiprocessing`` child (fold process, DDP rank): exit as soon as the parent is gone.

    Children of a process killed with SIGKILL are not told: they would train on for minutes,
    burning CPU and writing to the study. The parent's sentinel (``multiprocessing.parent_process``)
    becomes ready when it dies; a daemon thread waits on it and ends this process at once.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="nnsearch-parent-watch", daemon=True).start()


LAUNCHER_FD_ENV = "NNSEARCH_LAUNCHER_FD"  # a worker's read end of a pipe whose write end its launcher holds


def stop_when_launcher_dies() -> None:
    """In a worker process: stop cleanly (as on SIGTERM) once the launcher that started it is gone.

    The launcher keeps the write end of a pipe open and never writes; the read end, inherited by
    the worker, reaches end-of-file only when every copy of the write end is closed, that is when
    the launcher has exited, however it died. The worker then records its running trial as failed
    and exits, rather than running on unsupervised.
    """
    fd = os.environ.pop(LAUNCHER_FD_ENV, None)
    if fd is None or not fd.isdigit():
        return

    def watch() -> None:
        try:
            while os.read(int(fd), 1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="nnsearch-launcher-watch", daemon=True).start()
