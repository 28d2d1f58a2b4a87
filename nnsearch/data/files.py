"""User data from local files: a table (.csv, .tsv, .parquet) with a target column, or an .npz archive with X and y.

The header checks here run before the heavy imports (see :func:`check_csv_columns`), so this module
imports only numpy at its top; pandas and scikit-learn load when a file is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnsearch.data.dataset import Dataset, encode_target, infer_task
from nnsearch.errors import NNSearchError


TABLE_FORMATS = {".csv": ",", ".tsv": "\t", ".parquet": None}  # extension -> CSV delimiter (None: Parquet)
IMPUTE = ("none", "median", "most_frequent")


def _existing(path: str | None, kind: str) -> Path:
    if not path or path == "???":
        raise NNSearchError(f"data={kind} needs a file: add data.path=FILE to the command.")
    p = Path(path).expanduser()
    if p.is_dir():
        what = "one table file (.csv, .tsv or .parquet)" if kind in ("csv", "text") else f"one .{kind} file"
        raise NNSearchError(f"data.path={path} is a directory; data={kind} reads {what}: give its path.")
    if not p.is_file():
        raise NNSearchError(f"Data file not found: {p.resolve()}")
    return p


def _table_file(path: str | None, kind: str) -> Path:
    """An existing file whose extension says how to read it (.csv, .tsv, .parquet)."""
    file = _existing(path, kind)
    if file.suffix.lower() not in TABLE_FORMATS:
        raise NNSearchError(
            f"data={kind} reads .csv, .tsv and .parquet files (by extension); {file.name} has "
            f"{repr(file.suffix) if file.suffix else 'no extension'}: rename it or convert it."
        )
    return file


def read_header(file: Path) -> list[str] | None:
    """The column names of a table file, or None where the header alone does not settle them
    (undecodable, duplicate names that pandas would rename): :func:`read_table` then reports."""
    import csv

    delimiter = TABLE_FORMATS[file.suffix.lower()]
    try:
        if delimiter is None:
            import pyarrow.parquet as pq

            header = list(pq.read_schema(file).names)
        else:
            with open(file, newline="", encoding="utf-8-sig") as f:
                header = next(csv.reader(f, delimiter=delimiter), None)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError):
        return None
    if not header or len(set(header)) != len(header):
        return None
    return header


def read_table(path: str | None, kind: str) -> tuple[Any, Path]:
    """A pandas DataFrame of a .csv, .tsv or .parquet file, and the file's path."""
    import pandas as pd

    file = _table_file(path, kind)
    delimiter = TABLE_FORMATS[file.suffix.lower()]
    try:
        frame = pd.read_parquet(file) if delimiter is None else pd.read_csv(file, sep=delimiter)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as err:
        raise NNSearchError(f"Cannot read {file}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return frame, file


def check_csv_columns(
    path: str | None, target: str | None, *, features: Sequence[str] | None = None, text: str | None = None, kind: str = "csv"
) -> None:
    """The checks of :func:`load_csv` (and :func:`nnsearch.data.text.load_text`, ``kind="text"``) that
    need only the file's header, with their messages.

    Run before torch, Lightning and MLflow are imported (see :func:`nnsearch.study.preflight.check_data_early`),
    so a mistyped ``data.target`` or ``data.text`` is reported in about a second instead of after
    the imports and reading the whole file. Only what the header settles is judged: a header that
    pandas would rename (duplicate names) or that does not decode is left to the loaders.
    """
    file = _table_file(path, kind)
    header = read_header(file)
    if header is None:
        return
    if kind == "text":
        check_text_column(text, header, file.name)
    targets = target_list(target)
    if targets is not None:  # multi-task
        unknown = [t for t in targets if t not in header]
        if unknown:
            raise NNSearchError(f"Target column(s) {', '.join(unknown)} of data.target={targets} not in {file.name}; its columns are: {', '.join(header)}.")
        target = targets[0]
    _check_target(target, header, file.name, kind)
    missing = [c for c in (features or []) if c not in header]
    if missing:
        raise NNSearchError(f"Feature columns not in {file.name}: {', '.join(map(str, missing))}.")


def check_text_column(text: str | None, columns: Sequence[str], file_name: str) -> None:
    """``data.text`` names a column of the file."""
    listed = ", ".join(map(str, columns))
    if text is None or text == "???":
        raise NNSearchError(f"data=text needs a text column: add data.text=COLUMN (columns: {listed}).")
    if text not in columns:
        raise NNSearchError(f"Text column '{text}' is not in {file_name}; its columns are: {listed}.")


def _check_target(target: str | None, columns: Sequence[str], file_name: str, kind: str) -> None:
    listed = ", ".join(map(str, columns))
    if target is None or target == "???":
        raise NNSearchError(f"data={kind} needs a target column: add data.target=COLUMN (columns: {listed}).")
    if target not in columns:
        raise NNSearchError(f"Target column '{target}' is not in {file_name}; its columns are: {listed}.")


def target_values(frame: Any, target: str | None, file_name: str, kind: str = "csv") -> np.ndarray:
    """The target column as numbers, or as strings (object array) when it is not numeric."""
    _check_target(target, list(frame.columns), file_name, kind)
    raw_target = frame[target]
    if raw_target.isna().any():
        raise NNSearchError(f"Target column '{target}' has {int(raw_target.isna().sum())} missing values; drop those rows first.")
    y_raw = raw_target.to_numpy()
    if y_raw.dtype.kind not in "biuf":
        y_raw = raw_target.astype(str).to_numpy(dtype=object)
    return y_raw


def feature_columns(frame: Any, targets: Sequence[str], features: Sequence[str] | None, shown: str) -> list:
    """The model's input columns: ``features`` when given, else every column of ``frame`` but the ``targets``.
    ``shown`` names the table in messages.

    Raises:
        NNSearchError: a feature column that is not in the table, or no column left besides the targets.
    """
    columns = list(features) if features else [c for c in frame.columns if c not in targets]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise NNSearchError(f"Feature columns not in {shown}: {', '.join(map(str, missing))}.")
    if not columns:
        besides = f"the target '{targets[0]}'" if len(targets) == 1 else f"the targets {list(targets)}"
        raise NNSearchError(f"{shown} has no feature columns besides {besides}.")
    return columns


def load_csv(
    path: str,
    target: str,
    *,
    features: Sequence[str] | None = None,
    task: str = "auto",
    scaler: str = "standard",
    batch_size: int = 64,
    impute: str = "none",
    max_categories: int = 50,
) -> Dataset:
    """Read a .csv, .tsv or .parquet table; the target may be text (it is encoded as classes).

    Numeric feature columns are used as they are. String (and boolean) feature columns are one-hot
    encoded, and ``impute`` (``median`` or ``most_frequent``) fills missing values: both through a
    featurizer fitted on each fold's training rows (:func:`nnsearch.data.tables.table_featurizer`).
    A table of numeric columns without missing values stays a plain float array, as before.
    """
    import pandas as pd

    if impute not in IMPUTE:
        raise NNSearchError(f"data.impute must be one of {', '.join(IMPUTE)}; got {impute!r}.")
    frame, file = read_table(path, "csv")
    targets = target_list(target)
    if targets is not None:  # several target columns: one model with a head per target
        if impute != "none":
            raise NNSearchError("data.impute works with one target column; a multi-task table must have no missing values.")
        return multitask_from_frame(frame, targets, name=file.stem, source=file.name, features=features, task=task, scaler=scaler, batch_size=batch_size)
    y_raw = target_values(frame, target, file.name)
    columns = feature_columns(frame, [target], features, file.name)
    strings = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    gaps = {c: int(frame[c].isna().sum()) for c in columns if frame[c].isna().any()}
    if gaps and impute == "none":
        column, count = next(iter(gaps.items()))
        more = f" (and {len(gaps) - 1} more column(s))" if len(gaps) > 1 else ""
        raise NNSearchError(
            f"Feature column '{column}' of {file.name} has {count} missing value(s){more}; set data.impute=median or "
            "data.impute=most_frequent (fitted on training folds), or drop those rows."
        )
    kind = infer_task(y_raw, task)
    y, classes = encode_target(y_raw, kind)
    common = dict(name=file.stem, y=y, task=kind, classes=classes, scaler=scaler, batch_size=batch_size)
    if not strings and not gaps:
        return Dataset(X=frame[columns].to_numpy(dtype=np.float32), feature_names=tuple(map(str, columns)), **common)
    from nnsearch.data.tables import encoded_table

    X, featurizer, width = encoded_table(frame, columns, strings, impute=impute, scaler=scaler, max_categories=max_categories, file_name=file.name)
    return Dataset(
        X=X, feature_names=tuple(map(str, columns)), featurizer=featurizer, sample_shape=(width,), raw_columns=tuple(map(str, columns)), **common
    )


def target_list(target: Any) -> list[str] | None:
    """The target columns when ``data.target`` is a list (a multi-task study), else None.

    A list must name at least two distinct columns; a one-column list is that column's single-task study.
    """
    from omegaconf import OmegaConf

    if not (OmegaConf.is_list(target) or isinstance(target, (list, tuple))):
        return None
    names = [str(t) for t in target]
    if len(names) < 2:
        raise NNSearchError(f"data.target={names} lists {len(names)} column(s); a multi-task target lists two or more (one column: data.target=NAME).")
    if len(set(names)) != len(names):
        raise NNSearchError(f"data.target={names} lists a column twice.")
    return names


def multitask_from_frame(
    frame: Any,
    targets: Sequence[str],
    *,
    name: str,
    source: str | None = None,
    features: Sequence[str] | None = None,
    task: Any = "auto",
    scaler: str = "standard",
    batch_size: int = 64,
) -> Dataset:
    """A multi-task :class:`Dataset` from a table: one :class:`TargetSpec` per target column, each inferred
    like a single target (``data.task`` auto) or given by ``data.task=[multiclass, regression]``.

    ``y`` is a float32 table, one column per target (class indices in the class columns).
    ``source`` names the table in messages (its file name; default ``name``).
    """
    import pandas as pd
    from omegaconf import OmegaConf

    from nnsearch.data.dataset import TargetSpec, Task

    shown = source or name
    where = ", ".join(map(str, frame.columns))
    unknown = [t for t in targets if t not in frame.columns]
    if unknown:
        raise NNSearchError(f"Target column(s) {', '.join(unknown)} of data.target={list(targets)} not in {shown}; its columns are: {where}.")
    tasks = [str(t) for t in task] if OmegaConf.is_list(task) or isinstance(task, (list, tuple)) else [str(task)] * len(targets)
    if len(tasks) != len(targets):
        raise NNSearchError(f"data.task lists {len(tasks)} tasks for {len(targets)} targets {list(targets)}; give one per target, or auto.")
    columns = feature_columns(frame, targets, features, shown)
    non_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    if non_numeric:
        raise NNSearchError(
            f"Non-numeric feature columns in {shown}: {', '.join(map(str, non_numeric))}; encode them as numbers or leave them out with data.features=[...]."
        )
    specs, values = [], []
    for column, requested in zip(targets, tasks, strict=True):
        raw = frame[column]
        if raw.isna().any():
            raise NNSearchError(f"Target column '{column}' has {int(raw.isna().sum())} missing values; drop those rows first.")
        y_raw = raw.to_numpy() if raw.to_numpy().dtype.kind in "biuf" else raw.astype(str).to_numpy(dtype=object)
        kind = infer_task(y_raw, requested)
        if not kind.is_supervised or kind is Task.MULTITASK:
            raise NNSearchError(f"data.task={requested} for target '{column}': a multi-task target is binary, multiclass or regression.")
        try:
            y, classes = encode_target(y_raw, kind)
        except NNSearchError as err:
            raise NNSearchError(f"Target '{column}': {err}") from None
        specs.append(TargetSpec(str(column), kind, classes))
        values.append(y.astype(np.float32))
    return Dataset(
        name=name,
        X=frame[columns].to_numpy(dtype=np.float32),
        y=np.stack(values, axis=1),
        task=Task.MULTITASK,
        feature_names=tuple(map(str, columns)),
        scaler=scaler,
        batch_size=batch_size,
        targets=tuple(specs),
    )


LAYOUTS = {"any": None, "table": 2, "sequence": 3, "image": 4}
_LAYOUT_SHAPES = {"table": "(N, features)", "sequence": "(N, steps, features)", "image": "(N, channels, height, width)"}


def load_npz(
    path: str, *, task: str = "auto", layout: str = "any", scaler: str = "standard", batch_size: int = 64
) -> Dataset:
    """Read ``X`` (samples first: tabular, images or sequences) and ``y`` from an .npz archive.

    ``layout`` (table, sequence, image) states the shape ``X`` must have, so a file of the wrong
    rank fails on loading with its shape in the message; ``any`` accepts every rank from 2.
    """
    if layout not in LAYOUTS:
        raise NNSearchError(f"Unknown data.layout '{layout}'; choose one of {', '.join(LAYOUTS)}.")
    file = _existing(path, "npz")
    try:
        archive = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise NNSearchError(f"Cannot read {file} as .npz: {err}") from None
    with archive:
        absent = [k for k in ("X", "y") if k not in archive.files]
        if absent:
            raise NNSearchError(f"{file.name} lacks array(s) {', '.join(absent)}; it has: {', '.join(archive.files) or 'none'}.")
        X, y_raw = archive["X"], archive["y"]
    if X.ndim < 2:
        raise NNSearchError(f"X in {file.name} must have samples first and at least 2 dimensions, got shape {X.shape}.")
    rank = LAYOUTS[layout]
    if rank is not None and X.ndim != rank:
        hint = " (add a feature axis: X[..., None])" if layout == "sequence" and X.ndim == 2 else ""
        raise NNSearchError(
            f"X in {file.name} must be shaped {_LAYOUT_SHAPES[layout]} for data.layout={layout}, got shape {X.shape}{hint}."
        )
    if y_raw.ndim != 1:
        raise NNSearchError(f"y in {file.name} must be one label or value per sample, got shape {y_raw.shape}.")
    if X.dtype.kind not in "biuf":
        raise NNSearchError(f"X in {file.name} must be numeric, got dtype {X.dtype}.")
    kind = infer_task(y_raw, task)
    y, classes = encode_target(y_raw, kind)
    return Dataset(
        name=file.stem, X=X.astype(np.float32), y=y, task=kind, classes=classes, scaler=scaler, batch_size=batch_size
    )
