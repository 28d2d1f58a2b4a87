"""Every option of every config group in ``conf/`` composes and builds into the object it names.

The table is read from ``conf/`` itself, so a new option is tested the day it is added; an option that
needs a value the user supplies (a file path, a class of their own) gets it from ``NEEDS``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from conftest import CONF_DIR, compose

GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir())
OPTIONS = [(group, option.stem) for group in GROUPS for option in sorted((Path(CONF_DIR) / group).glob("*.yaml"))]
ROWS = 60


class TinyImages(torch.utils.data.Dataset):
    """A user's map-style Dataset, for ``data=dataset``."""

    def __len__(self) -> int:
        return ROWS

    def __getitem__(self, i: int):
        return torch.full((1, 4, 4), float(i % 3)), i % 3


class TinyKFold:
    """A user's k-fold DataModule, for ``data=datamodule`` (only its constructor is checked here)."""

    def __init__(self, fold: int, n_folds: int, split_seed: int) -> None:
        self.fold = fold


class TinyModule(torch.nn.Module):
    """A user's plain network, for ``model=net``."""

    def __init__(self, n_outputs: int) -> None:
        super().__init__()
        self.head = torch.nn.LazyLinear(n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1))


class TinyLightning(L.LightningModule):
    """A user's LightningModule, for ``model=lightning``; ``net`` is a nested ``_target_`` node."""

    def __init__(self, net: torch.nn.Module, lr: float = 0.01, optimizer=None) -> None:
        super().__init__()
        self.net, self.lr, self.optimizer_factory = net, lr, optimizer


def NEEDS(tmp_path: Path) -> dict[tuple[str, str], list[str]]:  # noqa: N802 - a table
    from nnsearch.data.example_images import write_shapes

    table = tmp_path / "table.csv"
    table.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(ROWS)))
    arrays, sequences = tmp_path / "arrays.npz", tmp_path / "sequences.npz"
    np.savez(arrays, X=np.random.default_rng(0).normal(size=(ROWS, 5)).astype(np.float32), y=np.arange(ROWS) % 2)
    np.savez(sequences, X=np.random.default_rng(0).normal(size=(ROWS, 6, 2)).astype(np.float32), y=np.arange(ROWS) % 2)
    texts = tmp_path / "texts.tsv"
    texts.write_text("note\tlabel\n" + "".join(f"word{i % 5} and more\t{'xy'[i % 2]}\n" for i in range(ROWS)))
    return {
        ("data", "csv"): [f"data.path={table}", "data.target=label"],
        ("data", "text"): [f"data.path={texts}", "data.text=note", "data.target=label"],
        ("data", "npz"): [f"data.path={arrays}"],
        ("data", "npz_sequence"): [f"data.path={sequences}"],
        ("data", "dataset"): ["data.dataset._target_=test_every_option.TinyImages"],
        ("data", "datamodule"): ["data.datamodule._target_=test_every_option.TinyKFold"],
        ("data", "image_folder"): [f"data.path={write_shapes(tmp_path / 'images', per_class=ROWS // 3, size=8)}"],
        ("model", "lightning"): ["model.module._target_=test_every_option.TinyLightning", "+model.module.net._target_=test_every_option.TinyModule",
                                 "+model.module.net.n_outputs=3", "+model.module.optimizer._target_=torch.optim.SGD",
                                 "+model.module.optimizer._partial_=true", "+model.module.optimizer.lr=0.1"],
        ("pruner", "threshold"): ["pruner.lower=0.5"],  # Optuna needs a bound; without one the study stops before it starts
        ("model", "net"): ["model.net._target_=test_every_option.TinyModule"],
    }


# the data each model family learns from (shape of one sample, outputs)
MODEL_DATA = {"cnn": ((1, 8, 8), 10), "lstm": ((8, 8), 10), "gru": ((8, 8), 10), "rnn": ((8, 8), 10), "transformer": ((8, 8), 10)}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_of_every_group_builds(group, option, tmp_path, monkeypatch):
    from nnsearch.config.building import build, build_network, build_pruner, build_sampler, optional_partial
    from nnsearch.fit.fold import configured_callbacks
    from nnsearch.fit.settings import FitSettings
    from nnsearch.models.user import build_user_module, is_user_module

    monkeypatch.chdir(tmp_path)
    cfg = compose([f"{group}={option}", *NEEDS(tmp_path).get((group, option), [])])
    node = cfg[group]
    if group == "data":
        data = build("data", node)
        assert data.describe()
        if getattr(data, "kind", None) != "datamodule":
            assert len(data.y) >= ROWS // 2 and data.task is not None
    elif group == "model":
        if is_user_module(node):
            module = build_user_module(node)
            assert isinstance(module.net, TinyModule) and module.lr == 0.01  # the nested node is built too
            optimizer = module.optimizer_factory([torch.nn.Parameter(torch.zeros(1))])  # _partial_: a factory
            assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.1
            return
        shape, outputs = MODEL_DATA.get(option, ((64,), 10))
        net = build_network(cfg, shape, outputs)
        if option != "gan":  # a GAN's forward generates from noise; its modules are checked by training (tests/models)
            assert len(net.eval()(torch.zeros(2, *shape))) == 2
    elif group == "optimizer":
        optimizer = optional_partial("optimizer", node)([torch.nn.Parameter(torch.zeros(2))])
        assert isinstance(optimizer, torch.optim.Optimizer)
    elif group == "scheduler":
        make = optional_partial("scheduler", node)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        assert (make is None) == (option == "none")
        if make is not None:
            assert hasattr(make(optimizer), "step")
    elif group == "sampler":
        import optuna

        assert isinstance(build_sampler(cfg, {"x": [1, 2]}), optuna.samplers.BaseSampler)
    elif group == "pruner":
        import optuna

        assert isinstance(build_pruner(cfg), optuna.pruners.BasePruner)
    elif group == "trainer":
        assert FitSettings.from_config(node).max_epochs >= 1
    elif group == "callbacks":
        import lightning as L

        callbacks = configured_callbacks(cfg)
        assert all(isinstance(c, L.Callback) for c in callbacks) and len(callbacks) == len(node)
    elif group == "cv":
        from nnsearch.config.building import build as build_data
        from nnsearch.cv.splits import make_splits

        data = build_data("data", compose(["data=iris"]).data)
        splits = make_splits(data, folds=int(node.folds), seed=int(node.seed), shuffle=bool(node.shuffle), stratified=bool(node.stratified))
        assert len(splits) == node.folds
    else:
        pytest.fail(f"conf/{group} has no row in this table: say how its options are built")
