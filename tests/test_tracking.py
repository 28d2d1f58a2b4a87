"""The tracker's MLflow records: few store calls per trial, artifacts that decode, nothing left RUNNING."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def tracker(tmp_path):
    from nnsearch.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    tracker.open_parent("unit", None, {"study.metric": "accuracy"}, {"optuna.study_name": "unit"})
    return tracker


def _folds():
    from nnsearch.predictions import Predictions
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
    from nnsearch.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit", background=True)
    tracker.open_parent("unit", None, {}, {})
    run_ids = [_log(tracker) for _ in range(3)]
    assert all(tracker.client.get_run(r).info.status == "FINISHED" for r in run_ids)  # recorded at once
    tracker.flush()
    for run_id in run_ids:
        assert {a.path for a in tracker.client.list_artifacts(run_id)} == {"config.yaml", "plots", "tables"}
        assert tracker.client.get_run(run_id).data.metrics["artifacts_s"] > 0


def test_pruned_trials_get_no_figures_by_default_and_every_trial_with_all(tracker, tmp_path):
    from nnsearch.tracking import Tracker

    pruned = _log(tracker, state="PRUNED")
    assert {a.path for a in tracker.client.list_artifacts(pruned)} == {"config.yaml", "tables"}
    everything = Tracker(tracker.uri, "unit", trial_plots="all")
    everything.parent_run_id = tracker.parent_run_id
    assert "plots" in {a.path for a in everything.client.list_artifacts(_log(everything, state="PRUNED"))}


def test_bad_trial_plots_setting_is_a_one_line_error(tmp_path):
    from nnsearch.errors import NNSearchError
    from nnsearch.tracking import Tracker

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
    from nnsearch.tracking import Tracker

    first = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    run_id, resumed = first.open_parent("unit", None, {}, {})
    assert not resumed
    first.close_parent("KILLED")
    again = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    assert again.open_parent("unit", run_id, {}, {}) == (run_id, True)
    assert again.client.get_run(run_id).info.status == "RUNNING"
