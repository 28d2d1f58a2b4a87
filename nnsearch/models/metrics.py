"""Evaluation metrics per task, computed with torchmetrics from a model's raw outputs.

Classification: accuracy, precision, recall, f1 (macro-averaged over classes, binary included),
roc_auc (binary; one-vs-rest macro for multiclass) and log_loss. Regression: mse, rmse, mae, r2,
in the target's original units.

The unsupervised tasks take other "outputs":

- reconstruction: each row's mean squared reconstruction error -> ``recon_mse`` (their mean).
- anomaly: the same errors used as anomaly scores -> ``roc_auc`` and ``average_precision`` of the
  scores against the anomaly labels, and ``recon_mse`` over the normal rows only (reconstructing
  anomalies well is not a merit).
- generation: generated rows against held-out real rows (``target``) -> ``mmd`` (squared maximum
  mean discrepancy, RBF kernel whose bandwidth is the median distance between the real rows, so it
  does not move with the generator) and ``c2st_auc``, the ROC AUC of a classifier two-sample test:
  gradient-boosted trees, cross-validated, telling generated from real rows. 0.5 means
  indistinguishable; both are minimized. The adversarial losses are never the objective.

torch and torchmetrics are imported where metrics are computed, not at the top: the study's own
process only names and resolves metrics here, and beside fold processes never imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nnsearch.data.dataset import Task
from nnsearch.errors import NNSearchError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MetricInfo:
    direction: str  # "maximize" or "minimize"
    tasks: tuple[Task, ...]


_CLS = (Task.BINARY, Task.MULTICLASS)
METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo("maximize", _CLS),
    "precision": MetricInfo("maximize", _CLS),
    "recall": MetricInfo("maximize", _CLS),
    "f1": MetricInfo("maximize", _CLS),
    "roc_auc": MetricInfo("maximize", _CLS),
    "log_loss": MetricInfo("minimize", _CLS),
    "mse": MetricInfo("minimize", (Task.REGRESSION,)),
    "rmse": MetricInfo("minimize", (Task.REGRESSION,)),
    "mae": MetricInfo("minimize", (Task.REGRESSION,)),
    "r2": MetricInfo("maximize", (Task.REGRESSION,)),
    "recon_mse": MetricInfo("minimize", (Task.RECONSTRUCTION, Task.ANOMALY)),
    "average_precision": MetricInfo("maximize", (Task.ANOMALY,)),
    "mmd": MetricInfo("minimize", (Task.GENERATION,)),
    "c2st_auc": MetricInfo("minimize", (Task.GENERATION,)),
}
METRICS["roc_auc"] = MetricInfo("maximize", (*_CLS, Task.ANOMALY))


def metric_names(task: Task) -> list[str]:
    """The metrics reported for ``task``, in a stable order."""
    return [name for name, info in METRICS.items() if task in info.tasks]


def resolve_objective(metric: str, direction: str | None, task: Task) -> str:
    """Check the objective metric fits the task; return the direction to optimize."""
    if metric not in METRICS:
        raise NNSearchError(f"Unknown objective metric '{metric}'; choose one of {', '.join(metric_names(task))}.")
    if task not in METRICS[metric].tasks:
        raise NNSearchError(
            f"Metric '{metric}' does not apply to a {task.value} task; choose one of {', '.join(metric_names(task))}."
        )
    if direction is None:
        return METRICS[metric].direction
    if direction not in ("maximize", "minimize"):
        raise NNSearchError(f"study.direction must be maximize or minimize, got '{direction}'.")
    return direction


def _regression(outputs: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    from torchmetrics import functional as tmf

    mse = lambda: tmf.mean_squared_error(outputs, target).item()  # noqa: E731
    return {
        "mse": mse,
        "rmse": lambda: mse() ** 0.5,
        "mae": lambda: tmf.mean_absolute_error(outputs, target).item(),
        "r2": lambda: tmf.r2_score(outputs, target).item() if len(target) > 1 else float("nan"),
    }


def _binary(outputs: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torchmetrics import functional as tmf

    prob = torch.sigmoid(outputs)
    pred = (prob >= 0.5).long()
    # precision/recall/F1 macro-averaged over the two classes, as for multiclass
    stat = {"task": "multiclass", "num_classes": 2, "average": "macro", "validate_args": False}
    return {
        "accuracy": lambda: tmf.accuracy(prob, target, task="binary", validate_args=False).item(),
        "precision": lambda: tmf.precision(pred, target, **stat).item(),
        "recall": lambda: tmf.recall(pred, target, **stat).item(),
        "f1": lambda: tmf.f1_score(pred, target, **stat).item(),
        "roc_auc": lambda: tmf.auroc(prob, target, task="binary", validate_args=False).item(),
        "log_loss": lambda: F.binary_cross_entropy_with_logits(outputs, target.float()).item(),
    }


def _multiclass(outputs: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torchmetrics import functional as tmf

    prob = torch.softmax(outputs, dim=-1)
    stat = {"task": "multiclass", "num_classes": n_classes, "validate_args": False}
    return {
        "accuracy": lambda: tmf.accuracy(prob, target, average="micro", **stat).item(),
        "precision": lambda: tmf.precision(prob, target, average="macro", **stat).item(),
        "recall": lambda: tmf.recall(prob, target, average="macro", **stat).item(),
        "f1": lambda: tmf.f1_score(prob, target, average="macro", **stat).item(),
        "roc_auc": lambda: tmf.auroc(prob, target, average="macro", **stat).item(),
        "log_loss": lambda: F.cross_entropy(outputs, target).item(),
    }


def _reconstruction(errors: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    return {"recon_mse": lambda: errors.mean().item()}


def _anomaly(errors: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    from torchmetrics import functional as tmf

    scores = errors / (1 + errors)  # into [0, 1) without changing the order, so no sigmoid is applied
    both = bool((target == 0).any() and (target == 1).any())
    auc = lambda f: f().item() if both else float("nan")  # noqa: E731 - undefined with one class
    return {
        "roc_auc": lambda: auc(lambda: tmf.auroc(scores, target, task="binary", validate_args=False)),
        "average_precision": lambda: auc(lambda: tmf.average_precision(scores, target, task="binary", validate_args=False)),
        "recon_mse": lambda: errors[target == 0].mean().item(),
    }


def _generation(samples: torch.Tensor, real: torch.Tensor, n_classes: int) -> dict:
    return {"mmd": lambda: mmd(samples, real), "c2st_auc": lambda: c2st_auc(samples, real)}


def mmd(samples: torch.Tensor, real: torch.Tensor) -> float:
    """Unbiased squared MMD with an RBF kernel; bandwidth = median pairwise distance of ``real``."""
    import torch

    x, y = samples.flatten(1).double(), real.flatten(1).double()
    d_yy = torch.cdist(y, y)
    bandwidth = d_yy[d_yy > 0].median() if (d_yy > 0).any() else torch.tensor(1.0, dtype=torch.float64)
    k = lambda d: torch.exp(-(d**2) / (2 * bandwidth**2))  # noqa: E731
    k_xx, k_yy, k_xy = k(torch.cdist(x, x)), k(d_yy), k(torch.cdist(x, y))
    n, m = len(x), len(y)
    off = lambda kk, size: (kk.sum() - kk.diagonal().sum()) / (size * (size - 1))  # noqa: E731
    return float(off(k_xx, n) + off(k_yy, m) - 2 * k_xy.mean())


def c2st_auc(samples: torch.Tensor, real: torch.Tensor, *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a gradient-boosted-trees classifier telling generated from real rows.

    Trees see per-feature ranges, modes and interactions that a linear or nearest-neighbour test
    misses in 30 dimensions (e.g. a generator matching only the mean and covariance).
    """
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.concatenate([samples.flatten(1).numpy(), real.flatten(1).numpy()]).astype(np.float64)
    if not np.isfinite(x).all():
        return float("nan")
    labels = np.r_[np.zeros(len(samples)), np.ones(len(real))]
    split = StratifiedKFold(min(folds, len(samples), len(real)), shuffle=True, random_state=seed)
    classifier = HistGradientBoostingClassifier(max_iter=20, early_stopping=False, random_state=seed)
    prob = cross_val_predict(classifier, x, labels, cv=split, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, prob))


