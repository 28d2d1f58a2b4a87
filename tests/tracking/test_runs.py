"""The tracker's MLflow records: few store calls per trial, artifacts that decode, nothing left RUNNING."""

from __future__ import annotations

import csv
import os
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def tracker(tmp_path):
    from nnsearch.tracking.runs import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    tracker.open_parent("unit", None, {"study.metric": "accuracy"}, {"optuna.study_name": "unit"})
    return tracker


def _folds():
    from nnsearch.fit.predictions import Predictions
    from nnsearch.fit import FoldResult

    rng = np.random.default_rng(1)
    folds = []
    for k in range(2):
        fold = FoldResult(k, [{"train/loss": 1.0 - e / 10, "val/loss": 1.1 - e / 10, "val/accuracy": 0.5 + e / 10} for e in range(4)], {"accuracy": 0.9 - k / 10, "f1": 0.8})
        fold.predictions = Predictions(rng.normal(size=(40, 3)).astype(np.float32), rng.integers(0, 3, 40))
        folds.append(fold)
    return folds


def _log(tracker, state="COMPLETE", **kwargs):
    return tracker.log_trial(
        number=0, state=state, params={"optimizer.lr": 0.01}, folds=_folds(), cv={"cv/accuracy": 0.85, "cv/accuracy_std": 0.05},
        tags={"folds": 2}, start_ms=0, objectives={"accuracy": 0.85}, config_yaml="seed: 0\n", **kwargs
    )


def test_a_trial_is_one_batch_and_one_artifact_upload_and_ends_finished(tracker, monkeypatch):
    calls = []
    for name in ("log_batch", "log_artifacts", "log_artifact", "log_text", "log_metric"):
        original = getattr(tracker.client, name)
        monkeypatch.setattr(tracker.client, name, lambda *a, _o=original, _n=name, **k: (calls.append(_n), _o(*a, **k))[1])
    run_id = _log(tracker)
    # child batch, parent trials/ curve; then the artifacts and the seconds they took
    assert calls == ["log_batch", "log_batch", "log_artifacts", "log_metric"]
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == tracker.parent_run_id
    assert run.data.metrics["artifacts_s"] > 0
    files = {a.path for a in tracker.client.list_artifacts(run_id, "plots")}
    assert files == {"plots/learning_curves.png", "plots/confusion_matrix.png", "plots/roc_pr.png"}
    for path in files:
        with Image.open(tracker.client.download_artifacts(run_id, path)) as img:
            img.load()
    with open(tracker.client.download_artifacts(run_id, "tables/fold_metrics.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["fold"] for r in rows] == ["0", "1", "mean", "std"] and float(rows[2]["accuracy"]) == pytest.approx(0.85)


def test_background_artifacts_arrive_by_flush_and_the_run_is_finished_before(tmp_path):
    from nnsearch.tracking.runs import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit", background=True)
    tracker.open_parent("unit", None, {}, {})
    run_ids = [_log(tracker) for _ in range(3)]
    assert all(tracker.client.get_run(r).info.status == "FINISHED" for r in run_ids)  # recorded at once
    tracker.flush()
    for run_id in run_ids:
        assert {a.path for a in tracker.client.list_artifacts(run_id)} == {"config.yaml", "plots", "tables"}
        assert tracker.client.get_run(run_id).data.metrics["artifacts_s"] > 0


def test_pruned_trials_get_no_figures_by_default_and_every_trial_with_all(tracker, tmp_path):
    from nnsearch.tracking.runs import Tracker

    pruned = _log(tracker, state="PRUNED")
    assert {a.path for a in tracker.client.list_artifacts(pruned)} == {"config.yaml", "tables"}
    everything = Tracker(tracker.uri, "unit", trial_plots="all")
    everything.parent_run_id = tracker.parent_run_id
    assert "plots" in {a.path for a in everything.client.list_artifacts(_log(everything, state="PRUNED"))}


def test_bad_trial_plots_setting_is_a_one_line_error(tmp_path):
    from nnsearch.errors import NNSearchError
    from nnsearch.tracking.runs import Tracker

    with pytest.raises(NNSearchError, match="tracking.trial_plots must be one of all, complete, none"):
        Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit", trial_plots="sometimes")


def test_the_parent_run_records_the_environment_and_closes_with_its_report(tracker, tmp_path):
    parent = tracker.client.get_run(tracker.parent_run_id)
    assert parent.data.tags["env.torch"].startswith("2.") and parent.data.tags["env.python"].count(".") == 2
    assert "environment.json" in {a.path for a in tracker.client.list_artifacts(tracker.parent_run_id)}
    report = tmp_path / "report"
    (report / "plots").mkdir(parents=True)
    (report / "leaderboard.csv").write_text("rank,trial\n1,0\n")
    tracker.close_parent("FINISHED", metrics={"best/accuracy": 0.85}, artifacts=report)
    parent = tracker.client.get_run(tracker.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best/accuracy"] == 0.85
    assert "leaderboard.csv" in {a.path for a in tracker.client.list_artifacts(tracker.parent_run_id)}


def test_a_resumed_study_reattaches_to_its_parent_run(tmp_path):
    from nnsearch.tracking.runs import Tracker

    first = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    run_id, resumed = first.open_parent("unit", None, {}, {})
    assert not resumed
    first.close_parent("KILLED")
    again = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    assert again.open_parent("unit", run_id, {}, {}) == (run_id, True)
    assert again.client.get_run(run_id).info.status == "RUNNING"


@pytest.fixture
def no_global_uri(monkeypatch):
    """MLflow's global tracking URI unset (neither pinned nor in the environment), and put back after the test."""
    from mlflow.tracking._tracking_service import utils

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(utils, "_tracking_uri", None)  # what mlflow.set_tracking_uri pins


def _final_fit(dev, test_metrics):
    import torch

    from nnsearch.cv import fit_scaler
    from nnsearch.study.final_fit import FinalFit

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(dev.input_shape)), dev.n_outputs))
    return FinalFit(SimpleNamespace(net=net), fit_scaler("standard", dev.X), test_metrics, 3, 7000, 100, 20)


