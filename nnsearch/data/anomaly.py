"""Anomaly detection sets made from a labelled bundled set: some classes are normal, a few rows of
the others are the anomalies (label 1).

The anomalies are a fixed, seeded sample, so every study on the same settings sees the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnsearch.data.bundled import load_bundled
from nnsearch.data.dataset import Dataset, Task
from nnsearch.errors import NNSearchError


def load_anomaly(
    name: str = "digits",
    *,
    normal_classes: Sequence[int | str] = (0,),
    contamination: float = 0.1,
    seed: int = 0,
    scaler: str = "standard",
    batch_size: int = 64,
) -> Dataset:
    """Rows of ``normal_classes`` (label 0) plus anomalies from the other classes (label 1).

    Args:
        name: a bundled classification set (digits, iris, wine, breast_cancer).
        normal_classes: class labels (as the set names them) that count as normal.
        contamination: share of anomalies in the result, in (0, 0.5].
    """
    if not 0 < contamination <= 0.5:
        raise NNSearchError(f"data.contamination must be in (0, 0.5], got {contamination}.")
    base = load_bundled(name, task="multiclass")
    labels = [str(c) for c in base.classes]
    wanted = [str(c) for c in normal_classes]
    unknown = [c for c in wanted if c not in labels]
    if unknown or not wanted:
        raise NNSearchError(f"data.normal_classes {list(normal_classes)} must name classes of '{name}': {', '.join(labels)}.")
    if len(set(wanted)) == len(labels):
        raise NNSearchError(f"data.normal_classes lists every class of '{name}'; leave at least one out as anomalies.")
    normal = np.isin(np.array(labels)[base.y], wanted)
    normal_idx, other_idx = np.flatnonzero(normal), np.flatnonzero(~normal)
    n_anomalies = min(len(other_idx), max(2, round(len(normal_idx) * contamination / (1 - contamination))))
    rng = np.random.default_rng(seed)
    picked = np.sort(np.concatenate([normal_idx, rng.choice(other_idx, n_anomalies, replace=False)]))
    return Dataset(
        name=f"{name}_anomaly",
        X=base.X[picked],
        y=(~normal[picked]).astype(np.int64),
        task=Task.ANOMALY,
        classes=("normal", "anomaly"),
        feature_names=base.feature_names,
        scaler=scaler,
        batch_size=batch_size,
    )
