"""nnsearch's metrics agree with scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from nnsearch.data.dataset import Task
from nnsearch.models.metrics import compute_metrics, metric_names, resolve_objective


def test_multiclass_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = np.tile(np.arange(5), 40)
    logits = rng.normal(size=(len(y), 5)) + np.eye(5)[y] * 1.2
    got = compute_metrics(Task.MULTICLASS, torch.tensor(logits), torch.tensor(y), n_classes=5)
    prob = torch.softmax(torch.tensor(logits), -1).numpy()
    pred = prob.argmax(1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"), abs=1e-6)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"), abs=1e-6)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, prob, multi_class="ovr", average="macro"), abs=1e-5)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, prob), abs=1e-5)


def test_binary_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    logits = rng.normal(size=300) + (2 * y - 1) * 0.8
    got = compute_metrics(Task.BINARY, torch.tensor(logits), torch.tensor(y))
    prob = 1 / (1 + np.exp(-logits))
    pred = (prob >= 0.5).astype(int)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"), abs=1e-6)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"), abs=1e-6)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, prob), abs=1e-6)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, prob), abs=1e-5)


def test_regression_metrics_match_scikit_learn():
    rng = np.random.default_rng(2)
    y = rng.normal(100, 30, 200)
    pred = y + rng.normal(0, 10, 200)
    got = compute_metrics(Task.REGRESSION, torch.tensor(pred), torch.tensor(y))
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, pred), rel=1e-5)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), rel=1e-5)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-5)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), rel=1e-5)


def test_a_subset_of_metrics_can_be_requested():
    y = torch.tensor([0, 1, 2, 1])
    logits = torch.eye(3)[y] * 3
    assert compute_metrics(Task.MULTICLASS, logits, y, 3, names=["accuracy"]) == {"accuracy": 1.0}


def test_objective_direction_follows_the_metric():
    assert resolve_objective("log_loss", None, Task.BINARY) == "minimize"
    assert resolve_objective("r2", None, Task.REGRESSION) == "maximize"
    assert resolve_objective("accuracy", "minimize", Task.MULTICLASS) == "minimize"
    assert metric_names(Task.REGRESSION) == ["mse", "rmse", "mae", "r2"]
