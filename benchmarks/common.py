"""What the hand-written baselines share with nnsearch, so that all variants do the same work.

Same data (scikit-learn digits, scaled per fold on training rows), same stratified 5-fold splits,
same search space (read from ``studies/NAME.yaml``, suggested in the same order with the same
distributions, so a seeded ``RandomSampler`` draws the same parameters in every variant), same
networks (nnsearch's plain ``nn.Module``s, which hold no framework code), same seeds
(``(seed + trial) * 1000 + fold``) and the same Adam optimizer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
STUDIES = {"mlp": "digits_mlp", "cnn": "digits_cnn"}
STUDY_NAME = "bench"


@dataclass
class FoldData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@dataclass
class Setup:
    """One study's fixed parts: its folds, search space and the defaults trial parameters override."""

    kind: str
    folds: list[FoldData]
    space: dict[str, Any]
    model: dict[str, Any]
    optimizer: dict[str, Any]
    batch_size: int
    max_epochs: int

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The study's parameters, suggested as nnsearch's SearchSpace suggests them."""
        values = {}
        for path, d in self.space.items():
            if d["type"] == "categorical":
                values[path] = trial.suggest_categorical(path, list(d["choices"]))
            elif d["type"] == "int":
                values[path] = trial.suggest_int(path, d["low"], d["high"], step=d.get("step") or 1, log=d.get("log", False))
            else:
                values[path] = trial.suggest_float(path, d["low"], d["high"], step=d.get("step"), log=d.get("log", False))
        return values

    def network(self, params: dict[str, Any]) -> torch.nn.Module:
        kwargs = {**self.model, **{k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("model.")}}
        if self.kind == "cnn":
            from nnsearch.models.cnn import CNN

            return CNN((1, 8, 8), 10, **kwargs)
        from nnsearch.models.mlp import MLP

        return MLP((64,), 10, **kwargs)

    def adam(self, net: torch.nn.Module, params: dict[str, Any]) -> torch.optim.Optimizer:
        opt = {**self.optimizer, **{k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("optimizer.")}}
        return torch.optim.Adam(net.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])

    def batch(self, params: dict[str, Any]) -> int:
        return int(params.get("data.batch_size", self.batch_size))


def _plain(path: Path) -> dict[str, Any]:
    node = OmegaConf.to_container(OmegaConf.load(path))
    return {k: v for k, v in node.items() if not k.startswith("_")}


def load_setup(kind: str, *, folds: int = 5, seed: int = 0) -> Setup:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    study = OmegaConf.to_container(OmegaConf.load(REPO / "studies" / f"{STUDIES[kind]}.yaml"))
    digits = load_digits()
    X = np.asarray(digits.data, dtype=np.float32)
    y = np.asarray(digits.target, dtype=np.int64)
    prepared = []
    for train_idx, val_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        scaler = StandardScaler().fit(X[train_idx])
        shape = (-1, 1, 8, 8) if kind == "cnn" else (-1, 64)
        tx = lambda idx: torch.as_tensor(scaler.transform(X[idx]).astype(np.float32).reshape(shape))  # noqa: E731
        prepared.append(FoldData(tx(train_idx), torch.as_tensor(y[train_idx]), tx(val_idx), torch.as_tensor(y[val_idx])))
    return Setup(
        kind=kind,
        folds=prepared,
        space=study["search_space"],
        model=_plain(REPO / "conf" / "model" / f"{kind}.yaml"),
        optimizer=_plain(REPO / "conf" / "optimizer" / "adam.yaml"),
        batch_size=64,
        max_epochs=int(study["trainer"]["max_epochs"]),
    )


def journal_study(workdir: Path, seed: int):
    """A study on a journal file (as nnsearch's default), random sampler, no pruning: same trials everywhere."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(workdir / "optuna.journal")))
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=optuna.pruners.NopPruner(),
    )


def write_result(workdir: Path, **values: Any) -> None:
    """Facts only the child process knows (e.g. time spent inside training steps)."""
    (workdir / "child.json").write_text(json.dumps({"finished_at": time.time(), **values}))
