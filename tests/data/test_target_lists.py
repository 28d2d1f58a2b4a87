"""Multi-task data: ``data.target=[a, b]`` gives one target spec per column, a 2-D y and folds
stratified on the first class target, each regression column scaled on its training rows alone."""

from __future__ import annotations

import numpy as np
import pytest

from nnsearch.cv.splits import holdout_split, make_splits, prepare_fold
from nnsearch.data.bundled import load_bundled_targets
from nnsearch.data.dataset import Task
from nnsearch.data.files import check_csv_columns, load_csv
from nnsearch.errors import NNSearchError


def _table(tmp_path, n=60):
    rng = np.random.default_rng(0)
    kinds = np.array(["red", "green", "blue"])[np.arange(n) % 3]
    rows = [f"{a:.3f},{b:.3f},{k},{10 + 5 * a:.3f}" for a, b, k in zip(rng.normal(size=n), rng.normal(size=n), kinds, strict=True)]
    path = tmp_path / "two.csv"
    path.write_text("a,b,kind,value\n" + "\n".join(rows) + "\n")
    return path


def test_a_target_list_gives_one_spec_per_column_and_a_2d_y(tmp_path):
    data = load_csv(str(_table(tmp_path)), ["kind", "value"])
    assert data.task is Task.MULTITASK
    assert [(t.name, t.task, t.classes) for t in data.targets] == [
        ("kind", Task.MULTICLASS, ("blue", "green", "red")), ("value", Task.REGRESSION, ())]
    assert data.y.shape == (60, 2) and data.feature_names == ("a", "b")
    assert data.y[:3, 0].tolist() == [2, 1, 0]  # red, green, blue as class indices
    assert data.n_outputs == 3 + 1  # the two heads side by side
    assert "multitask: kind multiclass (3 classes), value regression" in data.describe()


def test_tasks_can_be_given_per_target(tmp_path):
    data = load_csv(str(_table(tmp_path)), ["value", "kind"], task=["regression", "multiclass"])
    assert [t.task for t in data.targets] == [Task.REGRESSION, Task.MULTICLASS]


@pytest.mark.parametrize(
    ("target", "task", "message"),
    [(["kind", "colour"], "auto", r"Target column\(s\) colour of data.target=\['kind', 'colour'\] not in two.csv; its columns are: a, b, kind, value"),
     (["kind"], "auto", "a multi-task target lists two or more"),
     (["kind", "kind"], "auto", "lists a column twice"),
     (["kind", "value"], ["multiclass"], "data.task lists 1 tasks for 2 targets"),
     (["kind", "value"], ["anomaly", "regression"], "a multi-task target is binary, multiclass or regression")],
    ids=["unknown-column", "one-column", "twice", "task-count", "unsupervised-task"],
)
def test_bad_target_lists_are_refused_in_one_line(tmp_path, target, task, message):
    with pytest.raises(NNSearchError, match=message):
        load_csv(str(_table(tmp_path)), target, task=task)


def test_the_header_check_names_an_unknown_target_column(tmp_path):
    with pytest.raises(NNSearchError, match=r"Target column\(s\) colour of data.target"):
        check_csv_columns(str(_table(tmp_path)), ["kind", "colour"])
    check_csv_columns(str(_table(tmp_path)), ["kind", "value"])


def test_folds_and_test_rows_are_stratified_on_the_first_class_target(tmp_path):
    data = load_csv(str(_table(tmp_path)), ["value", "kind"])
    dev, test = holdout_split(data, test_size=0.25, seed=0)
    assert dev.targets == data.targets and dev.y.shape[1] == 2
    assert np.bincount(test.y[:, 1].astype(int)).tolist() == [5, 5, 5]  # 15 rows, 5 of each class
    for _, val in make_splits(dev, folds=3, seed=0):
        assert np.bincount(dev.y[val, 1].astype(int)).tolist() == [5, 5, 5]


def test_regression_columns_are_standardized_on_training_rows_and_class_indices_kept(tmp_path):
    data = load_csv(str(_table(tmp_path)), ["kind", "value"])
    train, val = make_splits(data, folds=3, seed=0)[0]
    fold = prepare_fold(data, 0, train, val)
    assert fold.y_train[:, 0].tolist() == data.y[train, 0].tolist()
    mean, std = fold.target_scale[1]
    assert fold.target_scale[0] == (0.0, 1.0)
    assert mean == pytest.approx(data.y[train, 1].mean(), rel=1e-5) and std == pytest.approx(data.y[train, 1].std(), rel=1e-5)
    assert float(fold.y_train[:, 1].mean()) == pytest.approx(0.0, abs=1e-5)
    assert fold.y_val_scaled[:, 1].numpy() == pytest.approx((data.y[val, 1] - mean) / std, rel=1e-4)


def test_bundled_diabetes_table_has_sex_and_progression_as_targets():
    data = load_bundled_targets("diabetes", target=["sex", "progression"], target_name="progression", task=["binary", "regression"])
    assert [(t.name, t.task) for t in data.targets] == [("sex", Task.BINARY), ("progression", Task.REGRESSION)]
    assert data.input_shape == (9,) and "sex" not in data.feature_names and len(data.y) == 442
