"""A module imported on a daemon thread, ahead of the moment this process needs it.

Beside fold processes the study's process needs torch only after the trials, to log the final model
that a fold process retrained (it comes back as torch objects). Imported then, torch lies on the way
to the exit, and costs more than early on: for each of its custom operators ``inspect`` walks every
loaded module (2.8 s of CPU measured after the trials, against 1.8 s in a fresh process). Imported on
a thread while the first trial trains, it is off that path; the later ``import torch`` finds it
loaded, or waits for the thread's import to end (Python's import lock). Full garbage collections
wait for the import's end, and what it made is then frozen (:mod:`nnsearch.runtime.startup_gc`: torch's
objects set off three full collections here, 0.15 s of CPU).
"""

from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger("nnsearch")


def import_in_background(name: str) -> threading.Thread:
    """Start importing module ``name`` on a daemon thread; a failure is left to the import that needs it."""

    from nnsearch.runtime import startup_gc

    def run() -> None:
        startup_gc.hold()
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - the import where the module is used raises it with its context
            log.debug("background import of %s failed: %s", name, err)
        finally:
            startup_gc.release()

    thread = threading.Thread(target=run, name=f"nnsearch-import-{name}", daemon=True)
    thread.start()
    return thread