@pytest.mark.parametrize("caller", ["unset", "environment", "set_tracking_uri"])
def test_logging_the_final_model_leaves_the_global_tracking_uri_as_it_was(tracker, tmp_path, monkeypatch, no_global_uri, caller):
    """The model is logged into the tracker's store; the caller's MLflow URI is untouched: still
    unset (following the working directory and the environment), still the environment's, or
    still the one the caller pinned; and no run is left active."""
    import mlflow

    from nnsearch.data.bundled import load_bundled
    from nnsearch.study.final_model import log_final_model

    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    if caller == "environment":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    elif caller == "set_tracking_uri":
        mlflow.set_tracking_uri(elsewhere)
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), mlflow.tracking.is_tracking_uri_set())

    dev = load_bundled("digits")
    run_id = log_final_model(tracker, _final_fit(dev, {"accuracy": 0.9}), dev, trial=SimpleNamespace(number=3), params={"lr": 0.1})

    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), mlflow.tracking.is_tracking_uri_set()) == before
    assert mlflow.active_run() is None
    if caller != "set_tracking_uri":  # nothing pinned: the URI still follows the environment...
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'later.db'}")
        assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path / 'later.db'}"
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
        monkeypatch.chdir(tmp_path)  # ...and, without it, the working directory's default store
        assert mlflow.get_tracking_uri().startswith(f"sqlite:///{tmp_path}")
    assert not (tmp_path / "elsewhere.db").exists()  # nothing was written to the caller's store
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["model_uri"].startswith("models:/")
    assert [m.source_run_id for m in tracker.client.search_logged_models([tracker.experiment_id])] == [run_id]


def test_the_final_model_run_holds_its_metrics_params_and_tags_and_fails_with_its_block(tracker):
    with tracker.final_run(trial_number=3, params={"optimizer.lr": 0.01, "seed": 7}, metrics={"test/accuracy": 0.9}) as run_id:
        assert tracker.client.get_run(run_id).info.status == "RUNNING"
    run = tracker.client.get_run(run_id)
    assert run.info.run_name == "final-model" and run.info.status == "FINISHED"
    assert run.data.params == {"optimizer.lr": "0.01", "seed": "7"} and run.data.metrics == {"test/accuracy": 0.9}
    assert {k: run.data.tags[k] for k in ("mlflow.parentRunId", "nnsearch.role", "optuna.trial_number", "state")} == {
        "mlflow.parentRunId": tracker.parent_run_id, "nnsearch.role": "final", "optuna.trial_number": "3", "state": "COMPLETE"
    }
    with pytest.raises(RuntimeError), tracker.final_run(trial_number=None, params={}, metrics={}) as failed:
        raise RuntimeError("the model could not be logged")
    run = tracker.client.get_run(failed)
    assert run.info.status == "FAILED" and run.data.tags["optuna.trial_number"] == ""


def test_a_seeds_run_is_a_child_of_the_study_with_its_table(tracker, tmp_path):
    table = tmp_path / "seeds.csv"
    table.write_text("seed,cv/accuracy\n0,0.9\n1,0.8\n")
    run_id = tracker.log_seeds(trial_number=4, n_seeds=2, summary={"cv/accuracy": (0.85, 0.05)}, table=table)
    run = tracker.client.get_run(run_id)
    assert run.info.run_name == "seeds-trial-0004" and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == tracker.parent_run_id and run.data.tags["nnsearch.role"] == "seeds"
    assert run.data.tags["state"] == "COMPLETE" and run.data.params == {"trial": "4", "seeds": "2"}
    assert run.data.metrics == {"seeds/cv/accuracy": 0.85, "seeds/cv/accuracy_std": 0.05}
    assert [a.path for a in tracker.client.list_artifacts(run_id)] == ["seeds.csv"]
    tracker.parent_run_id = None
    assert tracker.log_seeds(trial_number=4, n_seeds=2, summary={}, table=table) is None
