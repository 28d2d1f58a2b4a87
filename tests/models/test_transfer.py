"""Transfer learning: a fold's network starts from an earlier model's weights (matched by name and shape), and
frozen layers keep them through a fit."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import compose
from nnsearch.errors import NNSearchError


def _digits_fold(overrides: list[str]):
    from nnsearch.config.building import build
    from nnsearch.cv import FoldCache, make_splits

    cfg = compose(overrides)
    data = build("data", cfg.data)
    return cfg, data, FoldCache(data, make_splits(data, folds=2, seed=0)).get(0)


def _saved_mlp(tmp_path, *, hidden_dim: int = 32, n_layers: int = 2, n_outputs: int = 10, batch_norm: bool = False, lightning: bool = True):
    """A checkpoint of an MLP on digits: a Lightning ``.ckpt`` (``state_dict`` with the module's ``net.`` prefix) or a plain state dict."""
    from nnsearch.models.mlp import MLP

    torch.manual_seed(1)
    net = MLP((64,), n_outputs, hidden_dim=hidden_dim, n_layers=n_layers, batch_norm=batch_norm)
    path = tmp_path / ("source.ckpt" if lightning else "source.pt")
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3} if lightning else net.state_dict(), path)
    return net, path


def test_layers_matching_by_name_and_shape_are_loaded_and_a_new_head_is_reported_once(tmp_path, caplog):
    from nnsearch.models.build import build_module
    from nnsearch.models import transfer

    source, path = _saved_mlp(tmp_path, n_outputs=5)  # a head of another width than digits' 10 classes
    cfg, data, fold = _digits_fold(["model.hidden_dim=32", f"model.init_from={path}"])
    transfer._REPORTED.clear()
    with caplog.at_level(logging.WARNING, logger="nnsearch"):
        first, second = build_module(cfg, data, fold, []), build_module(cfg, data, fold, [])
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("net.5")}
    for module in (first, second):
        loaded = module.net.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in body.items())
        assert loaded["net.5.weight"].shape == (10, 32) and not torch.equal(loaded["net.5.weight"][:5], source.state_dict()["net.5.weight"])
    reports = [r.getMessage() for r in caplog.records if "init_from" in r.getMessage()]
    assert len(reports) == 1  # once, though two folds were built
    assert "4 of 6 tensors loaded" in reports[0] and "net.5.weight [10, 32] (source [5, 32])" in reports[0]


def test_a_plain_state_dict_loads_too(tmp_path):
    from nnsearch.models.build import build_module

    source, path = _saved_mlp(tmp_path, lightning=False)
    cfg, data, fold = _digits_fold(["model.hidden_dim=32", f"model.init_from={path}"])
    loaded = build_module(cfg, data, fold, []).net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_a_source_with_no_matching_layer_is_one_clear_error(tmp_path):
    from nnsearch.models.build import build_module

    _, path = _saved_mlp(tmp_path, hidden_dim=16, n_layers=1, n_outputs=5)
    cfg, data, fold = _digits_fold(["model.hidden_dim=32", f"model.init_from={path}"])
    with pytest.raises(NNSearchError, match=r"no layer of the model matches the source by name and shape \(the model has net.1.weight \[32, 64\]"):
        build_module(cfg, data, fold, [])
    cfg, data, fold = _digits_fold([f"model.init_from={tmp_path / 'missing.ckpt'}"])
    with pytest.raises(NNSearchError, match="neither an MLflow model URI .* nor an existing checkpoint file"):
        build_module(cfg, data, fold, [])


def test_blocks_join_a_normalization_layer_to_its_layer():
    from nnsearch.models.cnn import CNN
    from nnsearch.models.mlp import MLP
    from nnsearch.models.transfer import blocks

    mlp = blocks(MLP((64,), 10, n_layers=2, batch_norm=True))
    assert [[type(m).__name__ for m in b] for b in mlp] == [["Linear", "BatchNorm1d"], ["Linear", "BatchNorm1d"], ["Linear"]]
    assert len(blocks(CNN((1, 8, 8), 10, n_blocks=2, hidden_dim=16))) == 4  # two conv blocks, the dense layer, the head


@pytest.mark.parametrize(
    ("freeze", "message"),
    [
        (3, r"model.freeze=3 must be a count of leading blocks from 0 to 2"),
        ("['net.9']", r"no layer is named 'net.9'; the model's layers with weights are net.1, net.3, net.5"),
    ],
)
def test_bad_freeze_settings_name_what_exists(tmp_path, freeze, message):
    from nnsearch.models.build import build_module

    _, path = _saved_mlp(tmp_path)
    cfg, data, fold = _digits_fold(["model.hidden_dim=32", f"model.init_from={path}", f"model.freeze={freeze}"])
    with pytest.raises(NNSearchError, match=message):
        build_module(cfg, data, fold, [])
    cfg, data, fold = _digits_fold(["model.freeze=1"])
    with pytest.raises(NNSearchError, match="model.freeze=1 needs model.init_from"):
        build_module(cfg, data, fold, [])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fast", "lightning"])
def test_frozen_blocks_keep_the_source_weights_and_statistics_through_a_fit(tmp_path, engine):
    from nnsearch.fit import FitSettings
    from nnsearch.fit.fold import FoldResult, fit_one_fold

    source, path = _saved_mlp(tmp_path, batch_norm=True)
    cfg, data, fold = _digits_fold(["model.hidden_dim=32", "model.batch_norm=true", f"model.init_from={path}", "model.freeze=1",
                                    "trainer.max_epochs=2", f"trainer.engine={engine}", "optimizer.weight_decay=0.01"])
    module, _ = fit_one_fold(cfg, data, fold, FitSettings.from_config(cfg.trainer), seed=0, epoch_metrics=[], trial=None, monitor=None,
                             result=FoldResult(0), on_epoch=None)
    before, after = source.state_dict(), module.net.state_dict()
    frozen = [k for k in before if k.startswith(("net.1.", "net.2."))]  # the first Linear and its BatchNorm (running stats included)
    assert "net.2.running_mean" in frozen
    assert all(torch.equal(after[k], before[k]) for k in frozen)
    assert not torch.equal(after["net.4.weight"], before["net.4.weight"])  # the second block trains
    assert not torch.equal(after["net.7.weight"], before["net.7.weight"])  # and so does the head
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) not in trained for name, p in module.net.named_parameters() if name.startswith(("net.1.", "net.2.")))
