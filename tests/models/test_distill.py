"""Knowledge distillation: the mixed loss, the teacher's outputs for a fold's training rows only, and the checks
that refuse a teacher of other classes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import compose
from nnsearch.errors import NNSearchError


def test_with_alpha_zero_the_loss_is_the_cross_entropy_on_the_labels():
    from nnsearch.models.distill import distillation_loss

    torch.manual_seed(0)
    student, teacher, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.equal(distillation_loss(student, teacher, y, temperature=4.0, alpha=0.0), F.cross_entropy(student, y))
    # alpha = 1 against a teacher that agrees with the student: nothing to learn
    assert distillation_loss(student, student.clone(), y, temperature=3.0, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)
    # the teacher's term is T^2 KL(teacher_T || student_T)
    soft = F.kl_div(F.log_softmax(student / 2, -1), F.softmax(teacher / 2, -1), reduction="batchmean") * 4
    mixed = distillation_loss(student, teacher, y, temperature=2.0, alpha=0.25)
    assert mixed.item() == pytest.approx((0.25 * soft + 0.75 * F.cross_entropy(student, y)).item(), rel=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["distill.teacher=models:/t/1", "distill.temperature=0"], "distill.temperature must be a positive number"),
        (["distill.teacher=models:/t/1", "distill.alpha=1.5"], "distill.alpha must be a number from 0"),
    ],
)
def test_bad_distill_settings_are_refused(overrides, message):
    from nnsearch.models.distill import DistillSettings

    with pytest.raises(NNSearchError, match=message):
        DistillSettings.from_config(compose(overrides).distill)
    assert not DistillSettings.from_config(compose([]).distill).enabled


class _Recorder(torch.nn.Module):
    """A teacher network that remembers every row it was asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.seen = torch.nn.Linear(64, 10), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.layer(x)


def _teacher(classes=tuple(str(i) for i in range(10))):
    from nnsearch.models.distill import Teacher

    torch.manual_seed(0)
    return Teacher(SimpleNamespace(net=_Recorder(), scaler=None, task="multiclass", classes=classes, input_shape=(64,)), "models:/teacher/1")


@pytest.mark.slow
def test_the_teacher_sees_a_folds_training_rows_once_and_never_its_validation_rows(monkeypatch):
    from nnsearch.config.building import build
    from nnsearch.cv import FoldCache, make_splits
    from nnsearch.fit import FitSettings
    from nnsearch.fit.fold import FoldResult, fit_one_fold
    from nnsearch.models import distill

    teacher = _teacher()
    monkeypatch.setattr(distill, "load_teacher", lambda uri, tracking_uri: teacher)
    cfg = compose(["distill.teacher=models:/teacher/1", "distill.alpha=1.0", "trainer.max_epochs=1", "model.hidden_dim=16"])
    data = build("data", cfg.data)
    fold = FoldCache(data, make_splits(data, folds=3, seed=0)).get(0)

    for _ in range(2):  # two trials on the same fold: the teacher runs once
        module, result = fit_one_fold(cfg, data, fold, FitSettings.from_config(cfg.trainer), seed=0, epoch_metrics=[], trial=None, monitor=None,
                                      result=FoldResult(0), on_epoch=None)
        assert result.metrics["accuracy"] > 0
        # the distillation loss is not the task's loss that val/loss is: the curves name it apart
        assert {"train/distill_loss", "val/loss"} <= set(result.history[0]) and "train/loss" not in result.history[0]
    seen = torch.cat(teacher.net.seen)
    assert seen.shape[0] == len(fold.train_idx)
    assert torch.equal(seen, torch.as_tensor(data.X[fold.train_idx]))  # raw rows, no scaler in this teacher
    val_rows = {tuple(r) for r in np.asarray(data.X[fold.val_idx]).tolist()}
    train_rows = {tuple(r) for r in np.asarray(data.X[fold.train_idx]).tolist()}
    assert not any(tuple(r) in val_rows - train_rows for r in seen.numpy().tolist())
    assert module.distill == (4.0, 1.0)


def test_a_training_batch_carries_the_teachers_logits_of_its_own_rows():
    from nnsearch.data.batches import TensorBatches

    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    logits = torch.arange(10.0).unsqueeze(1) * 100
    for xb, yb, tb in TensorBatches(x, y, 4, generator=torch.Generator().manual_seed(0), extra=logits):
        assert torch.equal(tb, xb * 100) and torch.equal(yb.float(), xb.squeeze(1))


def test_a_teacher_of_other_classes_or_shape_is_refused():
    from nnsearch.config.building import build

    data = build("data", compose(["data.keep_classes=[5,6,7,8,9]"]).data)
    with pytest.raises(NNSearchError, match=r"predicts classes \['0', '1'.*but the data's classes are \['5', '6', '7', '8', '9'\]"):
        _teacher().check(data)
    with pytest.raises(NNSearchError, match="gives 10 outputs per sample, but the data has 5 classes"):
        _teacher(classes=()).check(data)
    regression = build("data", compose(["data=diabetes"]).data)
    with pytest.raises(NNSearchError, match="needs a classification task"):
        _teacher().check(regression)
