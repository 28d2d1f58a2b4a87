"""Search spaces: config groups as choices and conditional parameters (no training here)."""

from __future__ import annotations

import optuna
import pytest
from conftest import compose
from omegaconf import OmegaConf

from nnsearch.errors import NNSearchError
from nnsearch.study.search_space import SearchSpace

FAMILY_SPACE = {
    "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "model": {"type": "categorical", "choices": ["mlp", "cnn", "lstm", "transformer"]},
    "model.hidden_dim": {"type": "int", "low": 16, "high": 64, "when": {"model": ["mlp", "lstm"]}},
    "model.n_blocks": {"type": "int", "low": 1, "high": 2, "when": {"model": "cnn"}},
    "model.cell": {"type": "categorical", "choices": ["lstm", "gru"], "when": {"model": "lstm"}},
    "model.bidirectional": {"type": "categorical", "choices": [False, True], "when": {"model.cell": "gru"}},
    "model.d_model": {"type": "categorical", "choices": [16, 32], "when": {"model": "transformer"}},
}
OWN = {
    "mlp": {"model.hidden_dim"},
    "cnn": {"model.n_blocks"},
    "lstm": {"model.hidden_dim", "model.cell", "model.bidirectional"},
    "transformer": {"model.d_model"},
}


@pytest.fixture(scope="module")
def cfg():
    return compose(["data=digits_sequence"])


def test_conditional_space_samples_only_the_chosen_familys_parameters(cfg):
    space = SearchSpace.from_config(FAMILY_SPACE, cfg)
    assert [p.path for p in space.parameters][0] == "model"  # group choices are sampled first
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = space.suggest(trial)
        family = values["model"]
        seen.add(family)
        assert set(values) - {"model", "optimizer.lr"} <= OWN[family]
        assert set(trial.params) == set(values)
        if family == "lstm":
            assert ("model.bidirectional" in values) == (values["model.cell"] == "gru")
        elif family in ("mlp", "cnn", "transformer"):
            assert set(values) == {"model", "optimizer.lr"} | OWN[family]
        study.tell(trial, 0.0)
    assert seen == set(OWN)


def test_apply_loads_the_chosen_group_file_and_leaves_the_base_config_alone(cfg):
    trial_cfg = SearchSpace.apply(cfg, {"model.d_model": 32, "model": "transformer", "optimizer": "sgd", "optimizer.momentum": 0.5})
    assert trial_cfg.model._target_ == "nnsearch.models.transformer.TransformerEncoder"
    assert trial_cfg.model.d_model == 32 and trial_cfg.model.n_heads == 4
    assert trial_cfg.optimizer._target_ == "torch.optim.SGD" and trial_cfg.optimizer.momentum == 0.5
    assert cfg.model._target_ == "nnsearch.models.mlp.MLP" and cfg.optimizer._target_ == "torch.optim.Adam"


def test_optimizer_choice_with_conditional_momentum(cfg):
    space = SearchSpace.from_config(
        {
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            "optimizer.momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
        },
        cfg,
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        values = space.suggest(study.ask())
        assert ("optimizer.momentum" in values) == (values["optimizer"] == "sgd")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": {"type": "categorical", "choices": ["mlp", "lstmm"]}}, "no option 'lstmm' in conf/model; choose from .*lstm, mlp"),
        ({"model": {"type": "int", "low": 1, "high": 2}}, "picks a file of conf/model: it must be `type: categorical`"),
        (
            {"model": {"type": "categorical", "choices": ["mlp", "transformer"]}, "model.d_model": {"type": "int", "low": 8, "high": 16}},
            r"search_space.model.d_model: no such value in conf/model/mlp.yaml; add `when: \{model: \[transformer\]\}`",
        ),
        (
            {"model.hidden_dim": {"type": "int", "low": 8, "high": 16, "when": {"model": "mlp"}}},
            "'model' is not a categorical parameter declared above it",
        ),
        (
            {"model": {"type": "categorical", "choices": ["mlp", "cnn"]}, "model.dropout": {"type": "float", "low": 0, "high": 0.5, "when": {"model": "gru"}}},
            "model=gru is not among its choices mlp, cnn",
        ),
        ({"model.n_layers": {"type": "int", "low": 1, "high": 2, "when": "mlp"}}, "must map a categorical parameter to its value"),
        ({"data": {"type": "categorical", "choices": ["digits", "wine"]}}, "search_space.data is a config node"),
    ],
)
def test_bad_conditional_specs_are_rejected_with_the_fix(cfg, spec, message):
    with pytest.raises(NNSearchError, match=message):
        SearchSpace.from_config(OmegaConf.create(spec), cfg)


def test_grid_refuses_a_conditional_space_but_enumerates_a_group_choice(cfg):
    with pytest.raises(NNSearchError, match="sampler=grid cannot enumerate a conditional search space"):
        SearchSpace.from_config(FAMILY_SPACE, cfg).grid()
    space = SearchSpace.from_config({"model": {"type": "categorical", "choices": ["mlp", "lstm"]}, "model.dropout": {"type": "float", "values": [0.0, 0.2]}}, cfg)
    assert space.grid() == {"model": ["mlp", "lstm"], "model.dropout": [0.0, 0.2]}


def test_plain_spaces_work_as_before(cfg):
    space = SearchSpace.from_config({"model.hidden_dim": {"type": "int", "low": 8, "high": 32, "step": 8}}, cfg)
    assert not space.is_conditional
    assert space.grid() == {"model.hidden_dim": [8, 16, 24, 32]}
    values = space.suggest(optuna.create_study().ask())
    assert set(values) == {"model.hidden_dim"}
