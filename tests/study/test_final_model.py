"""The final model takes ordinary input: a DataFrame as pandas reads a CSV (float64 or int
columns, in any order) for tabular data, a float64 array for images; a missing column is a clear
error. The model is logged and loaded back through MLflow, as a user would."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest


def _logged_model(tmp_path, dev):
    """Log a final model of ``dev`` (an untrained network is enough) and load it with mlflow.pyfunc."""
    import mlflow
    import mlflow.pyfunc
    import torch

    from nnsearch.cv import fit_scaler
    from nnsearch.study.final_fit import FinalFit
    from nnsearch.study.final_model import log_final_model
    from nnsearch.tracking.runs import Tracker

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(dev.input_shape)), dev.n_outputs))
    fit = FinalFit(SimpleNamespace(net=net), fit_scaler("standard", dev.X), {}, 1, 0, len(dev.y), 0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "final")
    tracker.open_parent("final", None, {}, {})
    run_id = log_final_model(tracker, fit, dev, trial=None, params={})
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    finally:
        mlflow.set_tracking_uri(previous)


def test_tabular_model_takes_a_dataframe_by_column_name(tmp_path):
    from mlflow.exceptions import MlflowException
    from sklearn.datasets import load_digits

    from nnsearch.data.bundled import load_bundled

    dev = load_bundled("digits")
    model = _logged_model(tmp_path, dev)
    names = model.metadata.get_input_schema().input_names()
    assert names == list(dev.feature_names) and names[:2] == ["pixel_0_0", "pixel_0_1"]

    raw = load_digits(as_frame=True).data.iloc[:50]  # float64 columns, as pandas reads a CSV
    assert set(raw.dtypes) == {np.dtype("float64")}
    predicted = model.predict(raw)
    assert list(predicted.columns[:2]) == ["prediction", "proba_0"] and len(predicted) == 50
    assert predicted["prediction"].nunique() > 1  # the columns reach the network, not a constant

    shuffled = raw[list(np.random.default_rng(0).permutation(raw.columns))]
    assert list(shuffled.columns) != list(raw.columns)
    pd.testing.assert_frame_equal(model.predict(shuffled), predicted)

    as_ints = raw.astype(np.int64)  # integer pixel values, as a CSV of whole numbers reads
    pd.testing.assert_frame_equal(model.predict(as_ints), predicted)

    with pytest.raises(MlflowException, match="pixel_3_4"):
        model.predict(raw.drop(columns=["pixel_3_4"]))
    with pytest.raises(MlflowException, match="pixel_0_0.*not numeric"):
        model.predict(raw.assign(pixel_0_0="dark"))


def test_image_model_takes_a_float64_array(tmp_path):
    from sklearn.datasets import load_digits

    from nnsearch.data.bundled import load_bundled

    dev = load_bundled("digits", as_image=True)
    model = _logged_model(tmp_path, dev)
    images = load_digits().images[:20, None]  # float64, (20, 1, 8, 8)
    assert images.dtype == np.float64
    predicted = model.predict(images)
    assert len(predicted) == 20 and predicted.filter(like="proba_").sum(axis=1).round(6).eq(1.0).all()
    assert model.metadata.get_input_schema().is_tensor_spec()


def test_unnamed_or_duplicate_features_get_made_up_names():
    from nnsearch.data.dataset import Dataset, Task
    from nnsearch.study.final_model import feature_columns

    X = np.zeros((4, 12), dtype=np.float32)
    y = np.array([0, 1, 0, 1])
    unnamed = Dataset("t", X, y, Task.BINARY, classes=(0, 1))
    assert feature_columns(unnamed) == tuple(f"feature_{i:02d}" for i in range(12))
    duplicate = Dataset("t", X, y, Task.BINARY, classes=(0, 1), feature_names=("a",) * 12)
    assert feature_columns(duplicate)[0] == "feature_00"
    named = Dataset("t", X, y, Task.BINARY, classes=(0, 1), feature_names=tuple("abcdefghijkl"))
    assert feature_columns(named) == tuple("abcdefghijkl")
    assert feature_columns(Dataset("t", X.reshape(4, 3, 4), y, Task.BINARY, classes=(0, 1))) is None
