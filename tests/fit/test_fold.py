"""Fitting folds: in-memory batches, the engine setting, the fast ``--help``."""

from __future__ import annotations

import pytest
import torch

from conftest import compose
from nnsearch.data.batches import TensorBatches
from nnsearch.errors import NNSearchError
from nnsearch.fit import FitSettings


def test_batches_cover_every_row_once_per_epoch_in_a_seeded_order():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    first = TensorBatches(x, y, 4, generator=torch.Generator().manual_seed(0))
    again = TensorBatches(x, y, 4, generator=torch.Generator().manual_seed(0))
    epoch = [b[1] for b in first]
    assert len(first) == 3 and [len(b) for b in epoch] == [4, 4, 2]
    assert sorted(torch.cat(epoch).tolist()) == list(range(10))
    assert [b[1].tolist() for b in again] == [b.tolist() for b in epoch]
    assert torch.cat([b[1] for b in first]).tolist() != torch.cat(epoch).tolist()  # reshuffled next epoch


def test_a_last_training_batch_of_one_row_is_dropped():
    x, y = torch.zeros(9, 2), torch.zeros(9)
    assert len(TensorBatches(x, y, 4, generator=torch.Generator())) == 2  # batch norm cannot take one row
    assert len(TensorBatches(x, y, 4)) == 3  # validation keeps every row


def test_unknown_engine_names_the_choices():
    cfg = compose(["trainer.engine=turbo"])
    with pytest.raises(NNSearchError, match="fast, lightning"):
        FitSettings.from_config(cfg.trainer)
    assert FitSettings.from_config(compose([]).trainer).engine == "fast"


def test_fast_help_lists_studies_and_groups_without_composing():
    from nnsearch.cli.help import help_text, wants_help

    text = help_text()
    assert "digits_mlp" in text and "MLP on the flat 8x8 digits" in text
    assert "optimizer  " in text and "adam" in text
    assert wants_help(["+study=x", "--help"]) and not wants_help(["+study=x"])
