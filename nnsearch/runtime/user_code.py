"""A user's own packages (``mylab/`` in the folder they run nnsearch from) importable in every process.

A study may name the user's code, e.g. ``model._target_: mylab.nets.Net``. ``python -m nnsearch``
puts the current folder first on ``sys.path``, but only in its own process, and the installed
``nnsearch`` command does not at all. The processes nnsearch starts differ too: spawned fold
processes and DDP ranks copy the parent's ``sys.path``; a launched worker (``python -m
nnsearch.launch.worker``) gets the folder it starts in, which is another one under
``hydra.job.chdir=true``; a submitit job on a SLURM node gets whatever folder the job starts in.

So the CLI puts the folder it was started from on ``sys.path`` and at the front of
``PYTHONPATH`` in its environment, once, before anything runs: every process it starts inherits
that environment. Python's own opt-out is honoured: with ``-P`` or ``PYTHONSAFEPATH`` nothing is
added.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

PYTHONPATH = "PYTHONPATH"


def share_folder(folder: str | None = None, *, environ: MutableMapping[str, str] | None = None, path: list[str] | None = None) -> str | None:
    """Make ``folder`` (default: the current one, absolute) importable here and in child processes.

    ``environ`` and ``path`` default to ``os.environ`` and ``sys.path``. Returns the folder, or
    None when the interpreter runs with safe paths (``-P``, ``PYTHONSAFEPATH``).
    """
    if sys.flags.safe_path:
        return None
    folder = os.path.abspath(folder or os.getcwd())
    environ = os.environ if environ is None else environ
    path = sys.path if path is None else path
    if folder not in (os.path.abspath(p or os.curdir) for p in path):
        path.insert(0, folder)
    parts = [p for p in environ.get(PYTHONPATH, "").split(os.pathsep) if p]
    if folder not in (os.path.abspath(p) for p in parts):
        environ[PYTHONPATH] = os.pathsep.join([folder, *parts])
    return folder
