"""One fit of one fold on a Lightning engine (the Trainer, or the fast engine with the Trainer's results), DDP inside a fit."""

from nnsearch.fit.fold import FoldResult, Job, fit, fit_fold
from nnsearch.fit.settings import FitSettings

__all__ = ["FitSettings", "FoldResult", "Job", "fit", "fit_fold"]
