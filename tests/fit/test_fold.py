"""Fitting folds: in-memory batches, the engine setting, the fast ``--help``."""

from __future__ import annotations

import lightning as L
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


class _Counted(L.LightningModule):
    """A linear model that counts the training batches it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.batches = torch.nn.Linear(3, 1), 0

    def training_step(self, batch, batch_idx):
        self.batches += 1
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("engine", ["fast", "lightning"])
def test_any_trainer_argument_reaches_the_trainer_that_runs_the_fold(engine):
    from nnsearch.data.batches import TensorBatches
    from nnsearch.fit import FitSettings, Job, fit

    settings = FitSettings.from_config({"max_epochs": 3, "accelerator": "cpu", "engine": engine, "limit_train_batches": 2})
    x, y = torch.randn(40, 3), torch.randn(40)

    def build(device):
        torch.manual_seed(0)
        return Job(_Counted(), TensorBatches(x, y, 4, generator=torch.Generator().manual_seed(0)), TensorBatches(x, y, 40), [])

    job = fit(build, settings)  # the fast engine hands a fold with a Trainer argument of its own to the Trainer
    assert job.module.batches == 3 * 2  # 2 of the 10 batches per epoch


def test_a_trainer_argument_that_does_not_exist_or_is_nnsearchs_own_is_refused():
    from nnsearch.errors import NNSearchError
    from nnsearch.fit import FitSettings

    with pytest.raises(NNSearchError, match="trainer.acumulate_grad_batches is not an argument of lightning.pytorch.Trainer"):
        FitSettings.from_config({"acumulate_grad_batches": 2})
    with pytest.raises(NNSearchError, match="trainer.logger is set by nnsearch"):
        FitSettings.from_config({"logger": True})
