"""Cross-validation: splits and leakage-safe folds, and a trial's folds trained in turn or side by side.

The names below load on first use, so that ``nnsearch.cv.settings`` is read without importing
torch (the fork server of the fold processes is started before that import, see
:mod:`nnsearch.runtime.fork_server`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Fold", "FoldCache", "fit_scaler", "fold_seed", "holdout_split", "make_splits", "prepare_fold"]


def __getattr__(name: str) -> Any:
    if name == "Fold":
        from nnsearch.data.fold import Fold

        return Fold
    if name in __all__:
        from nnsearch.cv import splits

        return getattr(splits, name)
    raise AttributeError(f"module 'nnsearch.cv' has no attribute {name!r}")
