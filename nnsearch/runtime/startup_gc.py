"""Full garbage collections held back while a process imports its libraries.

CPython runs a full collection whenever the objects that survived the younger collections have
grown by a quarter. Importing torch, Lightning, scikit-learn and MLflow makes hundreds of thousands
of objects that live as long as the process, so an import-heavy start pays one full collection
after another, each walking everything imported so far and finding next to nothing to free:
measured on the 2-core machine (a 6-trial ``digits_mlp``), 7 full collections and 0.42 s of CPU in
the study's process before its first trial, and 7 and 0.49 s in the fold processes' fork server,
both on the way to that trial.

So the command holds full collections back from its start (young objects are still collected)
until the study is open, then ``gc.freeze()``s what exists, Python's provision for objects that
live as long as the process (they are no longer walked), and collects as usual
(:func:`nnsearch.runtime.fast_exit.freeze_startup`; a command other than a study releases them
when it starts). The fork server holds them back for good: it only imports, then forks. Each fold
process freezes what it inherited, which also leaves those pages shared with the server (a
collection walking them would copy them), and collects as usual.
"""

from __future__ import annotations

import gc

HELD_BACK = 1 << 30  # younger collections before a full one: never, in practice
_held: dict[str, tuple[int, ...] | None] = {"thresholds": None}


def hold() -> None:
    """No full collection from now until :func:`release` (younger ones go on)."""
    if _held["thresholds"] is None:
        thresholds = gc.get_threshold()
        _held["thresholds"] = thresholds
        gc.set_threshold(thresholds[0], thresholds[1], HELD_BACK)


def release(*, freeze: bool = True) -> None:
    """Collect as before :func:`hold`, after freezing (``freeze``) what exists now; a no-op when nothing is held."""
    thresholds = _held["thresholds"]
    if thresholds is None:
        return
    if freeze:
        gc.freeze()
    gc.set_threshold(*thresholds)
    _held["thresholds"] = None
