"""The multi-task module: one head per target on a shared trunk, a task_weights-weighted loss, and
metrics named ``<target>/<metric>`` computed like single-task ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from conftest import compose
from omegaconf import OmegaConf

from nnsearch.cv.splits import make_splits, prepare_fold
from nnsearch.data.dataset import Dataset, TargetSpec, Task
from nnsearch.errors import NNSearchError
from nnsearch.models.build import build_module
from nnsearch.models.metrics import compute_metrics, target_metric_names
from nnsearch.models.multitask import MultiTaskModule
from nnsearch.study.objectives import resolve_objectives

TARGETS = (TargetSpec("kind", Task.MULTICLASS, ("a", "b", "c")), TargetSpec("flag", Task.BINARY, (0, 1)), TargetSpec("value", Task.REGRESSION))


def _data(n: int = 60) -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = np.stack([np.arange(n) % 3, np.arange(n) % 2, 100 + 10 * X[:, 0]], axis=1).astype(np.float32)
    return Dataset("toy", X, y, Task.MULTITASK, targets=TARGETS)


def _module(*overrides: str) -> tuple[MultiTaskModule, object]:
    data = _data()
    train, val = make_splits(data, folds=3, seed=0)[0]
    fold = prepare_fold(data, 0, train, val)
    cfg = compose(["model.n_layers=1", "model.hidden_dim=8", "+model.task_weights={kind: 1.0}", *overrides])
    return build_module(cfg, data, fold, []), fold


def test_a_head_per_target_on_the_family_network():
    module, fold = _module()
    assert isinstance(module, MultiTaskModule) and type(module.net).__name__ == "MLP"
    heads = module.heads(module(fold.x_train[:5]))
    assert [tuple(h.shape) for h in heads] == [(5, 3), (5,), (5,)]


def test_a_target_loss_reaches_only_its_own_head():
    """The last Linear's rows are the heads: kind's loss gives no gradient to flag's or value's rows."""
    module, fold = _module()
    module.target_losses(module(fold.x_train), fold.y_train)[0].backward()
    head = module.net.net[-1].weight.grad
    assert head[:3].abs().sum() > 0 and head[3:].abs().sum() == 0


def test_the_loss_is_the_task_weighted_sum_of_the_target_losses():
    module, fold = _module("+model.task_weights.value=2.5", "+model.task_weights.flag=0")
    assert module.weights == (1.0, 0.0, 2.5)
    out, y = module(fold.x_train), fold.y_train
    kind, flag, value = out[:, :3], out[:, 3], out[:, 4]
    expected = F.cross_entropy(kind, y[:, 0].long()) + 0.0 * F.binary_cross_entropy_with_logits(flag, y[:, 1]) + 2.5 * F.mse_loss(value, y[:, 2])
    assert module.loss(out, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_metrics_are_named_per_target_and_match_the_single_task_ones():
    module, fold = _module()
    metrics = module.evaluate(fold.x_val, fold.y_val_scaled)
    assert list(metrics) == target_metric_names(TARGETS)
    assert "kind/accuracy" in metrics and "flag/roc_auc" in metrics and "value/rmse" in metrics
    out = module.heads(module(fold.x_val))
    mean, std = fold.target_scale[2]
    assert metrics["value/rmse"] == pytest.approx(compute_metrics(Task.REGRESSION, out[2] * std + mean, fold.y_val[:, 2], 0, ["rmse"])["rmse"], rel=1e-5)
    assert metrics["kind/f1"] == pytest.approx(compute_metrics(Task.MULTICLASS, out[0], fold.y_val[:, 0].long(), 3, ["f1"])["f1"])


def test_epoch_metrics_are_computed_for_the_targets_asked():
    module, fold = _module()
    row = module._metrics(module(fold.x_val), fold.y_val_scaled, ["value/r2"])
    assert list(row) == ["value/r2"]


@pytest.mark.parametrize(
    ("override", "message"),
    [("+model.task_weights.colour=1", "model.task_weights names colour, which is not a target; the targets are kind, flag, value"),
     ("+model.task_weights.value=-1", "model.task_weights.value must be a finite number >= 0, got -1"),
     ("model.task_weights=3", "model.task_weights maps each target to its loss weight")],
    ids=["unknown-target", "negative", "not-a-mapping"],
)
def test_bad_task_weights_are_refused(override, message):
    with pytest.raises(NNSearchError, match=message):
        _module(override)


def test_task_weights_on_single_target_data_are_refused():
    from nnsearch.data.bundled import load_bundled

    data = load_bundled("iris")
    train, val = make_splits(data, folds=3, seed=0)[0]
    cfg = compose(["+model.task_weights={a: 1.0}"])
    with pytest.raises(NNSearchError, match="model.task_weights weighs the targets of multi-task data"):
        build_module(cfg, data, prepare_fold(data, 0, train, val), [])


def test_objectives_name_a_target_metric_or_a_list_of_them():
    study = lambda metric: OmegaConf.create({"metric": metric, "direction": None})
    objectives = resolve_objectives(study(["kind/accuracy", "value/rmse"]), Task.MULTITASK, targets=TARGETS)
    assert objectives.metrics == ["kind/accuracy", "value/rmse"] and objectives.directions == ["maximize", "minimize"]
    with pytest.raises(NNSearchError, match=r"Unknown objective metric 'value/rsme' .* Did you mean value/rmse\?"):
        resolve_objectives(study("value/rsme"), Task.MULTITASK, targets=TARGETS)
    with pytest.raises(NNSearchError, match="Unknown objective metric 'accuracy' for targets"):
        resolve_objectives(study("accuracy"), Task.MULTITASK, targets=TARGETS)


def test_a_weighted_objective_sums_the_weighted_target_metrics():
    module, fold = _module("study.metric=weighted", "+study.metric_weights={kind/accuracy: 1.0, value/rmse: -0.01}")
    metrics = module.evaluate(fold.x_val, fold.y_val_scaled)
    assert metrics["weighted"] == pytest.approx(metrics["kind/accuracy"] - 0.01 * metrics["value/rmse"])
    row = module._metrics(module(fold.x_val), fold.y_val_scaled, ["weighted"])
    assert row["weighted"] == pytest.approx(metrics["weighted"], rel=1e-6)


def test_a_weighted_objective_needs_weights_of_target_metrics():
    study = lambda weights, direction=None: OmegaConf.create({"metric": "weighted", "direction": direction, "metric_weights": weights})
    assert resolve_objectives(study({"kind/f1": 1.0, "value/r2": 0.5}), Task.MULTITASK, targets=TARGETS).directions == ["maximize"]
    assert resolve_objectives(study({"value/rmse": 1.0}, "minimize"), Task.MULTITASK, targets=TARGETS).directions == ["minimize"]
    with pytest.raises(NNSearchError, match="study.metric=weighted needs study.metric_weights"):
        resolve_objectives(study(None), Task.MULTITASK, targets=TARGETS)
    with pytest.raises(NNSearchError, match="study.metric_weights names kind/auc, which is no target metric"):
        resolve_objectives(study({"kind/auc": 1.0}), Task.MULTITASK, targets=TARGETS)
