"""Leave the command without the interpreter's teardown, once everything is written and closed.

After a study, a normal interpreter exit spends 1-2 s (measured: ~1.9 s on 2 loaded cores, see
``../shared/MEASUREMENTS.md``: "interpreter exit ~1 s") destroying modules and objects: torch,
Lightning, MLflow and SQLAlchemy hold hundreds of thousands of them. None of that writes anything
the user keeps, so the CLI skips it with ``os._exit`` -- but only at the very end of a normal
exit, after every step that does write:

1. :func:`arm` runs when ``nnsearch.__main__`` is imported, before Hydra (and through it
   ``multiprocessing.util``) or any other library registers an exit handler. ``atexit`` runs
   handlers last-registered first, so this one runs after all of theirs: MLflow ending an
   active run, multiprocessing joining its children and removing its temporary folders, and so
   on. Before ``atexit`` even starts, the interpreter has joined every non-daemon thread (the
   artifact uploads, ``concurrent.futures``' executors and with them the fold processes).
2. The handler acts only when :func:`record` was given the command's exit code (the CLI's
   ``main`` finished, normally or with ``sys.exit``); imported elsewhere (tests), it does nothing.
3. It then flushes and closes what a teardown would: ``logging.shutdown()`` (Hydra's log file),
   every Python file object still open (their buffers; found through the garbage collector, so
   a file some library left open is flushed too), and C's stdio buffers. Stores need nothing:
   MLflow's SQL store and Optuna's storages commit every write before the call returns, and the
   journal file is written with ``os.write``-level appends.

Only then ``os._exit`` ends the process with the recorded code.

Scanning the garbage collector's objects costs about 1 s at the end of a study (some 800,000 of
them, nearly all created by importing torch, Lightning and MLflow). So once the study is open,
:func:`freeze_startup` moves every object that exists then into the collector's permanent
generation (``gc.freeze``), which ``gc.get_objects`` leaves out and which collections no longer
walk either: the exit scan then covers only what the trials, the report and the final model
created. What existed before is the interpreter's std streams (flushed explicitly) and the log
file (``logging.shutdown``); nnsearch and the libraries it runs write their other files and close
them at once. Only the command's own process freezes (:func:`command`): a test that runs a study
in its process keeps its objects collectable.

A fold process (:mod:`nnsearch.cv.pool`) leaves the same way (:func:`fold_process`): it sends
every result through the executor's result pipe with a blocking write before it takes the next
task, multiprocessing has run its own exit steps (``util._exit_function``) before ``atexit`` runs,
and its exit code is 0 whenever it returns. Closing the pool then takes milliseconds, not the
second or two of two interpreters tearing down.
"""

from __future__ import annotations

import atexit
import os
import sys

_state: dict[str, int | None] = {"code": None, "armed": 0, "command": 0}


def arm() -> None:
    """Register the exit handler; call before importing libraries that register their own."""
    if not _state["armed"]:
        _state["armed"] = 1
        atexit.register(_leave)


def command() -> None:
    """This process is the command itself (``nnsearch.__main__.main``), not a program that imported nnsearch."""
    _state["command"] = 1


def freeze_startup() -> None:
    """In the command's process, ``gc.freeze()`` what exists now: the exit scan and every later
    collection skip the hundreds of thousands of objects the imports made (see the module's docstring)."""
    import gc

    from nnsearch.runtime import startup_gc

    freeze = bool(_state["command"] and _state["armed"] and not os.environ.get("NNSEARCH_SLOW_EXIT"))
    if freeze:
        gc.freeze()
    startup_gc.release(freeze=False)  # full collections, held back since the command started, run again (frozen above, once)


def fold_process() -> None:
    """Arm the fast exit in a worker process of a ``ProcessPoolExecutor``, whose exit code is 0."""
    arm()
    record(0)


def record(code: object) -> None:
    """The command's exit code as ``sys.exit`` takes it (None: 0); a message instead of a number
    keeps the normal exit (Python prints it)."""
    if code is None or isinstance(code, bool):
        _state["code"] = int(code or 0)
    elif isinstance(code, int):
        _state["code"] = code
    else:
        _state["code"] = None


def _measured() -> bool:
    """Coverage and debuggers write their results from exit handlers registered before ours:
    under them, exit normally."""
    return sys.gettrace() is not None or sys.getprofile() is not None or "coverage" in sys.modules


def _leave() -> None:
    code = _state["code"]
    if code is None or os.environ.get("NNSEARCH_SLOW_EXIT") or _measured():
        return
    import gc
    import io
    import logging
    import warnings

    logging.shutdown()
    with warnings.catch_warnings():  # isinstance() on a deprecated module attribute (torch.distributed.reduce_op) warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            if isinstance(obj, io.IOBase):
                try:
                    if not obj.closed and obj.writable():
                        obj.flush()
                except (OSError, ValueError):  # an unwritable or detached stream has nothing to flush
                    pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)  # C libraries' buffered stdout/stderr
    except (OSError, AttributeError):
        pass
    os._exit(code)
