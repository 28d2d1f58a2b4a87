"""nnsearch: cross-validated Optuna studies of Lightning models, tracked in MLflow."""

from nnsearch.errors import NNSearchError

__all__ = ["NNSearchError"]
__version__ = "0.1.0"
