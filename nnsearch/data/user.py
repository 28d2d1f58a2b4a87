"""A user's own data: a map-style torch ``Dataset`` (``data=dataset``) or a k-fold ``LightningDataModule`` (``data=datamodule``).

nnsearch never loads such data into memory. For a Dataset it holds only row numbers and labels:
the held-out test rows and the folds are chosen by the same scikit-learn splitters as for shipped
data (stratified when labels are known), and each fold trains on ``DataLoader``\\ s over
``Subset``\\ s of the user's Dataset. A DataModule makes its folds itself: it is built once per
fold with keyword arguments saying which fold it serves (``fold``, ``n_folds``, ``split_seed``;
names configurable in ``data.fold_args``), the pattern Lightning's maintainers point users to.

The user's objects are built from the config in every process that trains (fold processes,
workers), so what crosses a process boundary is the config, never the data.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from nnsearch.data.dataset import Task, encode_target, infer_task
from nnsearch.config.building import import_failed, instantiate_node
from nnsearch.errors import NNSearchError

log = logging.getLogger("nnsearch")
DATASET, DATAMODULE = "dataset", "datamodule"
FOLD_ARGS = ("fold", "n_folds", "split_seed")


@dataclass(frozen=True)
class UserFold:
    """One fold of user data: row numbers of the user's Dataset (or just the fold's index, for a DataModule)."""

    index: int
    train_rows: np.ndarray | None = None
    val_rows: np.ndarray | None = None
    n_folds: int = 0
    split_seed: int = 0
    target_scale: tuple[float, float] = (0.0, 1.0)  # targets are used as the Dataset gives them


@dataclass(frozen=True)
class UserData:
    """What nnsearch knows of a user's data set: its config, the rows it holds and their labels.

    ``y`` holds one label per row (class indices, or floats for regression) where labels are
    known; it stratifies folds as for shipped data. ``task`` is None when nothing says what the
    labels are (a DataModule without ``data.task``): the user's module is then scored only by what
    it logs.
    """

    name: str
    kind: str
    source: dict  # the data config as plain values: rebuilt in each process
    task: Task | None
    rows: np.ndarray
    y: np.ndarray
    classes: tuple = ()
    input_shape: tuple = ()
    scaler: str = "none"
    extra: dict = field(default_factory=dict)

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task is Task.MULTICLASS else 1

    def describe(self) -> str:
        if self.kind == DATAMODULE:
            return f"{self.name}: LightningDataModule {self.source[DATAMODULE]['_target_']}, folds made by the module"
        kind = "unlabelled" if self.task is None else self.task.value + (f", {len(self.classes)} classes" if self.task.is_classification else "")
        return f"{self.name}: {len(self.rows)} samples of Dataset {self.source[DATASET]['_target_']}, {kind}"

    def fingerprint(self) -> tuple[np.ndarray, np.ndarray]:
        """Arrays whose digest identifies the data of a study (with the data config, which the study's identity holds)."""
        return self.rows.reshape(-1, 1), self.y

    def take(self, positions: np.ndarray) -> UserData:
        """The rows at ``positions`` (a development or test split)."""
        return replace(self, rows=self.rows[positions], y=self.y[positions], extra={**self.extra, "rows": self.rows[positions]})

    def fold(self, index: int, train_idx: np.ndarray | None, val_idx: np.ndarray | None, n_folds: int) -> UserFold:
        seed = int(self.source.get("split_seed") or 0)
        if self.kind == DATAMODULE:
            return UserFold(index, n_folds=n_folds, split_seed=seed)
        return UserFold(index, self.rows[train_idx], self.rows[val_idx], n_folds, seed)

    # -- building the user's objects (in whichever process trains) ------------------------------

    def dataset(self) -> torch.utils.data.Dataset:
        return _cached(self.source[DATASET], lambda: instantiate_node("data.dataset", self.source[DATASET]))

    def datamodule(self, fold: UserFold, *, setup: bool = True) -> Any:
        """A fresh DataModule for ``fold``, told which fold it serves, after its ``setup('fit')``."""
        names = self.source.get("fold_args") or {}
        args = {names.get(k, k): v for k, v in {"fold": fold.index, "n_folds": fold.n_folds, "split_seed": fold.split_seed}.items()}
        module = instantiate_node("data.datamodule", self.source[DATAMODULE], **args)
        if setup:
            module.setup("fit")
        return module

    def prepare(self, n_folds: int) -> None:
        """Once per study, before any fold: a DataModule's ``prepare_data`` (downloads, caches)."""
        if self.kind == DATAMODULE:
            self.datamodule(self.fold(0, None, None, n_folds), setup=False).prepare_data()

    def loaders(self, fold: UserFold, *, seed: int, pin_memory: bool = False) -> tuple[Any, Any]:
        """(train, validation) loaders of ``fold``; the training order is seeded by ``seed``."""
        if self.kind == DATAMODULE:
            module = self.datamodule(fold)
            return module.train_dataloader(), module.val_dataloader()
        from torch.utils.data import DataLoader, Subset

        workers = int(self.source.get("num_workers") or 0)
        collate = instantiate_node("data.collate_fn", self.source["collate_fn"]) if self.source.get("collate_fn") else None
        common = dict(batch_size=int(self.source.get("batch_size") or 64), num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
                      persistent_workers=workers > 0)
        dataset = self.dataset()
        train = DataLoader(Subset(dataset, fold.train_rows.tolist()), shuffle=True, generator=torch.Generator().manual_seed(seed), **common)
        val = DataLoader(Subset(dataset, fold.val_rows.tolist()), shuffle=False, **common)
        return train, val


_BUILT: dict[str, Any] = {}


def _cached(node: dict, make: Any) -> Any:
    """One instance per process of each configured Dataset: trials and folds share it."""
    key = json.dumps(node, sort_keys=True, default=str)
    if key not in _BUILT:
        _BUILT[key] = make()
    return _BUILT[key]


def _plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def load_dataset(**settings: Any) -> UserData:
    """``data=dataset``: check the user's Dataset (items are ``(tensor, label)``) and read its labels.

    Labels come from ``data.targets`` (a list), else the Dataset's ``targets`` attribute (as
    torchvision's folders have), else each item's second element: that last way reads every item
    once, at start.
    """
    source = {k: (_plain(v) if OmegaConf.is_config(v) else v) for k, v in settings.items()}
    data = UserData(name=str(source.get("name") or DATASET), kind=DATASET, source=source, task=None, rows=np.zeros(0, dtype=np.int64), y=np.zeros(0))
    dataset = data.dataset()
    try:
        n = len(dataset)
    except TypeError:
        raise NNSearchError(f"data.dataset {source[DATASET]['_target_']} has no len(): nnsearch needs a map-style Dataset.") from None
    if n < 2:
        raise NNSearchError(f"data.dataset {source[DATASET]['_target_']} has {n} items; at least 2 are needed.")
    first = dataset[0]
    if not (isinstance(first, (tuple, list)) and len(first) >= 2 and torch.is_tensor(first[0])):
        shown = type(first).__name__ if not isinstance(first, (tuple, list)) else f"({', '.join(type(v).__name__ for v in first)})"
        raise NNSearchError(f"data.dataset {source[DATASET]['_target_']}: item 0 is {shown}, not (tensor, label).")
    labels = _labels(source, dataset, n)
    task = infer_task(labels, str(source.get("task") or "auto"))
    y, classes = encode_target(labels, task)
    return replace(data, task=task, rows=np.arange(n), y=y, classes=classes, input_shape=tuple(first[0].shape))


def _labels(source: dict, dataset: Any, n: int) -> np.ndarray:
    given = source.get("targets")
    if given is None:
        given = getattr(dataset, "targets", None)
    if given is None:
        given = [dataset[i][1] for i in range(n)]
    labels = np.asarray([v.item() if torch.is_tensor(v) else v for v in given])
    if len(labels) != n:
        raise NNSearchError(f"data.targets has {len(labels)} labels for the {n} items of data.dataset.")
    return labels


def load_datamodule(**settings: Any) -> UserData:
    """``data=datamodule``: check the user's DataModule imports and takes the fold arguments (nothing is built yet)."""
    from hydra.utils import get_class

    source = {k: (_plain(v) if OmegaConf.is_config(v) else v) for k, v in settings.items()}
    node = source.get(DATAMODULE) or {}
    target = node.get("_target_")
    if not target or target == "???":
        raise NNSearchError("data.datamodule._target_ is not set: name your LightningDataModule, e.g. data.datamodule._target_=mylab.data.KFoldData.")
    try:
        cls = get_class(target)
    except Exception as err:  # noqa: BLE001 - Hydra wraps the import error in its own
        raise import_failed("data.datamodule._target_", target, err) from None
    names = source.get("fold_args") or {}
    wanted = [names.get(k, k) for k in FOLD_ARGS]
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [w for w in wanted if w not in params and not takes_any]
    if missing:
        raise NNSearchError(
            f"data.datamodule {target} does not take the fold arguments {', '.join(missing)}: nnsearch builds it once per fold with "
            f"{', '.join(wanted)} (rename them with data.fold_args, e.g. data.fold_args.fold=k)."
        )
    task = Task(source["task"]) if source.get("task") not in (None, "auto") else None
    return UserData(name=str(source.get("name") or DATAMODULE), kind=DATAMODULE, source=source, task=task, rows=np.zeros(0, dtype=np.int64), y=np.zeros(0))