_BY_TASK = {
    Task.REGRESSION: _regression,
    Task.BINARY: _binary,
    Task.MULTICLASS: _multiclass,
    Task.RECONSTRUCTION: _reconstruction,
    Task.ANOMALY: _anomaly,
    Task.GENERATION: _generation,
}


def compute_metrics(
    task: Task,
    outputs: torch.Tensor,
    target: torch.Tensor,
    n_classes: int = 0,
    names: list[str] | None = None,
) -> dict[str, float]:
    """Metrics of ``task`` for raw model ``outputs`` (logits, predictions in target units,
    per-row reconstruction errors, or generated rows; see the module docstring).

    ``names`` limits the work to those metrics (per-epoch curves need only a few); default: all.
    """
    import torch

    outputs, target = outputs.detach().float().cpu(), target.detach().cpu()
    with torch.no_grad():
        lazy = _BY_TASK[task](outputs, target, n_classes)
        return {name: float(lazy[name]()) for name in (names or lazy)}


def target_metric_names(targets: tuple) -> list[str]:
    """The metrics of a multi-task data set: ``<target>/<metric>`` for each target's task, in target order."""
    return [f"{t.name}/{m}" for t in targets for m in metric_names(t.task)]


WEIGHTED = "weighted"  # a multi-task objective: the study.metric_weights-weighted sum of target metrics


