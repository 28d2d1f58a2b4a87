"""The recipe users write by hand: Optuna + a Lightning Trainer per fold + DataLoader +
``PyTorchLightningPruningCallback`` + ``MLflowCallback``, as in Optuna's and Lightning's docs.

It is written the way a careful user would (lean Trainer: no logger, checkpoints, progress bar or
model summary; folds prepared once, not per trial; one large validation batch), so the ratio
nnsearch gets against it is a conservative one.

Usage: python benchmarks/recipe.py {mlp,cnn} N_TRIALS WORKDIR
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from optuna_integration import MLflowCallback, PyTorchLightningPruningCallback
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import journal_study, load_setup, write_result  # noqa: E402

SEED = 0


class Classifier(L.LightningModule):
    def __init__(self, net: torch.nn.Module, make_optimizer) -> None:
        super().__init__()
        self.net, self.make_optimizer = net, make_optimizer

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return self.make_optimizer(self.net)


def main(kind: str, n_trials: int, workdir: Path) -> None:
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    setup = load_setup(kind)
    study = journal_study(workdir, SEED)
    mlflow_cb = MLflowCallback(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", metric_name="accuracy")

    def objective(trial) -> float:
        params = setup.suggest(trial)
        scores = []
        for k, fold in enumerate(setup.folds):
            seed = (SEED + trial.number) * 1000 + k
            torch.manual_seed(seed)
            model = Classifier(setup.network(params), lambda net: setup.adam(net, params))
            train = DataLoader(
                TensorDataset(fold.x_train, fold.y_train),
                batch_size=setup.batch(params),
                shuffle=True,
                generator=torch.Generator().manual_seed(seed),
            )
            val = DataLoader(TensorDataset(fold.x_val, fold.y_val), batch_size=4096)
            trainer = L.Trainer(
                max_epochs=setup.max_epochs,
                accelerator="auto",
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[PyTorchLightningPruningCallback(trial, monitor="val_acc")],
            )
            trainer.fit(model, train_dataloaders=train, val_dataloaders=val)
            scores.append(trainer.callback_metrics["val_acc"].item())
        return sum(scores) / len(scores)

    study.optimize(objective, n_trials=n_trials, callbacks=[mlflow_cb])
    write_result(workdir)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
