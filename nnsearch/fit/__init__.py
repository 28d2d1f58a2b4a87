"""One fit of one fold on a Lightning engine (the Trainer, or the fast engine with the Trainer's results), DDP inside a fit.

The names below load on first use: the study's own process reads settings and results from here
while the fits run in fold processes, and never imports Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FitSettings", "FoldResult", "Job", "fit", "fit_fold"]
_HOMES = {"FitSettings": "nnsearch.fit.settings", "FoldResult": "nnsearch.fit.result", "Job": "nnsearch.fit.fold", "fit": "nnsearch.fit.fold",
          "fit_fold": "nnsearch.fit.fold"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'nnsearch.fit' has no attribute {name!r}")
