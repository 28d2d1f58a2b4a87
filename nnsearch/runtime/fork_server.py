"""The fold processes' fork server: torch, Lightning and scikit-learn imported once, early, in the background.

A fold process (:class:`nnsearch.cv.pool.FoldPool`) spawned fresh spends ~5 s importing torch,
Lightning and scikit-learn before its first fold; two of them and the study's own process, all
importing at once on 2 cores, held the first trial back by seconds. ``multiprocessing``'s
``forkserver`` start method imports a list of modules once in a server process and forks every
child from it, ready to train. :func:`boot` starts that server in a background thread as soon as
the settings say folds will train side by side, before the study's process imports the same
modules itself, so the two imports run on two cores at once; the fold processes are then forked
in milliseconds when the pool starts. A study that stops on a bad setting (found by the smoke
test, after these imports) leaves the server nothing more to do: it ends with this process.

Where the platform has no fork server (Windows), the fold processes are spawned as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from typing import Any

from nnsearch.runtime.interrupt import STOP_SIGNALS

log = logging.getLogger("nnsearch")
# what a fold process imports before its first fold; a module missing here is imported by each fold process
FOLD_PROCESS_MODULES = ("nnsearch.cv.pool", "nnsearch.fit.fold", "nnsearch.models.build", "nnsearch.models.metrics", "sklearn.preprocessing")


def context() -> Any:
    """The ``forkserver`` context with :data:`FOLD_PROCESS_MODULES` preloaded, or ``spawn`` where
    there is none. Its children get this process's working folder and ``sys.path`` when they
    start, as spawned ones do; the environment is the server's (see :class:`nnsearch.cv.pool.FoldPool`)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(list(FOLD_PROCESS_MODULES))
    return forkserver


def boot() -> None:
    """Start the fork server in a background thread (a no-op where there is none)."""
    if context().get_start_method() == "forkserver":
        threading.Thread(target=_start, name="nnsearch-fork-server", daemon=True).start()


def _start() -> None:
    """Start the server by starting a process from it (this blocks until the server has imported).

    SIGINT and SIGTERM are blocked in this thread, so the server and every fold process forked from
    it inherit them blocked: Ctrl-C reaches only the study's process, which stops the folds.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    try:
        process = context().Process(target=os._exit, args=(0,), name="nnsearch-fork-server-start")
        process.start()
        process.join()
    except Exception as err:  # noqa: BLE001 - stopped meanwhile (stop()), or it failed: the pool starts it again when it needs it
        log.debug("fork server: not started early (%s)", err)
