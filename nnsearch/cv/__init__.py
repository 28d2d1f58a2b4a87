"""Cross-validation: splits and leakage-safe folds, and a trial's folds trained in turn or side by side."""

from nnsearch.cv.splits import Fold, FoldCache, fit_scaler, fold_seed, holdout_split, make_splits, prepare_fold

__all__ = ["Fold", "FoldCache", "fit_scaler", "fold_seed", "holdout_split", "make_splits", "prepare_fold"]
