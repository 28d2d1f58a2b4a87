"""The in-memory data set every model trains on, and the learning task it implies."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from nnsearch.errors import NNSearchError


class Task(str, enum.Enum):
    """What is learned; it sets the LightningModule family, the loss and the metrics.

    ``binary``, ``multiclass`` and ``regression`` predict ``y``. The unsupervised kinds learn the
    features themselves: ``reconstruction`` (autoencoders, scored by reconstruction error),
    ``anomaly`` (autoencoders; ``y`` marks anomalies with 1 and is used for ROC AUC and to train on
    normal rows only) and ``generation`` (GANs, scored by comparing generated rows with held-out
    real ones). Their ``y`` holds class indices too, so that folds are stratified by them.
    ``multitask`` predicts several target columns at once (``Dataset.targets`` says each one's
    task); its ``y`` is a table, one column per target.
    """

    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"
    RECONSTRUCTION = "reconstruction"
    ANOMALY = "anomaly"
    GENERATION = "generation"
    MULTITASK = "multitask"

    @property
    def is_classification(self) -> bool:
        """``y`` holds class indices (so folds are stratified); true for every kind but regression and
        multitask (whose targets each say it: :meth:`Dataset.stratification`)."""
        return self not in (Task.REGRESSION, Task.MULTITASK)

    @property
    def is_supervised(self) -> bool:
        """A model predicts ``y`` from the features (rather than modelling the features)."""
        return self in (Task.BINARY, Task.MULTICLASS, Task.REGRESSION, Task.MULTITASK)


TASK_CHOICES = ("auto", *(t.value for t in Task if t is not Task.MULTITASK))  # multitask follows from a list of targets
MAX_INTEGER_CLASSES = 20  # an integer target with more distinct values is taken as a quantity


@dataclass(frozen=True)
class TargetSpec:
    """One target column of a multi-task data set: its name, task and class labels.

    ``width`` is the size of its head: one logit (binary) or value (regression), one per class
    (multiclass).
    """

    name: str
    task: Task
    classes: tuple = ()

    def __post_init__(self) -> None:
        if self.task not in (Task.BINARY, Task.MULTICLASS, Task.REGRESSION):
            raise NNSearchError(f"Target '{self.name}': a multi-task target is binary, multiclass or regression, not {self.task.value}.")
        if self.task.is_classification and len(self.classes) < 2:
            raise NNSearchError(f"Target '{self.name}': a classification target needs at least 2 classes, found {len(self.classes)}.")
        if self.task is Task.BINARY and len(self.classes) != 2:
            raise NNSearchError(f"Target '{self.name}': task 'binary' needs exactly 2 classes, found {len(self.classes)}.")

    @property
    def width(self) -> int:
        return len(self.classes) if self.task is Task.MULTICLASS else 1


@dataclass(frozen=True)
class Dataset:
    """Features ``X`` (samples first, float32) and targets ``y`` (class indices or floats).

    ``classes`` holds the original label of each class index, so a string target reads back.
    A multi-task set (``task`` multitask) has ``targets``, one :class:`TargetSpec` per column of
    its 2-D ``y`` (float32; class columns hold class indices).
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    task: Task
    classes: tuple = ()
    feature_names: tuple = ()
    scaler: str = "standard"
    batch_size: int = 64
    extra: dict = field(default_factory=dict)
    targets: tuple[TargetSpec, ...] = ()

    def __post_init__(self) -> None:
        if (self.task is Task.MULTITASK) != bool(self.targets) or (self.targets and self.y.shape[1:] != (len(self.targets),)):
            raise NNSearchError(f"Data '{self.name}': a multitask y has one column per target, got shape {self.y.shape} for {len(self.targets)} targets.")
        if len(self.X) != len(self.y):
            raise NNSearchError(f"Data '{self.name}': X has {len(self.X)} rows but y has {len(self.y)}.")
        if len(self.X) < 2:
            raise NNSearchError(f"Data '{self.name}' has {len(self.X)} samples; at least 2 are needed.")
        if not np.issubdtype(self.X.dtype, np.floating):
            raise NNSearchError(f"Data '{self.name}': features must be numeric, got dtype {self.X.dtype}.")
        if not np.isfinite(self.X).all():
            bad = np.argwhere(~np.isfinite(self.X.reshape(len(self.X), -1)))
            row, col = bad[0]
            where = self.feature_names[col] if col < len(self.feature_names) else f"feature {col}"
            raise NNSearchError(
                f"Data '{self.name}' has {len(bad)} NaN/infinite feature values (first at row {row}, "
                f"column '{where}'); impute or drop them first."
            )
        if self.task.is_supervised and self.task.is_classification and len(self.classes) < 2:
            raise NNSearchError(f"Data '{self.name}': a classification target needs at least 2 classes.")
        if self.task is Task.BINARY and len(self.classes) != 2:
            raise NNSearchError(
                f"Data '{self.name}': task 'binary' needs exactly 2 classes, found {len(self.classes)}."
            )
        if self.scaler not in ("standard", "minmax", "none"):
            raise NNSearchError(f"data.scaler must be one of standard, minmax, none; got '{self.scaler}'.")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (features,), (channels, height, width) or (steps, features)."""
        return tuple(self.X.shape[1:])

    @property
    def n_outputs(self) -> int:
        """Width of the model's head: one logit for binary and regression, one per class otherwise
        (multi-task: the heads of all targets side by side)."""
        if self.targets:
            return sum(t.width for t in self.targets)
        return len(self.classes) if self.task is Task.MULTICLASS else 1

    def stratification(self) -> Dataset:
        """This data as its folds are stratified: itself, or for multi-task data its first class target
        (regression's unstratified folds when it has none). Only the rows' order and labels matter."""
        if not self.targets:
            return self
        from dataclasses import replace

        first = next((i for i, t in enumerate(self.targets) if t.task.is_classification), None)
        if first is None:
            return replace(self, y=self.y[:, 0], task=Task.REGRESSION, classes=(), targets=())
        spec = self.targets[first]
        return replace(self, y=self.y[:, first].astype(np.int64), task=spec.task, classes=spec.classes, targets=())

    def describe(self) -> str:
        if self.targets:
            parts = ", ".join(f"{t.name} {t.task.value}" + (f" ({len(t.classes)} classes)" if t.task.is_classification else "") for t in self.targets)
            return f"{self.name}: {len(self.X)} samples, input {self.input_shape}, multitask: {parts}"
        kind = self.task.value + (f", {len(self.classes)} classes" if self.task.is_classification else "")
        return f"{self.name}: {len(self.X)} samples, input {self.input_shape}, {kind}"


def infer_task(y: np.ndarray, requested: str = "auto") -> Task:
    """The task for target ``y``: strings, booleans and few-valued integers are classes."""
    if requested not in TASK_CHOICES:
        raise NNSearchError(f"data.task must be one of {', '.join(TASK_CHOICES)}; got '{requested}'.")
    if requested != "auto":
        return Task(requested)
    n_unique = len(np.unique(y))
    if y.dtype.kind in "OUSb" or (y.dtype.kind in "iu" and n_unique <= MAX_INTEGER_CLASSES):
        return Task.BINARY if n_unique == 2 else Task.MULTICLASS
    return Task.REGRESSION


def encode_target(y: np.ndarray, task: Task) -> tuple[np.ndarray, tuple]:
    """Class indices (int64) and their original labels, or float32 targets for regression.

    ``anomaly`` needs 0 (normal) and 1 (anomaly) labels. ``reconstruction`` and ``generation``
    keep class-like labels only to stratify folds; a continuous ``y`` becomes one group.
    """
    if task is Task.ANOMALY:
        return _anomaly_labels(y)
    if task in (Task.RECONSTRUCTION, Task.GENERATION) and infer_task(y) is Task.REGRESSION:
        return np.zeros(len(y), dtype=np.int64), ("all",)
    if task is Task.REGRESSION:
        try:
            values = y.astype(np.float32)
        except (TypeError, ValueError) as err:
            raise NNSearchError(f"A regression target must be numeric: {err}") from None
        if not np.isfinite(values).all():
            raise NNSearchError("The target has NaN values; drop those rows first.")
        return values, ()
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise NNSearchError("The target has NaN values; drop those rows first.")
    classes, codes = np.unique(y.astype(str) if y.dtype.kind == "O" else y, return_inverse=True)
    return codes.astype(np.int64), tuple(c.item() if hasattr(c, "item") else c for c in classes)


def _anomaly_labels(y: np.ndarray) -> tuple[np.ndarray, tuple]:
    values = set(np.unique(y).tolist()) if y.dtype.kind in "biuf" else None
    if values is None or not values <= {0, 1}:
        shown = ", ".join(map(str, np.unique(y)[:5]))
        raise NNSearchError(f"task 'anomaly' needs y marking anomalies with 1 and normal rows with 0, got values {shown}.")
    if values != {0, 1}:
        raise NNSearchError("task 'anomaly' needs both normal (0) and anomalous (1) rows in y.")
    return y.astype(np.int64), ("normal", "anomaly")
