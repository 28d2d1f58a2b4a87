"""Evaluation metrics per task, computed with torchmetrics from a model's raw outputs.

Classification: accuracy, precision, recall, f1 (macro-averaged over classes, binary included),
roc_auc (binary; one-vs-rest macro for multiclass) and log_loss. Regression: mse, rmse, mae, r2,
in the target's original units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics import functional as tmf

from nnsearch.data.dataset import Task
from nnsearch.errors import NNSearchError


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
}


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


def probabilities(task: Task, outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities from logits: P(class 1) for binary, a row per sample for multiclass."""
    return torch.sigmoid(outputs) if task is Task.BINARY else torch.softmax(outputs, dim=-1)


def _regression(outputs: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
    mse = lambda: tmf.mean_squared_error(outputs, target).item()  # noqa: E731
    return {
        "mse": mse,
        "rmse": lambda: mse() ** 0.5,
        "mae": lambda: tmf.mean_absolute_error(outputs, target).item(),
        "r2": lambda: tmf.r2_score(outputs, target).item() if len(target) > 1 else float("nan"),
    }


def _binary(outputs: torch.Tensor, target: torch.Tensor, n_classes: int) -> dict:
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


_BY_TASK = {Task.REGRESSION: _regression, Task.BINARY: _binary, Task.MULTICLASS: _multiclass}


@torch.no_grad()
def compute_metrics(
    task: Task,
    outputs: torch.Tensor,
    target: torch.Tensor,
    n_classes: int = 0,
    names: list[str] | None = None,
) -> dict[str, float]:
    """Metrics of ``task`` for raw model ``outputs`` (logits, or predictions in target units).

    ``names`` limits the work to those metrics (per-epoch curves need only a few); default: all.
    """
    outputs, target = outputs.detach().float().cpu(), target.detach().cpu()
    lazy = _BY_TASK[task](outputs, target, n_classes)
    return {name: float(lazy[name]()) for name in (names or lazy)}
