"""What a study optimizes: one metric or several (multi-objective), their directions, and constraints.

``study.metric`` is a metric name or a list of them; ``study.direction`` a direction, a list of
directions, or null for each metric's natural one. Besides the CV metrics of the task,
``n_params`` and ``latency_ms`` (nnsearch.models.size) measure the network itself.

``study.constraints`` maps a metric to bounds, e.g. ``{n_params: {max: 20000}}``; Optuna's
constraint API (``trial.set_constraint``) records how far each trial is from feasible, the
samplers that support constraints (TPE, GP, NSGA-II/III) steer towards feasible regions, and
the best trial is chosen among feasible ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from nnsearch.data.dataset import Task
from nnsearch.errors import NNSearchError
from nnsearch.models.metrics import (
    metric_names,
    resolve_objective,
    resolve_target_objective,
    target_metric_names,
)
from nnsearch.models.size import MODEL_METRICS


@dataclass(frozen=True)
class Objectives:
    metrics: list[str]
    directions: list[str]
    constraints: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def model_metrics(self) -> set[str]:
        """Architecture costs that must be measured for objectives or constraints."""
        return {m for m in (*self.metrics, *self.constraints) if m in MODEL_METRICS}

    def constraint_values(self, values: Mapping[str, float]) -> dict[str, float]:
        """Per bound, how far the trial is past it (``<= 0`` means feasible), as Optuna expects."""
        out: dict[str, float] = {}
        for name, bounds in self.constraints.items():
            if "max" in bounds:
                out[f"{name}<={bounds['max']}"] = values[name] - bounds["max"]
            if "min" in bounds:
                out[f"{name}>={bounds['min']}"] = bounds["min"] - values[name]
        return out


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def resolve_objectives(study_cfg: Any, task: Task | None, *, logged: bool = False, targets: tuple = ()) -> Objectives:
    """Check metrics, directions and constraints against the task; the one place they are parsed.

    ``logged``: the module is the user's, so a metric may be any name it logs with ``self.log``
    (checked when the smoke test trains it), besides nnsearch's metrics of a known task.
    ``targets``: a multi-task data set's target specs; its metrics are ``<target>/<metric>``
    (``study.metric=[a/accuracy, b/rmse]`` is a multi-objective study over both targets), or ``weighted``:
    the ``study.metric_weights``-weighted sum of them, e.g. ``{a/accuracy: 1.0, b/rmse: -0.1}``.
    """
    metrics = [str(m) for m in _as_list(study_cfg.metric)]
    if not metrics:
        raise NNSearchError("study.metric is empty; name the metric to optimize, e.g. study.metric=accuracy.")
    if len(set(metrics)) != len(metrics):
        raise NNSearchError(f"study.metric lists a metric twice: {metrics}.")
    given = _as_list(study_cfg.get("direction"))
    if given and len(given) != len(metrics):
        raise NNSearchError(f"study.direction has {len(given)} entries for {len(metrics)} metrics {metrics}; give one per metric or null.")
    directions = []
    for i, metric in enumerate(metrics):
        direction = given[i] if given else None
        if logged and (task is None or metric not in metric_names(task)):
            if metric in MODEL_METRICS:
                raise NNSearchError(f"study.metric '{metric}' measures nnsearch's own networks; it does not apply to model=lightning.")
            from nnsearch.models.user import logged_direction

            directions.append(logged_direction(metric, direction))
        elif targets and metric not in MODEL_METRICS:
            weights = study_cfg.get("metric_weights")
            weights = OmegaConf.to_container(weights) if OmegaConf.is_config(weights) else weights
            directions.append(resolve_target_objective(metric, direction, targets, weights=weights))
        elif metric in MODEL_METRICS:
            direction = direction or MODEL_METRICS[metric]
            if direction not in ("maximize", "minimize"):
                raise NNSearchError(f"study.direction must be maximize or minimize, got '{direction}'.")
            directions.append(direction)
        else:
            directions.append(resolve_objective(metric, direction, task))
    constraints: dict[str, dict[str, float]] = {}
    raw = study_cfg.get("constraints") or {}
    known = [*(target_metric_names(targets) if targets else metric_names(task) if task is not None else []), *MODEL_METRICS]
    for name, bounds in (OmegaConf.to_container(raw) if OmegaConf.is_config(raw) else dict(raw)).items():
        if name not in known:
            raise NNSearchError(f"study.constraints.{name}: unknown metric; choose one of {', '.join(known)}.")
        if not isinstance(bounds, Mapping) or not bounds or set(bounds) - {"min", "max"}:
            raise NNSearchError(f"study.constraints.{name} must be a mapping with `min` and/or `max`, got {bounds!r}.")
        constraints[name] = {k: float(v) for k, v in bounds.items()}
    return Objectives(metrics, directions, constraints)
