"""Knowledge distillation: a student learns from the true labels and a teacher's softened outputs.

``distill.teacher`` is the MLflow model URI of an earlier study's final model (``models:/NAME/latest``,
``runs:/<run id>/model``). The loss of a training batch is

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)

(Hinton et al. 2015; for a binary task the Bernoulli form: binary cross entropy against
``sigmoid(teacher / T)``, which differs from the KL term by a constant). ``T`` is
``distill.temperature`` and ``alpha`` is ``distill.alpha``; both can be searched. Validation and
every score use the true labels only.

The teacher runs once per fold, in eval mode without gradients, on that fold's training rows only
(raw features through the teacher's own scaler, as its pyfunc model would see them), and its logits
are cached by rows, so every trial of a study reuses them. They travel with each training batch as a
third tensor, indexed like the rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nnsearch.errors import NNSearchError

if TYPE_CHECKING:  # torch is imported where logits are computed: the study's process only reads the settings
    import torch

_TEACHERS: dict[tuple[str, str], Any] = {}
_LOGITS: dict[tuple[str, str, str], torch.Tensor] = {}
_MAX_CACHED = 64


@dataclass(frozen=True)
class DistillSettings:
    """``distill.*``: the teacher's URI (None: no distillation), the temperature and the weight of the teacher's term."""

    teacher: str | None = None
    temperature: float = 4.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.teacher is not None and (not isinstance(self.teacher, str) or not self.teacher.strip()):
            raise NNSearchError(f"distill.teacher must be an MLflow model URI (models:/NAME/latest, runs:/RUN_ID/model), got {self.teacher!r}.")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise NNSearchError(f"distill.temperature must be a positive number, got {self.temperature!r}.")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise NNSearchError(f"distill.alpha must be a number from 0 (labels only) to 1 (teacher only), got {self.alpha!r}.")

    @property
    def enabled(self) -> bool:
        return self.teacher is not None

    @classmethod
    def from_config(cls, node: Any) -> DistillSettings:
        """From the config's ``distill`` block (absent or empty: no distillation)."""
        if node is None:
            return cls()
        return cls(teacher=node.get("teacher") or None, temperature=node.get("temperature", 4.0), alpha=node.get("alpha", 0.5))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, *, temperature: float, alpha: float,
                      binary: bool = False) -> torch.Tensor:
    """The mixed loss of the module docstring; with ``alpha=0`` exactly the cross entropy on the labels."""
    import torch
    import torch.nn.functional as F

    t = float(temperature)
    if binary:
        hard = F.binary_cross_entropy_with_logits(student, y.float())
        soft = F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t))
    else:
        hard = F.cross_entropy(student, y)
        soft = F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1), reduction="batchmean", log_target=True)
    if alpha == 0:
        return hard
    return alpha * soft * t * t + (1 - alpha) * hard


class Teacher:
    """An earlier study's final model, as logits: raw rows in (scaled by the teacher's own scaler), one logit per
    class out (one per row for a binary task)."""

    def __init__(self, model: Any, uri: str) -> None:
        from nnsearch.models.transfer import network_of

        self.uri, self.net = uri, network_of(model).cpu().eval()
        self.scaler = getattr(model, "scaler", None)
        self.task = getattr(model, "task", None)
        self.classes = tuple(str(c) for c in getattr(model, "classes", ()))
        self.input_shape = tuple(getattr(model, "input_shape", ()) or ())

    def logits(self, raw: np.ndarray, batch_size: int = 4096) -> torch.Tensor:
        import torch

        x = np.asarray(raw, dtype=np.float32)
        if self.scaler is not None:
            table = x.reshape(-1, x.shape[-1]) if x.ndim == 3 else x.reshape(len(x), -1)
            x = self.scaler.transform(table).reshape(x.shape).astype(np.float32)
        self.net.eval()
        tensor = torch.as_tensor(x)
        with torch.no_grad():
            return torch.cat([self.net(tensor[i : i + batch_size]).float() for i in range(0, len(tensor), batch_size)])

    def check(self, data: Any) -> None:
        """The teacher must predict the data's classes from samples of the data's shape."""
        task = getattr(data.task, "value", str(data.task))
        if task not in ("binary", "multiclass"):
            raise NNSearchError(f"distill.teacher needs a classification task; data '{data.name}' is a {task} task.")
        ours = tuple(str(c) for c in data.classes)
        if self.classes and self.classes != ours:
            raise NNSearchError(f"distill.teacher={self.uri} predicts classes {list(self.classes)}, but the data's classes are {list(ours)}.")
        if self.input_shape and self.input_shape != tuple(data.input_shape):
            raise NNSearchError(f"distill.teacher={self.uri} takes samples of shape {self.input_shape}, but the data's are {tuple(data.input_shape)}.")
        out = self.logits(np.asarray(data.X[:2]))
        expected = 1 if task == "binary" else len(ours)
        width = 1 if out.ndim == 1 else out.shape[-1]
        if width != expected:
            raise NNSearchError(f"distill.teacher={self.uri} gives {width} outputs per sample, but the data has {len(ours)} classes.")


def load_teacher(uri: str, tracking_uri: str | None) -> Teacher:
    """The teacher of ``uri``, loaded once per process."""
    from nnsearch.models.transfer import load_mlflow_model

    key = (str(tracking_uri), uri)
    if key not in _TEACHERS:
        _TEACHERS[key] = Teacher(load_mlflow_model(uri, tracking_uri, setting="distill.teacher"), uri)
    return _TEACHERS[key]


def teacher_logits(teacher: Teacher, raw_rows: np.ndarray, *, binary: bool) -> torch.Tensor:
    """The teacher's logits for ``raw_rows`` (a fold's training rows), computed once per distinct set of rows."""
    rows = np.ascontiguousarray(raw_rows)
    key = (teacher.uri, str(id(teacher)), hashlib.sha256(rows.tobytes()).hexdigest() + str(rows.shape))
    if key not in _LOGITS:
        if len(_LOGITS) >= _MAX_CACHED:
            _LOGITS.clear()
        out = teacher.logits(rows)
        _LOGITS[key] = out.reshape(-1) if binary else out
    return _LOGITS[key]


def fold_teacher_logits(cfg: Any, data: Any, train_idx: np.ndarray) -> torch.Tensor | None:
    """The teacher's logits for the training rows ``train_idx`` of ``data`` (never a validation row), or None
    without ``distill.teacher``."""
    from omegaconf import OmegaConf

    settings = DistillSettings.from_config(cfg.get("distill"))
    if not settings.enabled:
        return None
    teacher = load_teacher(str(settings.teacher), OmegaConf.select(cfg, "tracking.uri"))
    return teacher_logits(teacher, np.asarray(data.X)[np.asarray(train_idx)], binary=getattr(data.task, "value", "") == "binary")
