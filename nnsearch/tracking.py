"""MLflow records of a study: one experiment, a parent run for the study, a child run per trial.

Everything a trial produced is sent in one ``log_batch`` when the trial ends (about 30 ms on a
SQLite store, against ~500 ms for one ``log_metric`` call per value). The child run is created
at that moment too, so a process killed mid-trial leaves no run stuck in RUNNING.

Metric names, the same in every trial so MLflow's compare view lines them up:

- ``fold{k}/train/loss``, ``fold{k}/val/loss``, ``fold{k}/val/{metric}``: curves per epoch (step = epoch)
- ``val/loss``, ``val/{metric}``: the mean over folds per epoch
- ``fold{k}/{metric}``: every metric at the end of fold k
- ``cv/{metric}`` and ``cv/{metric}_std``: mean and standard deviation over folds
- on the parent run, ``trials/{objective}`` per trial (step = trial number; one curve per objective
  of a multi-objective study) and ``best/{metric}``
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

PARENT_RUN_ATTR = "mlflow_parent_run_id"
TRIAL_RUN_ATTR = "mlflow_run_id"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_value(value: Any) -> str:
    return str(value)[:6000]


class Tracker:
    """Writes a study's runs through ``MlflowClient`` (no global fluent-API state)."""

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            try:
                self.experiment_id = self.client.create_experiment(experiment)
            except MlflowException:  # another worker created it meanwhile
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            self.experiment_id = found.experiment_id
        self.experiment = experiment
        self.parent_run_id: str | None = None

    def open_parent(self, study: Any, params: Mapping[str, Any], tags: Mapping[str, str]) -> tuple[str, bool]:
        """Start the study's parent run, or reattach to it when the study is resumed.

        The run id is stored on the Optuna study, so any process that opens the study finds it.
        Returns the run id and whether it was reattached.
        """
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException

        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id:
            try:
                run = self.client.get_run(run_id)
                if run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active":
                    self.client.update_run(run_id, status="RUNNING")
                    self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
                    self.parent_run_id = run_id
                    return run_id, True
            except MlflowException:
                pass  # the run was deleted or the store changed: start a new parent
        run = self.client.create_run(
            self.experiment_id, run_name=study.study_name, tags={"nnsearch.role": "study", **{k: str(v) for k, v in tags.items()}}
        )
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
        study.set_user_attr(PARENT_RUN_ATTR, run_id)
        self.parent_run_id = run_id
        return run_id, False

    def log_trial(
        self,
        *,
        number: int,
        state: str,
        params: Mapping[str, Any],
        folds: list[Any],
        cv: Mapping[str, float],
        tags: Mapping[str, str],
        start_ms: int,
        objectives: Mapping[str, float] | None = None,
        config_yaml: str | None = None,
    ) -> str:
        """Create the trial's child run with everything it produced, then close it."""
        from mlflow.entities import Metric, Param, RunTag

        end_ms = _now_ms()
        run = self.client.create_run(
            self.experiment_id,
            start_time=start_ms,
            run_name=f"trial-{number:04d}",
            tags={"mlflow.parentRunId": self.parent_run_id, "nnsearch.role": "trial", "optuna.trial_number": str(number)},
        )
        run_id = run.info.run_id
        metrics = [Metric(k, float(v), end_ms, 0) for k, v in cv.items()]
        per_epoch: dict[str, dict[int, list[float]]] = {}
        for fold in folds:
            for epoch, row in enumerate(fold.history):
                for key, value in row.items():
                    metrics.append(Metric(f"fold{fold.index}/{key}", float(value), end_ms, epoch))
                    per_epoch.setdefault(key, {}).setdefault(epoch, []).append(float(value))
            metrics += [Metric(f"fold{fold.index}/{k}", float(v), end_ms, 0) for k, v in fold.metrics.items()]
        for key, by_epoch in per_epoch.items():
            metrics += [Metric(key, sum(v) / len(v), end_ms, epoch) for epoch, v in sorted(by_epoch.items())]
        self.client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, _param_value(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in {"state": state, **tags}.items()],
        )
        if config_yaml is not None:
            self.client.log_text(run_id, config_yaml, "config.yaml")
        if objectives and self.parent_run_id:
            self.client.log_batch(
                self.parent_run_id, metrics=[Metric(f"trials/{k}", float(v), end_ms, number) for k, v in objectives.items()]
            )
        status = {"FAIL": "FAILED", "KILLED": "KILLED"}.get(state, "FINISHED")
        self.client.set_terminated(run_id, status, end_time=end_ms)
        return run_id

    def close_parent(
        self,
        status: str,
        *,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> None:
        """Record the study's outcome on its parent run and end it (FINISHED, FAILED or KILLED)."""
        from mlflow.entities import Metric, RunTag

        if self.parent_run_id is None:
            return
        now = _now_ms()
        self.client.log_batch(
            self.parent_run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )
        for path, text in (texts or {}).items():
            self.client.log_text(self.parent_run_id, text, path)
        self.client.set_terminated(self.parent_run_id, status)

    def run_url(self) -> str:
        return f"experiment '{self.experiment}' (id {self.experiment_id}), parent run {self.parent_run_id}"
