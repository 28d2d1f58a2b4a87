"""scikit-learn's bundled data sets: shipped with the package, so no download is ever needed."""

from __future__ import annotations

import numpy as np

from nnsearch.data.dataset import Dataset, encode_target, infer_task
from nnsearch.errors import NNSearchError

BUNDLED = ("digits", "iris", "wine", "breast_cancer", "diabetes")


def load_bundled(
    name: str,
    *,
    as_image: bool = False,
    as_sequence: bool = False,
    task: str = "auto",
    scaler: str = "standard",
    batch_size: int = 64,
    keep_classes: list | None = None,
) -> Dataset:
    """Load a bundled data set.

    ``as_image`` gives digits as 1x8x8 images for CNNs; ``as_sequence`` gives them as sequences
    of 8 steps (the image rows, top to bottom) of 8 features (the pixels of a row) for recurrent
    and Transformer models. ``keep_classes`` keeps only the rows of those target values (digits
    0-4 to pretrain a model that is fine-tuned on 5-9, see ``studies/digits_transfer.yaml``).
    """
    from sklearn import datasets

    if name not in BUNDLED:
        raise NNSearchError(f"Unknown bundled data set '{name}'; choose one of {', '.join(BUNDLED)}.")
    bunch = getattr(datasets, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float32)
    if keep_classes is not None:
        keep = np.isin(bunch.target, list(keep_classes))
        if len(set(bunch.target[keep].tolist())) < 2:
            raise NNSearchError(f"data.keep_classes={list(keep_classes)} keeps fewer than two of {name}'s target values {sorted(set(bunch.target.tolist()))}.")
        X, bunch.target = X[keep], bunch.target[keep]
    if as_image and as_sequence:
        raise NNSearchError("data.as_image and data.as_sequence exclude each other; set one of them.")
    if as_image or as_sequence:
        if name != "digits":
            option = "as_image" if as_image else "as_sequence"
            raise NNSearchError(f"data.{option} is only available for digits, not '{name}'.")
        X = X.reshape(-1, 1, 8, 8) if as_image else X.reshape(-1, 8, 8)
    kind = infer_task(np.asarray(bunch.target), task)
    y, classes = encode_target(np.asarray(bunch.target), kind)
    if kind.is_classification and hasattr(bunch, "target_names"):
        classes = tuple(str(c) for c in np.asarray(bunch.target_names)[list(classes)])
    return Dataset(
        name=name,
        X=X,
        y=y,
        task=kind,
        classes=classes,
        feature_names=tuple(str(f) for f in getattr(bunch, "feature_names", ())),
        scaler=scaler,
        batch_size=batch_size,
    )


def load_bundled_targets(
    name: str,
    *,
    target: list[str],
    target_name: str = "target",
    features: list[str] | None = None,
    task: str | list[str] = "auto",
    scaler: str = "standard",
    batch_size: int = 64,
) -> Dataset:
    """A bundled data set as a table whose columns (features and its own target, named ``target_name``)
    may be targets of a multi-task study, e.g. diabetes' ``sex`` and disease progression from the other columns."""
    from sklearn import datasets

    from nnsearch.data.files import multitask_from_frame, target_list

    if name not in BUNDLED or name == "digits":
        raise NNSearchError(f"data.name={name!r}: bundled tables are {', '.join(b for b in BUNDLED if b != 'digits')}.")
    loader = getattr(datasets, f"load_{name}")
    frame = (loader(as_frame=True, scaled=False) if name == "diabetes" else loader(as_frame=True)).frame
    frame = frame.rename(columns={"target": target_name})
    targets = target_list(target)
    if targets is None:
        raise NNSearchError(f"data.target must list the target columns of '{name}', e.g. [{frame.columns[0]}, {target_name}]; got {target!r}.")
    return multitask_from_frame(frame, targets, name=name, features=features, task=task, scaler=scaler, batch_size=batch_size)
