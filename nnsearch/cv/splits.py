"""Cross-validation splits and leakage-safe preparation of each fold.

Splits come from scikit-learn (``StratifiedKFold`` for classification, ``KFold`` otherwise) and
depend only on ``cv.seed``, so every trial of a study sees the same folds. Scalers, and the data's
featurizer where it has one (a text tokenizer, a table's imputer and encoder), are fitted on a fold's
training rows alone, and a regression target is standardized with training statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from nnsearch.data.dataset import Dataset
from nnsearch.errors import NNSearchError

if TYPE_CHECKING:
    import torch

    from nnsearch.data.fold import Fold


def make_splits(data: Dataset, *, folds: int, seed: int, shuffle: bool = True, stratified: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic (train, validation) index pairs; checks every class can fill every fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if not isinstance(folds, int) or folds < 2:
        raise NNSearchError(f"cv.folds must be an integer of at least 2, got {folds!r}.")
    if getattr(data, "kind", None) == "datamodule":
        return [(None, None)] * folds  # the user's DataModule makes its own folds
    if folds > len(data.y):
        raise NNSearchError(f"cv.folds={folds} is more than the {len(data.y)} samples of '{data.name}'.")
    data = data.stratification() if getattr(data, "targets", ()) else data  # multi-task: its first class target
    stratify = stratified and data.task is not None and data.task.is_classification
    if stratify:
        counts = np.bincount(data.y, minlength=len(data.classes))
        small = [(data.classes[i], int(c)) for i, c in enumerate(counts) if c < folds]
        if small:
            label, count = min(small, key=lambda lc: lc[1])
            raise NNSearchError(
                f"Class '{label}' of '{data.name}' has {count} sample(s), fewer than cv.folds={folds}: "
                f"lower cv.folds to at most {count} or collect more samples."
            )
        splitter = StratifiedKFold(folds, shuffle=shuffle, random_state=seed if shuffle else None)
    else:
        splitter = KFold(folds, shuffle=shuffle, random_state=seed if shuffle else None)
    return [(tr, va) for tr, va in splitter.split(np.zeros(len(data.y)), data.y)]


def holdout_split(data: Dataset, *, test_size: float, seed: int, stratified: bool = True) -> tuple[Dataset, Dataset | None]:
    """Set aside a test split that no trial sees: (development set for CV, test set or None).

    The test rows are chosen before any fold exists, stratified for classification, and depend
    only on ``seed``; the best configuration is scored on them once, after the search.
    """
    from dataclasses import replace

    from sklearn.model_selection import train_test_split

    if not test_size:
        return data, None
    if not 0.0 < test_size < 1.0:
        raise NNSearchError(f"cv.test_size must be a fraction in (0, 1) or 0 for none, got {test_size!r}.")
    if getattr(data, "kind", None) == "datamodule":
        import logging

        logging.getLogger("nnsearch").info("cv.test_size=%s does not apply to data=datamodule: the DataModule holds its own test data", test_size)
        return data, None
    if getattr(data, "targets", ()):  # multi-task: rows chosen by its first class target, taken from the whole table
        dev, test = holdout_split(data.stratification(), test_size=test_size, seed=seed, stratified=stratified)
        pick_rows = lambda idx: replace(data, X=data.X[idx], y=data.y[idx], extra={**data.extra, "rows": idx})  # noqa: E731
        return pick_rows(dev.extra["rows"]), pick_rows(test.extra["rows"])
    stratify = data.y if stratified and data.task is not None and data.task.is_classification else None
    if stratify is not None:
        counts = np.bincount(data.y, minlength=len(data.classes))
        if counts.min() < 2:
            label = data.classes[int(counts.argmin())]
            raise NNSearchError(
                f"Class '{label}' of '{data.name}' has {int(counts.min())} sample(s): too few to hold out a test split; "
                "set cv.test_size=0 or collect more samples."
            )
    try:
        dev_idx, test_idx = train_test_split(np.arange(len(data.y)), test_size=test_size, random_state=seed, stratify=stratify)
    except ValueError as err:
        raise NNSearchError(f"cv.test_size={test_size} cannot split '{data.name}': {err}") from None
    dev_idx, test_idx = np.sort(dev_idx), np.sort(test_idx)
    if hasattr(data, "take"):  # a user's Dataset: row numbers, not arrays
        return data.take(dev_idx), data.take(test_idx)
    pick = lambda idx: replace(data, X=data.X[idx], y=data.y[idx], extra={**data.extra, "rows": idx})  # noqa: E731
    return pick(dev_idx), pick(test_idx)


def fit_scaler(kind: str, x_train: np.ndarray):
    """A scikit-learn scaler fitted on training rows only, or None for ``none``."""
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    if kind == "none":
        return None
    scaler = StandardScaler() if kind == "standard" else MinMaxScaler()
    return scaler.fit(_as_table(x_train))


def _as_table(x: np.ndarray) -> np.ndarray:
    """2-D view for a scaler: sequences (N, T, F) scale per feature over all steps, others per position."""
    return x.reshape(-1, x.shape[-1]) if x.ndim == 3 else x.reshape(len(x), -1)


def _transform(scaler, x: np.ndarray) -> np.ndarray:
    return x if scaler is None else scaler.transform(_as_table(x)).reshape(x.shape).astype(np.float32)


def fit_featurizer(data: Dataset, rows: np.ndarray):
    """A clone of the data's featurizer fitted on ``rows`` alone (the tokenizer's vocabulary, a
    table's imputed values, scaling and encoding come from them), or None for plain numeric data."""
    from sklearn.base import clone

    if data.featurizer is None:
        return None
    return clone(data.featurizer).fit(data.X[rows], data.y[rows])


