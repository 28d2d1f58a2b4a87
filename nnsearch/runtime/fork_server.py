"""The fold processes' fork server: torch, Lightning and scikit-learn imported once, early, in the background.

A fold process (:class:`nnsearch.cv.pool.FoldPool`) spawned fresh spends ~5 s importing torch,
Lightning and scikit-learn before its first fold; two of them and the study's own process, all
importing at once on 2 cores, held the first trial back by seconds. ``multiprocessing``'s
``forkserver`` start method imports a list of modules once in a server process and forks every
child from it, ready to train. :func:`boot` starts that server in a background thread: the
command does so at its start (:func:`boot_for`), a program running a study when the settings say
folds will train side by side. Its imports then run on another core while the study's process
reads the data and opens MLflow (it never imports Lightning itself: the smoke test, the folds,
the study plots and the final fit run in the fold processes); the fold processes are forked in
milliseconds when the pool starts. The command ends the server when it ends (:func:`stop`).

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
# what a fold process imports before its first fold (no full collection meanwhile: the first); a module missing here is imported by each fold process
FOLD_PROCESS_MODULES = ("nnsearch.runtime.held_gc", "nnsearch.cv.pool", "nnsearch.fit.fold", "nnsearch.models.build", "nnsearch.models.metrics", "nnsearch.study.smoke", "torchmetrics",
                        "sklearn.preprocessing")


def context() -> Any:
    """The ``forkserver`` context with :data:`FOLD_PROCESS_MODULES` preloaded, or ``spawn`` where
    there is none. Its children get this process's working folder and ``sys.path`` when they
    start, as spawned ones do; the environment is the server's (see :class:`nnsearch.cv.pool.FoldPool`)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(list(FOLD_PROCESS_MODULES))
    return forkserver


_booted = {"here": False}
# Hydra's flags that print or complete instead of running the job
NOT_RUNNING = {"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion"}


def boot() -> None:
    """Start the fork server in a background thread, once (a no-op where there is none)."""
    if not _booted["here"] and context().get_start_method() == "forkserver":
        _booted["here"] = True
        threading.Thread(target=_start, name="nnsearch-fork-server", daemon=True).start()


def boot_for(argv: list[str]) -> None:
    """At the command's start, before Hydra composes the config: boot when the command line runs a study.

    Its imports take most of the time before the first trial, so they start a second earlier
    than the settings could say whether folds will train side by side; when they will not (folds
    in turn, workers, a GPU), the server goes unused and :func:`stop` ends it. Not for
    ``command=...`` (other than run) or Hydra's printing flags.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key in NOT_RUNNING or (sep and key.lstrip("+~") == "command" and value != "run"):
            return
    boot()


def stop() -> None:
    """End the fork server this process booted: a command that ends before its folds train (a
    refused setting) would otherwise leave it importing for seconds after it returned (it reads
    its stop signal only once its imports are done).

    multiprocessing keeps the server's pid private: it is this process' child that runs
    ``multiprocessing.forkserver`` (found with psutil).
    """
    if not _booted["here"]:
        return
    import psutil

    for child in psutil.Process().children():
        try:
            if "multiprocessing.forkserver" in " ".join(child.cmdline()):
                child.kill()
        except psutil.Error:  # it ended meanwhile
            pass


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
