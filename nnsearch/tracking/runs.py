"""MLflow records of a study: one experiment, a parent run for the study, a child run per trial.

Everything a trial produced is sent in one ``log_batch`` when the trial ends (about 30 ms on a
SQLite store, against ~500 ms for one ``log_metric`` call per value). The child run is created
at that moment too, so a process killed mid-trial leaves no run stuck in RUNNING.

Metric names, the same in every trial so MLflow's compare view lines them up:

- ``fold{k}/train/loss``, ``fold{k}/val/loss``, ``fold{k}/val/{metric}``: curves per epoch (step = epoch)
- ``val/loss``, ``val/{metric}``: the mean over folds per epoch
- ``fold{k}/{metric}``: every metric at the end of fold k
- ``cv/{metric}`` and ``cv/{metric}_std``: mean and standard deviation over folds
- ``artifacts_s``: seconds spent drawing the trial's plots (to keep an eye on their cost)
- on the parent run, ``trials/{objective}`` per trial (step = trial number; one curve per objective
  of a multi-objective study) and ``best/{metric}``

Artifacts are written to a temporary folder and uploaded with one ``log_artifacts`` call per run:
per trial ``config.yaml``, ``tables/fold_metrics.csv`` and the plots of :mod:`nnsearch.tracking.trial_plots`
(``tracking.trial_plots``: ``complete`` draws them for complete trials only, ``all`` for pruned and
failed ones too, ``none`` never). Drawing them takes 0.1-0.3 s a trial, as long as a small model's
fold: with ``background=True`` (the CLI) a thread draws and uploads them while the next trial
trains, after the run itself is recorded and FINISHED; ``flush`` waits for them. The parent run gets the environment (:mod:`nnsearch.runtime.environment`)
when it is created and the study's report (:mod:`nnsearch.study.report`) when it ends.

Other child runs of the parent: ``final-model`` (:meth:`Tracker.final_run`, with the model of
:meth:`Tracker.log_pyfunc` and the test rows' plots of :meth:`Tracker.log_test_plots`) and ``seeds-trial-NNNN`` (:meth:`Tracker.log_seeds`). This module is the
only one of nnsearch that writes MLflow runs. It writes through ``MlflowClient(uri)``; the one
exception, logging a model, which MLflow does only through its global tracking URI and an active
run, points both at the study's store for that call alone and puts them back as they were.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nnsearch.config.credentials import scrub
from nnsearch.errors import NNSearchError
from nnsearch.tracking.store import check_reachable, experiment_id, open_client

log = logging.getLogger("nnsearch")

TRIAL_RUN_ATTR = "mlflow_run_id"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens unless told otherwise
SHARED_VIEW_TAG = "mlflow.sharedViewState."
TRIALS_VIEW = "nnsearch-trials"
MAX_VIEW_PARAMS = 8  # parameter columns in the first screen's table; the rest are a click away


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_value(value: Any) -> str:
    return scrub(value)[:6000]


def _tags(tags: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, _param_value(v)) for k, v in tags.items()]


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI is ``uri`` inside the block, and afterwards exactly what it was.

    ``mlflow.set_tracking_uri`` cannot be undone through MLflow's API: it pins the URI for the
    rest of the process (even when it was unset, following the default store of the working
    directory) and writes ``MLFLOW_TRACKING_URI`` into the environment, which child processes
    inherit. So the URI is given through that variable, which MLflow reads when no URI is pinned,
    and the variable is restored after; only when the caller pinned another URI is it pinned to
    ``uri`` for the block and back to the caller's after.
    """
    import mlflow
    from mlflow.environment_variables import MLFLOW_TRACKING_URI

    name = MLFLOW_TRACKING_URI.name
    environ = os.environ.get(name)
    pinned = None
    os.environ[name] = uri
    try:
        if mlflow.get_tracking_uri() != uri:
            pinned = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(uri)
        yield
    finally:
        if pinned is not None:
            mlflow.set_tracking_uri(pinned)
        if environ is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = environ