def featurized(featurizer, x: np.ndarray) -> np.ndarray:
    """Model input from raw rows: int64 token ids stay integers, everything else becomes float32."""
    out = np.asarray(featurizer.transform(x))
    return out if out.dtype.kind in "iu" else out.astype(np.float32)


def prepare_fold(data: Dataset, index: int, train_idx: np.ndarray, val_idx: np.ndarray, scaler: str | None = None) -> Fold:
    """Scale or featurize inputs (and scale a regression target) with statistics of the training rows only."""
    import torch  # here, not at the top: the study's process splits the data without importing torch

    from nnsearch.data.fold import Fold

    kind = scaler or data.scaler
    x_train, x_val = data.X[train_idx], data.X[val_idx]
    featurizer = fit_featurizer(data, train_idx)
    if featurizer is not None:
        kind = "none"
        x_train, x_val = featurized(featurizer, x_train), featurized(featurizer, x_val)
    fitted = fit_scaler(kind, x_train)
    y_train, y_val = data.y[train_idx], data.y[val_idx]
    scale = (0.0, 1.0)
    if not data.task.is_classification:
        mean, std = float(y_train.mean()), float(y_train.std()) or 1.0
        scale = (mean, std)
    to_y = (lambda a: torch.as_tensor(a)) if data.task.is_classification else (lambda a: torch.as_tensor((a - scale[0]) / scale[1], dtype=torch.float32))
    if getattr(data, "targets", ()):  # multi-task: regression columns standardized one by one, class indices kept
        scale, to_y = target_scaling(data.targets, y_train)
    return Fold(
        index=index,
        train_idx=train_idx,
        val_idx=val_idx,
        x_train=torch.as_tensor(_transform(fitted, x_train)),
        y_train=to_y(y_train),
        x_val=torch.as_tensor(_transform(fitted, x_val)),
        y_val=torch.as_tensor(y_val),
        y_val_scaled=to_y(y_val),
        target_scale=scale,
        featurizer=featurizer,
    )


def target_scaling(targets: tuple, y_train: np.ndarray) -> tuple[tuple[tuple[float, float], ...], Callable[[np.ndarray], torch.Tensor]]:
    """Per target column of a multi-task ``y``: (mean, std) of its training rows for a regression target,
    (0, 1) for a class target; and the function that applies them (a float32 table out)."""
    import torch

    scale = tuple(
        (0.0, 1.0) if t.task.is_classification else (float(y_train[:, i].mean()), float(y_train[:, i].std()) or 1.0)
        for i, t in enumerate(targets)
    )
    mean, std = (np.array(s, dtype=np.float32) for s in zip(*scale, strict=True))
    return scale, lambda a: torch.as_tensor((a - mean) / std, dtype=torch.float32)


class FoldCache:
    """Prepared folds kept across trials: scaling is done once per (scaler, fold), not per trial."""

    def __init__(self, data: Dataset, splits: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.data = data
        self.splits = splits
        self._folds: dict[tuple[str, int], Fold] = {}

    def __len__(self) -> int:
        return len(self.splits)

    def get(self, index: int, scaler: str | None = None) -> Fold:
        key = (scaler or self.data.scaler, index)
        if key not in self._folds:
            train_idx, val_idx = self.splits[index]
            if hasattr(self.data, "fold"):  # a user's Dataset or DataModule: row numbers only, loaded by its DataLoaders
                self._folds[key] = self.data.fold(index, train_idx, val_idx, len(self.splits))
            else:
                self._folds[key] = prepare_fold(self.data, index, train_idx, val_idx, key[0])
        return self._folds[key]


def fold_seed(trial_seed: int, fold: int) -> int:
    """The torch seed of ``fold``'s model in a trial seeded ``trial_seed``: the same wherever the fold trains."""
    return trial_seed * 1000 + fold
