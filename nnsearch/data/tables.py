"""The featurizer of a table with string columns or missing values: scikit-learn's ColumnTransformer.

Numeric columns are imputed (``median`` or ``most_frequent``) and scaled (``data.scaler``); string
and boolean columns are imputed with their most frequent value and one-hot encoded. Every fold fits
a clone on its training rows (:func:`nnsearch.cv.splits.prepare_fold`), so imputed values and scaling
statistics never come from validation or test rows.

The one-hot encoder is given its categories: a string column's distinct values in the whole file,
sorted. That list is the column's schema, not a statistic: it gives every fold and the final model
the same input width, so one network shape serves them all; a value a fold never trains on is a
column of zeros in its training rows. A value the final model has never seen is encoded as all
zeros (``handle_unknown="ignore"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnsearch.errors import NNSearchError


def as_float(x: np.ndarray) -> np.ndarray:
    """Numeric columns of the object array as float64 (a module-level function: the featurizer pickles)."""
    return np.asarray(x, dtype=np.float64)


def as_text(x: np.ndarray) -> np.ndarray:
    """String columns as str, missing values as NaN, so categories compare equal whatever dtype a
    final model's input DataFrame has (``True`` and ``"True"``, ``3`` and ``"3"``)."""
    import pandas as pd

    values = np.array(x, dtype=object)
    missing = pd.isna(values)
    values[~missing] = values[~missing].astype(str)
    values[missing] = np.nan
    return values


def encoded_table(
    frame: Any, columns: list, strings: list, *, impute: str, scaler: str, max_categories: int, file_name: str
) -> tuple[np.ndarray, Any, int]:
    """Raw rows (an object array of ``columns``), their unfitted featurizer, and the width it produces."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, StandardScaler

    if isinstance(max_categories, bool) or not isinstance(max_categories, int) or max_categories < 2:
        raise NNSearchError(f"data.max_categories must be an integer of at least 2, got {max_categories!r}.")
    categories = []
    for column in strings:
        values = sorted(frame[column].dropna().astype(str).unique())
        if len(values) > max_categories:
            raise NNSearchError(
                f"String column '{column}' of {file_name} has {len(values)} distinct values, more than data.max_categories={max_categories} "
                "to one-hot encode; leave it out with data.features=[...], raise data.max_categories, or use data=text for free text."
            )
        categories.append(values)
    raw = frame[columns].astype(object).where(frame[columns].notna(), np.nan)
    numeric_idx = [i for i, c in enumerate(columns) if c not in strings]
    string_idx = [i for i, c in enumerate(columns) if c in strings]
    fill = [] if impute == "none" else [("impute", SimpleImputer(strategy=impute))]
    scale = {"standard": [("scale", StandardScaler())], "minmax": [("scale", MinMaxScaler())]}.get(scaler, [])
    parts = []
    if numeric_idx:
        parts.append(("numeric", Pipeline([("float", FunctionTransformer(as_float)), *fill, *scale]), numeric_idx))
    if string_idx:
        fill_strings = [] if impute == "none" else [("impute", SimpleImputer(strategy="most_frequent"))]
        one_hot = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
        parts.append(("strings", Pipeline([("text", FunctionTransformer(as_text)), *fill_strings, ("one_hot", one_hot)]), string_idx))
    featurizer = ColumnTransformer(parts, sparse_threshold=0.0)
    width = len(numeric_idx) + sum(len(c) for c in categories)
    return raw.to_numpy(dtype=object), featurizer, width