class Tracker:
    """Writes a study's runs through ``MlflowClient`` (no global fluent-API state, except for the
    duration of :meth:`log_pyfunc`).

    Args:
        uri: the MLflow tracking URI.
        experiment: the experiment (one per study), created or restored as needed.
        trial_plots: ``complete`` (default), ``all`` or ``none``: which trials get figures.
        task: ``binary``, ``multiclass`` or ``regression`` for the diagnostic plots; inferred
            from the predictions when None.
        classes: class labels for the confusion matrix and one-vs-rest curves.
        background: draw and upload each trial's artifacts in a thread, while the next trial trains.
        targets: a multi-task data set's target specs: each target gets its own figures.
    """

    def __init__(
        self, uri: str, experiment: str, *, trial_plots: str | bool = "complete", task: str | None = None, classes: tuple = (), background: bool = False,
        targets: tuple = (),
    ) -> None:
        from nnsearch.tracking.trial_plots import PLOT_MODES

        if trial_plots is True or trial_plots is False:
            trial_plots = "complete" if trial_plots else "none"
        if trial_plots not in PLOT_MODES:
            raise NNSearchError(f"tracking.trial_plots must be one of {', '.join(PLOT_MODES)}, got {trial_plots!r}.")
        self.trial_plots, self.task, self.classes, self.targets = trial_plots, task, tuple(classes), tuple(targets)
        self.uri = uri
        check_reachable(uri)
        self.client = open_client(uri)
        self.experiment_id = experiment_id(self.client, experiment)
        self.experiment = experiment
        self.parent_run_id: str | None = None
        self._artifacts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnsearch-artifacts") if background else None
        self._pending: list[Future] = []

    def open_parent(self, name: str, run_id: str | None, params: Mapping[str, Any], tags: Mapping[str, str]) -> tuple[str, bool]:
        """Start the study's parent run (named ``name``), or reattach to ``run_id``, the one it
        had, when the study is resumed.

        Returns the run id (the caller records it with the study, so any process that opens the
        study finds it) and whether it was reattached.
        """
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        if run_id:
            try:
                run = self.client.get_run(run_id)
                if run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active":
                    self.client.update_run(run_id, status="RUNNING")
                    self.client.log_batch(run_id, tags=_tags(tags))
                    self.parent_run_id = run_id
                    self._log_environment(run_id)  # the resuming process may run elsewhere
                    return run_id, True
            except MlflowException:
                pass  # the run was deleted or the store changed: start a new parent
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={"nnsearch.role": "study", **{k: _param_value(v) for k, v in tags.items()}}
        )
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
        self.parent_run_id = run_id
        self._log_environment(run_id)
        return run_id, False

    def _log_environment(self, run_id: str) -> None:
        """System, package versions and the user's git commit: tags plus ``environment.json``."""
        from mlflow.entities import RunTag

        from nnsearch.runtime import environment

        try:
            info = environment.describe()
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in environment.tags(info).items()])
            self.client.log_dict(run_id, info, "environment.json")
        except Exception as err:  # provenance is useful, never essential
            log.warning("could not record the environment on the MLflow parent run: %s", err)

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
        weights: Mapping[int, Any] | None = None,
    ) -> str:
        """Create the trial's child run with everything it produced, close it, then add its artifacts.

        ``weights``: each fold's final ``state_dict`` (``tracking.keep_checkpoints``), logged as ``checkpoints/fold{k}.pt``.

        The run: one ``log_batch`` and the status update (plus one ``log_batch`` of ``trials/*`` on
        the parent run). Its artifacts: one ``log_artifacts`` and one ``log_metric`` (``artifacts_s``),
        in the background thread when there is one.
        """
        run_id = self._log_trial(number=number, state=state, params=params, folds=folds, cv=cv, tags=tags, start_ms=start_ms, objectives=objectives)
        upload = (number, run_id, state, folds, config_yaml, weights)
        if self._artifacts is None:
            self._upload_artifacts(*upload)
        else:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._artifacts.submit(self._upload_artifacts, *upload))
        return run_id

    def flush(self) -> None:
        """Wait until every trial's artifacts are uploaded."""
        for future in self._pending:
            future.result()
        self._pending = []

    def _upload_artifacts(self, number: int, run_id: str, state: str, folds: list[Any], config_yaml: str | None, weights: Mapping[int, Any] | None = None) -> None:
        try:
            with tempfile.TemporaryDirectory(prefix="nnsearch-trial-") as tmp:
                started = time.perf_counter()
                if self._trial_artifacts(Path(tmp), state, folds, config_yaml, weights):
                    seconds = time.perf_counter() - started
                    self.client.log_artifacts(run_id, tmp)
                    self.client.log_metric(run_id, "artifacts_s", seconds)
        except Exception as err:  # the run is recorded already; a figure must never lose it
            log.warning("artifacts of trial %d could not be uploaded: %s", number, err)

    def _trial_artifacts(self, out: Path, state: str, folds: list[Any], config_yaml: str | None, weights: Mapping[int, Any] | None = None) -> list[Path]:
        from nnsearch.tracking.trial_plots import write_trial_artifacts

        files = []
        if weights:
            import torch

            (out / "checkpoints").mkdir()
            for fold, state_dict in sorted(weights.items()):
                torch.save(state_dict, out / "checkpoints" / f"fold{fold}.pt")
                files.append(out / "checkpoints" / f"fold{fold}.pt")
        if config_yaml is not None:
            (out / "config.yaml").write_text(config_yaml)
            files.append(out / "config.yaml")
        plots = self.trial_plots == "all" or (self.trial_plots == "complete" and state == "COMPLETE")
        try:
            files += write_trial_artifacts(folds, out, plots=plots, task=self.task, classes=self.classes, targets=self.targets)
        except Exception as err:  # a figure must never lose the trial's record
            log.warning("plots of a trial failed: %s", err)
        return files

    def _log_trial(
        self,
        *,
        number: int,
        state: str,
        params: Mapping[str, Any],
        folds: list[Any],
        cv: Mapping[str, float],
        tags: Mapping[str, str],
        start_ms: int,
        objectives: Mapping[str, float] | None,
    ) -> str:
        from mlflow.entities import Metric, Param

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
            curves = {key for row in fold.history for key in row}  # a user module's val/acc is a curve already: not also a point at step 0
            metrics += [Metric(f"fold{fold.index}/{k}", float(v), end_ms, 0) for k, v in fold.metrics.items() if k not in curves]
        for key, by_epoch in per_epoch.items():
            metrics += [Metric(key, sum(v) / len(v), end_ms, epoch) for epoch, v in sorted(by_epoch.items())]
        self.client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, _param_value(v)) for k, v in params.items()],
            tags=_tags({"state": state, **tags}),
        )
        if objectives and self.parent_run_id:
            self.client.log_batch(
                self.parent_run_id, metrics=[Metric(f"trials/{k}", float(v), end_ms, number) for k, v in objectives.items()]
            )
        status = {"FAIL": "FAILED", "KILLED": "KILLED"}.get(state, "FINISHED")
        self.client.set_terminated(run_id, status, end_time=end_ms)
        return run_id

    @contextmanager
    def final_run(self, *, trial_number: int | None, params: Mapping[str, Any], metrics: Mapping[str, float]) -> Iterator[str]:
        """The ``final-model`` child run of the parent run, open while the block runs (to log its
        model with :meth:`log_pyfunc`): created with ``params``, ``metrics`` (``test/*``, step 0) and
        tag ``state`` COMPLETE; yields its id; ends FINISHED, or FAILED if the block raises (KILLED
        if it is interrupted).

        ``trial_number``: the chosen trial (tag ``optuna.trial_number``; empty when None).
        """
        from mlflow.entities import Metric, Param

        run_id = self._child_run("final-model", "final", {"optuna.trial_number": "" if trial_number is None else str(trial_number)})
        now = _now_ms()
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, _param_value(v)) for k, v in params.items()],
            tags=_tags({"state": "COMPLETE"}),
        )
        status = "FINISHED"
        try:
            yield run_id
        except Exception:
            status = "FAILED"
            raise
        except BaseException:  # Ctrl-C, a stop signal
            status = "KILLED"
            raise
        finally:
            self.client.set_terminated(run_id, status)

    def log_pyfunc(
        self,
        run_id: str,
        python_model: Any,
        *,
        signature: Any = None,
        input_example: Any = None,
        pip_requirements: Sequence[str] | None = None,
        code_paths: Sequence[str] | None = None,
        registered_model_name: str | None = None,
    ) -> str:
        """Log ``python_model`` (an ``mlflow.pyfunc.PythonModel``) as the model ``model`` of run
        ``run_id`` (e.g. the :meth:`final_run`), registered as ``registered_model_name`` if given;
        tag the run ``model_uri`` (``models:/<model id>``) and return that URI.

        MLflow logs a model only into the active run of its global tracking URI (the run's
        experiment, its logged-model record, the registration), so for this call alone the URI is
        this tracker's and the run is active (:func:`_global_tracking_uri`); both are as they were
        afterwards, and the run stays open (its owner ends it).
        """
        import mlflow
        import mlflow.pyfunc

        with _global_tracking_uri(self.uri):
            try:
                with mlflow.start_run(run_id=run_id):
                    info = mlflow.pyfunc.log_model(
                        name="model",
                        python_model=python_model,
                        signature=signature,
                        input_example=input_example,
                        pip_requirements=list(pip_requirements) if pip_requirements is not None else None,
                        code_paths=list(code_paths) if code_paths is not None else None,
                        registered_model_name=registered_model_name or None,
                    )
            finally:
                active = mlflow.active_run()
                if active is not None and active.info.run_id == run_id:  # start_run raised after activating it
                    mlflow.end_run("FAILED")
        self.client.set_tag(run_id, "model_uri", info.model_uri)  # models:/<id>, or runs:/<run id>/model
        return info.model_uri

    def log_test_plots(self, run_id: str, predictions: Any) -> None:
        """The final model's confusion matrix and ROC/PR curves (or regression plots) on the held-out test rows,
        as ``plots/`` of run ``run_id``: the trials' out-of-fold figures, drawn for the rows no trial saw.
        None with ``tracking.trial_plots=none``; a figure that fails is a warning, the run stands. Drawn on
        the background thread after the trials' figures still queued there (matplotlib draws one figure at
        a time safely, not two at once), and waited for."""
        if self.trial_plots == "none":
            return
        if self._artifacts is not None:
            self._artifacts.submit(self._test_plots, run_id, predictions).result()
        else:
            self._test_plots(run_id, predictions)

    def _test_plots(self, run_id: str, predictions: Any) -> None:
        from nnsearch.fit.result import FoldResult
        from nnsearch.tracking.trial_plots import write_trial_artifacts

        try:
            with tempfile.TemporaryDirectory(prefix="nnsearch-final-") as tmp:
                if write_trial_artifacts([FoldResult(0, predictions=predictions)], Path(tmp), task=self.task, classes=self.classes, targets=self.targets,
                                         rows="held-out test"):
                    self.client.log_artifacts(run_id, tmp)
        except Exception as err:  # noqa: BLE001 - a figure must never lose the final model
            log.warning("plots of the final model could not be logged: %s", err)

    def log_seeds(self, *, trial_number: int, n_seeds: int, summary: Mapping[str, tuple[float, float]], table: Path) -> str | None:
        """The ``seeds-trial-NNNN`` child run of the parent run: ``seeds/{k}`` and ``seeds/{k}_std``
        (mean and standard deviation over seeds), params ``trial`` and ``seeds``, the per-seed
        ``table`` as an artifact. Returns its id; None (nothing logged) without a parent run.
        """
        from mlflow.entities import Metric, Param

        if not self.parent_run_id:
            return None
        run_id = self._child_run(f"seeds-trial-{trial_number:04d}", "seeds")
        now = _now_ms()
        metrics = [Metric(f"seeds/{k}", float(m), now, 0) for k, (m, _) in summary.items()]
        metrics += [Metric(f"seeds/{k}_std", float(s), now, 0) for k, (_, s) in summary.items()]
        self.client.log_batch(run_id, metrics=metrics, params=[Param("trial", str(trial_number)), Param("seeds", str(n_seeds))], tags=_tags({"state": "COMPLETE"}))
        self.client.log_artifact(run_id, str(table))
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def _child_run(self, name: str, role: str, tags: Mapping[str, str] | None = None) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={"mlflow.parentRunId": self.parent_run_id, "nnsearch.role": role, **(tags or {})}
        )
        return run.info.run_id

    def finished_run(self, run_id: str) -> Any:
        """Run ``run_id`` if it exists in this store, FINISHED and not deleted; else None."""
        try:
            run = self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - deleted, or another store
            return None
        return run if run.info.status == "FINISHED" and run.info.lifecycle_stage == "active" else None

    def close_parent(
        self,
        status: str,
        *,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        texts: Mapping[str, str] | None = None,
        artifacts: Path | None = None,
    ) -> None:
        """Record the study's outcome on its parent run and end it (FINISHED, FAILED or KILLED).

        ``artifacts``: a folder uploaded as is, in one call (the report's tables and plots).
        """
        from mlflow.entities import Metric

        self.flush()
        if self.parent_run_id is None:
            return
        now = _now_ms()
        self.client.log_batch(
            self.parent_run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
            tags=_tags(tags or {}),
        )
        for path, text in (texts or {}).items():
            self.client.log_text(self.parent_run_id, scrub(text), path)
        if artifacts is not None and any(artifacts.iterdir()):
            self.client.log_artifacts(self.parent_run_id, str(artifacts))
        self.client.set_terminated(self.parent_run_id, status)

    def run_url(self) -> str:
        return f"experiment '{self.experiment}' (id {self.experiment_id}), parent run {self.parent_run_id}"

    def set_trials_view(self, objective_keys: list[str], directions: list[str], params: list[str]) -> None:
        """Make the experiment open on its trials, best first, objective and parameters in view.

        MLflow 3's UI opens an experiment on its GenAI overview unless the experiment says it is
        for model training (tag ``mlflow.experimentKind``) and the link asks for that workflow.
        Its runs table shows no metric column until one is chosen; a *shared view* (what the UI's
        own Share button writes: an experiment tag ``mlflow.sharedViewState.KEY`` holding the
        table's filter, sort order and columns as JSON) opened through ``viewStateShareKey=KEY``
        shows them on the first screen. :meth:`ui_link` opens that view. ``objective_keys``: the
        trial runs' metric keys of the objectives (``cv/accuracy``, ``n_params``), in order.
        """
        import json

        first = objective_keys[0]
        columns = [f"metrics.`{k}`" for k in objective_keys] + ([f"metrics.`{first}_std`"] if first.startswith("cv/") else [])
        columns += [f"params.`{p}`" for p in params[:MAX_VIEW_PARAMS]] + ["tags.`state`"]
        view = {
            "searchFilter": "tags.`nnsearch.role` = 'trial'",
            "orderByKey": f"metrics.`{first}`",
            "orderByAsc": directions[0] == "minimize",
            "selectedColumns": columns,
        }
        try:
            self.client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")
            self.client.set_experiment_tag(self.experiment_id, SHARED_VIEW_TAG + TRIALS_VIEW, json.dumps(view))
        except Exception as err:  # noqa: BLE001 - a convenience of the UI, never essential
            log.warning("could not set the MLflow experiment's trial view: %s", err)

    def ui_link(self, ui: str = DEFAULT_UI) -> str:
        """The MLflow UI page of this study's trials (see :meth:`set_trials_view`); ``ui`` is the
        server's address: the tracking URI itself for an MLflow server, else where ``mlflow ui`` listens."""
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else ui
        return f"{base}/#/experiments/{self.experiment_id}/runs?viewStateShareKey={TRIALS_VIEW}&workflowType=machine_learning"

