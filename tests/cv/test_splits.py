"""Cross-validation: deterministic stratified splits, scaling fitted on training rows only."""

from __future__ import annotations

import numpy as np
import pytest

from nnsearch.cv import FoldCache, holdout_split, make_splits, prepare_fold
from nnsearch.data.dataset import Dataset, Task
from nnsearch.errors import NNSearchError


def _data(n=60, task=Task.MULTICLASS, **kw):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    if task is Task.REGRESSION:
        return Dataset("toy", X, rng.normal(50, 10, n).astype(np.float32), task, **kw)
    return Dataset("toy", X, np.arange(n) % 3, task, classes=("a", "b", "c"), **kw)


def test_scaler_never_sees_validation_rows():
    data = _data()
    train_idx, val_idx = make_splits(data, folds=3, seed=0)[0]
    data.X[val_idx] += 1e6  # validation rows are wildly off; training statistics must not move
    fold = prepare_fold(data, 0, train_idx, val_idx)
    x_train = fold.x_train.numpy()
    assert np.allclose(x_train.mean(0), 0, atol=1e-5) and np.allclose(x_train.std(0), 1, atol=1e-4)
    expected_val = (data.X[val_idx] - data.X[train_idx].mean(0)) / data.X[train_idx].std(0)
    assert np.allclose(fold.x_val.numpy(), expected_val, rtol=1e-4)


def test_regression_target_is_standardized_with_training_rows_only():
    data = _data(task=Task.REGRESSION)
    train_idx, val_idx = make_splits(data, folds=4, seed=0)[1]
    fold = prepare_fold(data, 1, train_idx, val_idx)
    mean, std = fold.target_scale
    assert mean == pytest.approx(data.y[train_idx].mean(), rel=1e-6)
    assert std == pytest.approx(data.y[train_idx].std(), rel=1e-6)
    assert np.allclose(fold.y_val.numpy(), data.y[val_idx])


def test_splits_are_stratified_deterministic_and_cover_every_row_once():
    data = _data()
    a, b = make_splits(data, folds=5, seed=7), make_splits(data, folds=5, seed=7)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert sorted(np.concatenate([va for _, va in a]).tolist()) == list(range(60))
    for _, val_idx in a:
        assert np.bincount(data.y[val_idx]).tolist() == [4, 4, 4]
    assert not np.array_equal(make_splits(data, folds=5, seed=8)[0][1], a[0][1])


def test_a_class_smaller_than_the_fold_count_is_an_error():
    data = Dataset("toy", np.zeros((12, 2), np.float32), np.array([0] * 10 + [1] * 2), Task.BINARY, classes=("no", "yes"))
    with pytest.raises(NNSearchError, match="Class 'yes' of 'toy' has 2 sample\\(s\\), fewer than cv.folds=3"):
        make_splits(data, folds=3, seed=0)


def test_prepared_folds_are_reused_across_trials():
    data = _data()
    cache = FoldCache(data, make_splits(data, folds=3, seed=0))
    assert cache.get(1) is cache.get(1)
    assert cache.get(1, "minmax") is not cache.get(1)


def test_held_out_test_rows_are_disjoint_from_every_fold():
    from nnsearch.data.bundled import load_bundled

    data = load_bundled("wine")
    dev, test = holdout_split(data, test_size=0.2, seed=3)
    dev_rows, test_rows = dev.extra["rows"], test.extra["rows"]
    assert len(test_rows) == round(0.2 * len(data.y)) or abs(len(test_rows) - 0.2 * len(data.y)) < 1
    assert not set(dev_rows) & set(test_rows) and len(dev_rows) + len(test_rows) == len(data.y)
    for train_idx, val_idx in make_splits(dev, folds=5, seed=3):
        # fold indices address the development set; map them back to rows of the full data set
        assert not set(dev_rows[train_idx]) & set(test_rows)
        assert not set(dev_rows[val_idx]) & set(test_rows)
    assert np.bincount(test.y).tolist() == np.bincount(holdout_split(data, test_size=0.2, seed=3)[1].y).tolist()


def test_no_holdout_when_test_size_is_zero():
    data = _data()
    dev, test = holdout_split(data, test_size=0.0, seed=0)
    assert dev is data and test is None