def check_metric_weights(weights: Any, targets: tuple) -> dict[str, float]:
    """``study.metric_weights`` for ``study.metric=weighted``: target metric -> a finite number (its sign says the
    direction it pulls; the sum is maximized unless ``study.direction=minimize``)."""
    import math
    from collections.abc import Mapping

    known = target_metric_names(targets)
    if not isinstance(weights, Mapping) or not weights:
        raise NNSearchError(f"study.metric=weighted needs study.metric_weights, a mapping of target metrics to weights, e.g. "
                            f"{{{known[0]}: 1.0, {known[-1]}: -0.1}}; got {weights!r}.")
    unknown = [m for m in weights if m not in known]
    if unknown:
        raise NNSearchError(f"study.metric_weights names {', '.join(map(str, unknown))}, which is no target metric; choose among {', '.join(known)}.")
    bad = {m: w for m, w in weights.items() if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w)}
    if bad:
        raise NNSearchError(f"study.metric_weights must be finite numbers, got {bad}.")
    return {str(m): float(w) for m, w in weights.items()}


def resolve_target_objective(metric: str, direction: str | None, targets: tuple, *, weights: Any = None) -> str:
    """Like :func:`resolve_objective` for a multi-task metric ``<target>/<metric>``, or ``weighted`` (the
    ``weights``-weighted sum of target metrics, maximized by default); returns the direction."""
    if metric == WEIGHTED:
        check_metric_weights(weights, targets)
        return resolve_objective("accuracy", direction, Task.BINARY)  # maximize unless told; the direction is checked
    if metric not in target_metric_names(targets):
        from difflib import get_close_matches

        known = target_metric_names(targets)
        close = get_close_matches(metric, known, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise NNSearchError(f"Unknown objective metric '{metric}' for targets {[t.name for t in targets]}; choose one of {', '.join(known)} "
                            f"(or weighted with study.metric_weights).{hint}")
    return resolve_objective(metric.rsplit("/", 1)[1], direction, next(t.task for t in targets if metric.startswith(f"{t.name}/")))
