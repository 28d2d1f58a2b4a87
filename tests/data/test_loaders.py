"""Data sources: bundled sets, CSV with task inference and label encoding, .npz archives."""

from __future__ import annotations

import numpy as np
import pytest

from nnsearch.data.bundled import load_bundled
from nnsearch.data.dataset import Task
from nnsearch.data.files import load_csv, load_npz
from nnsearch.errors import NNSearchError


@pytest.mark.parametrize(
    ("name", "task", "shape", "n_classes"),
    [("digits", Task.MULTICLASS, (64,), 10), ("iris", Task.MULTICLASS, (4,), 3), ("wine", Task.MULTICLASS, (13,), 3),
     ("breast_cancer", Task.BINARY, (30,), 2), ("diabetes", Task.REGRESSION, (10,), 0)],
)
def test_bundled_data_sets(name, task, shape, n_classes):
    data = load_bundled(name)
    assert data.task is task and data.input_shape == shape and len(data.classes) == n_classes


def test_digits_as_images():
    assert load_bundled("digits", as_image=True).input_shape == (1, 8, 8)


def test_csv_string_target_is_encoded_and_task_inferred(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text("length,width,kind\n1.0,2.0,rose\n1.5,2.5,tulip\n0.5,0.7,rose\n2.0,1.0,lily\n")
    data = load_csv(str(path), "kind")
    assert data.task is Task.MULTICLASS
    assert data.classes == ("lily", "rose", "tulip")
    assert data.y.tolist() == [1, 2, 1, 0]
    assert data.feature_names == ("length", "width")


def test_csv_float_target_is_regression_unless_overridden(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(30)))
    assert load_csv(str(path), "y").task is Task.REGRESSION
    path.write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(30)))
    assert load_csv(str(path), "y").task is Task.BINARY
    assert load_csv(str(path), "y", task="regression").task is Task.REGRESSION


def test_npz_with_images(tmp_path):
    np.savez(tmp_path / "imgs.npz", X=np.random.rand(20, 1, 4, 4), y=np.arange(20) % 2)
    data = load_npz(str(tmp_path / "imgs.npz"))
    assert data.input_shape == (1, 4, 4) and data.task is Task.BINARY


def test_unknown_task_is_rejected(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,y\n1,0\n2,1\n")
    with pytest.raises(NNSearchError, match="data.task must be one of auto, binary, multiclass, regression"):
        load_csv(str(path), "y", task="ranking")
