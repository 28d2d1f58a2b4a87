"""End to end: a multi-task study on a CSV with one class column and one numeric column, run as the
README says (``data.target=[kind, value]``), read back with the real Optuna and MLflow clients."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TINY, load_study, mlflow_runs
from optuna.trial import TrialState

STUDY = """# @package _global_
defaults:
  - override /model: mlp
  - override /pruner: none
study:
  metric: [kind/accuracy, value/rmse]
model:
  task_weights: {kind: 1.0, value: 1.0}
search_space:
  model.task_weights.value: {type: float, low: 0.1, high: 10.0, log: true}
  model.hidden_dim: {type: int, low: 8, high: 32}
"""


def _write_csv(tmp_path, n: int = 120) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    kind = np.array(["red", "green", "blue"])[np.argmax(X[:, :3], axis=1)]
    value = 50 + 10 * X[:, 3] - 5 * X[:, 0] + rng.normal(scale=0.5, size=n)
    rows = "".join(f"{a:.4f},{b:.4f},{c:.4f},{d:.4f},{k},{v:.4f}\n" for (a, b, c, d), k, v in zip(X, kind, value, strict=True))
    (tmp_path / "table.csv").write_text("x0,x1,x2,x3,kind,value\n" + rows)


@pytest.mark.slow
def test_a_multitask_study_tunes_both_heads_and_serves_both_targets(run_cli, tmp_path):
    _write_csv(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "two_targets.yaml").write_text(STUDY)
    tiny = [a for a in TINY if not a.startswith("final.")]
    result = run_cli("+study=two_targets", "data=csv", "data.path=table.csv", "data.target=[kind,value]", *tiny)
    assert result.returncode == 0, result.stderr[-3000:]

    study = load_study(tmp_path, "two_targets")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2 and all(len(t.values) == 2 and all(math.isfinite(v) for v in t.values) for t in trials)
    assert study.metric_names == ["kind/accuracy", "value/rmse"]
    assert all(0.1 <= t.params["model.task_weights.value"] <= 10.0 for t in trials)

    client, parents, children = mlflow_runs(tmp_path, "two_targets")
    assert len(parents) == 1 and len(children) == 2
    for child in children:
        metrics = child.data.metrics
        assert {"cv/kind/accuracy", "cv/kind/f1", "cv/value/rmse", "cv/value/r2", "fold0/kind/accuracy", "fold1/value/mae"} <= set(metrics)
        assert 0.0 <= metrics["cv/kind/accuracy"] <= 1.0 and metrics["cv/value/rmse"] > 0
        assert "model.task_weights.value" in child.data.params
        # each target's own figures, and both objectives' curves
        assert {a.path for a in client.list_artifacts(child.info.run_id, "plots/kind")} == {"plots/kind/confusion_matrix.png", "plots/kind/roc_pr.png"}
        assert {a.path for a in client.list_artifacts(child.info.run_id, "plots/value")} == {"plots/value/regression.png"}
        assert {"val/kind/accuracy", "val/value/rmse"} <= set(metrics)

    final = [r for r in client.search_runs([parents[0].info.experiment_id]) if r.data.tags.get("nnsearch.role") == "final"]
    assert len(final) == 1 and {"test/kind/accuracy", "test/value/rmse"} <= set(final[0].data.metrics)
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(final[0].data.tags["model_uri"])
    table = pd.read_csv(tmp_path / "table.csv")
    predicted = model.predict(table.drop(columns=["kind", "value"]).head(10))
    assert list(predicted.columns) == ["kind", "value", "kind_proba_blue", "kind_proba_green", "kind_proba_red"]
    assert set(predicted["kind"]) <= {"red", "green", "blue"} and predicted["value"].dtype == np.float64
    assert np.allclose(predicted[["kind_proba_blue", "kind_proba_green", "kind_proba_red"]].sum(axis=1), 1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("objective", "engine", "direction"),
    [(["study.metric=value/rmse"], "lightning", "MINIMIZE"),
     (["study.metric=weighted", "+study.metric_weights={kind/accuracy: 1.0, value/rmse: -0.01}"], "fast", "MAXIMIZE")],
    ids=["one-target-metric-on-the-trainer", "weighted-sum-on-the-fast-engine"],
)
def test_one_objective_over_the_targets_with_pruning(run_in_process, tmp_path, objective, engine, direction):
    _write_csv(tmp_path)
    result = run_in_process("+study=digits_mlp", "study.name=one_objective", "data=csv", f"data.path={tmp_path / 'table.csv'}",
                            "data.target=[kind,value]", *objective, f"trainer.engine={engine}", "+model.task_weights.kind=0.5",
                            "pruner=median", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", *TINY)
    trials = result.get_trials(states=(TrialState.COMPLETE,))
    assert result.direction.name == direction and len(trials) == 2 and all(math.isfinite(t.value) for t in trials)
    metric = objective[0].split("=")[1]
    _, _, children = mlflow_runs(tmp_path, "one_objective")
    for child in children:
        curves = child.data.metrics
        assert f"fold0/val/{metric}" in curves and f"val/{metric}" in curves and f"cv/{metric}" in curves
    if metric == "weighted":
        cv = children[0].data.metrics
        assert cv["cv/weighted"] == pytest.approx(cv["cv/kind/accuracy"] - 0.01 * cv["cv/value/rmse"], rel=1e-6)
