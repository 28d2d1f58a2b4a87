"""data=csv: .csv, .tsv and .parquet by extension; string columns one-hot encoded, missing values imputed
on each fold's training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nnsearch.cv.splits import prepare_fold
from nnsearch.data.files import check_csv_columns, load_csv
from nnsearch.errors import NNSearchError


def _table(tmp_path, frame, name):
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return str(path)


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.parquet"])
def test_tables_are_read_by_extension(tmp_path, name):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.1, 0.2, 0.3], "y": ["x", "z", "x", "z"]})
    data = load_csv(_table(tmp_path, frame, name), "y")
    assert data.X.tolist() == frame[["a", "b"]].to_numpy(dtype=np.float32).tolist()
    assert data.classes == ("x", "z") and data.featurizer is None
    check_csv_columns(str(tmp_path / name), "y", features=["a"])
    with pytest.raises(NNSearchError, match="Target column 'c' is not in"):
        check_csv_columns(str(tmp_path / name), "c")


def test_an_unknown_extension_is_refused(tmp_path):
    (tmp_path / "t.xlsx").write_text("a,y\n1,0\n")
    with pytest.raises(NNSearchError, match=r"data=csv reads .csv, .tsv and .parquet files \(by extension\); t.xlsx has '.xlsx'"):
        load_csv(str(tmp_path / "t.xlsx"), "y")


def test_string_columns_are_one_hot_encoded(tmp_path):
    frame = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "colour": ["red", "blue", "red", "green", "blue", "red"], "y": [0, 1, 0, 1, 0, 1]})
    data = load_csv(_table(tmp_path, frame, "t.csv"), "y", scaler="none")
    assert data.input_shape == (4,)  # size + blue, green, red
    fold = prepare_fold(data, 0, np.arange(4), np.arange(4, 6))
    assert fold.x_train.tolist() == [[1, 0, 0, 1], [2, 1, 0, 0], [3, 0, 0, 1], [4, 0, 1, 0]]
    assert fold.x_val.tolist() == [[5, 1, 0, 0], [6, 0, 0, 1]]


def test_imputer_and_scaler_are_fitted_on_training_rows_only(tmp_path):
    # training rows' median of `a` is 2; with the validation rows it would be 10 or more
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan, 100.0, 200.0, np.nan], "c": ["u", None, "u", "v", "v", "v", None], "y": [0, 1, 0, 1, 0, 1, 0]})
    data = load_csv(_table(tmp_path, frame, "t.csv"), "y", impute="median", scaler="standard")
    train_idx, val_idx = np.arange(4), np.arange(4, 7)
    fold = prepare_fold(data, 0, train_idx, val_idx)
    numeric = fold.featurizer.named_transformers_["numeric"]
    assert numeric.named_steps["impute"].statistics_.tolist() == [2.0]
    assert numeric.named_steps["scale"].mean_.tolist() == pytest.approx([2.0])  # 1, 2, 3 and the imputed 2
    strings = fold.featurizer.named_transformers_["strings"]
    assert strings.named_steps["impute"].statistics_.tolist() == ["u"]  # most frequent in training rows; 'v' in all rows
    assert fold.x_val[2].tolist() == pytest.approx([0.0, 1.0, 0.0])  # row 6: a imputed 2 (scaled 0), c imputed 'u'


def test_missing_values_without_impute_and_unencodable_strings_are_refused(tmp_path):
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [1, 2, 3], "y": [0, 1, 0]})
    path = _table(tmp_path, frame, "t.csv")
    with pytest.raises(NNSearchError, match=r"Feature column 'a' of t.csv has 1 missing value\(s\); set data.impute=median"):
        load_csv(path, "y")
    with pytest.raises(NNSearchError, match="data.impute must be one of none, median, most_frequent; got 'mean'"):
        load_csv(path, "y", impute="mean")
    frame = pd.DataFrame({"note": [f"free text {i}" for i in range(6)], "y": [0, 1] * 3})
    with pytest.raises(NNSearchError, match="String column 'note' of t.csv has 6 distinct values, more than data.max_categories=5"):
        load_csv(_table(tmp_path, frame, "t.csv"), "y", max_categories=5)
