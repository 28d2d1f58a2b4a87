"""The fast engine (``trainer.engine=fast``) must give what Lightning's Trainer gives, only sooner.

Same seed, same config: identical per-epoch curves, final metrics, logged values and pruning
reports on both engines, for every shipped model family and for a module of the
lightning-hydra-template kind that logs torchmetrics objects; what the fast engine cannot
reproduce runs on the Trainer instead.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from conftest import TINY, compose
from nnsearch.config.building import build
from nnsearch.cv import FoldCache, make_splits
from nnsearch.fit import FitSettings, FoldResult, Job, fast, fit, fit_fold
from nnsearch.fit.logged import EngineUnsupported

# each row exercises a different part of the loop or another model family, at sizes that train in about a second
VARIANTS = {
    "mlp-dropout-plateau": ["+study=digits_mlp", "model.dropout=0.3", "scheduler=plateau", "scheduler.patience=0"],
    "mlp-step-lr-clip-norm": ["+study=digits_mlp", "scheduler=step", "scheduler.step_size=1", "trainer.gradient_clip_val=0.05"],
    "mlp-early-stop-clip-value": [
        "+study=digits_mlp",
        "trainer.max_epochs=8",
        "trainer.early_stopping.patience=1",
        "trainer.early_stopping.min_delta=0.05",
        "trainer.gradient_clip_val=0.01",
        "trainer.gradient_clip_algorithm=value",
    ],
    "mlp-early-stop-patience-0": ["+study=digits_mlp", "trainer.max_epochs=6", "trainer.early_stopping.patience=0"],
    "cnn-batchnorm-cosine": ["+study=digits_cnn", "model.channels=4", "model.n_blocks=1", "model.hidden_dim=0", "scheduler=cosine"],
    "regression": ["+study=diabetes_mlp", "model.hidden_dim=8", "data.batch_size=31"],
    "lstm": ["+study=digits_lstm", "model.hidden_dim=8"],
    "gru": ["+study=digits_gru", "model.hidden_dim=8"],
    "rnn": ["+study=digits_lstm", "model=rnn", "model.hidden_dim=8"],
    "transformer": ["+study=digits_transformer", "model.d_model=8", "model.n_heads=2", "model.n_layers=1"],
    "autoencoder": ["+study=digits_autoencoder"],
    "gan": ["+study=breast_cancer_gan"],
    "forecast": ["+study=sine_forecast_rnn"],
}
METRIC = {"diabetes": "rmse", "autoencoder": "roc_auc", "gan": None, "sine": "rmse"}


def _setup(overrides: list[str], engine: str):
    cfg = compose([*overrides, "trainer.max_epochs=3", "cv.folds=2", f"trainer.engine={engine}"] + [o for o in overrides if "max_epochs" in o])
    data = build("data", cfg.data)
    return cfg, data, FoldCache(data, make_splits(data, folds=2, seed=0))


def _fit(overrides: list[str], engine: str, **kwargs) -> FoldResult:
    cfg, data, folds = _setup(overrides, engine)
    metric = next((m for key, m in METRIC.items() if key in overrides[0]), "accuracy")
    return fit_fold(cfg, data, folds.get(1), seed=7, epoch_metrics=[metric] if metric else [], **kwargs)


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_the_fast_engine_matches_the_trainer_for_the_same_seed(overrides):
    torch.set_num_threads(1)
    lightning, fast = _fit(overrides, "lightning"), _fit(overrides, "fast")
    assert fast.history == lightning.history  # every epoch's losses and metrics, bit for bit
    assert fast.metrics == lightning.metrics
    assert fast.history and fast.metrics
    if "trainer.early_stopping.patience=1" in overrides:
        assert 1 < fast.epochs < 8  # it did stop early, at the same epoch


class _Trial:
    """Records reports like an Optuna trial; asks to prune once ``prune_at`` is reported."""

    def __init__(self, prune_at: int | None = None) -> None:
        self.reports: list[tuple[int, float]] = []
        self.prune_at = prune_at

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune_at is not None and self.reports[-1][0] >= self.prune_at


def test_the_fast_engine_reports_the_same_steps_and_values_as_the_trainer():
    reports = {}
    for engine in ("lightning", "fast"):
        trial = _Trial()
        _fit(VARIANTS["mlp-dropout-plateau"], engine, trial=trial, monitor="val/accuracy")
        reports[engine] = trial.reports
    assert [step for step, _ in reports["fast"]] == [3, 4, 5]  # fold 1 of 3 epochs: steps 3..5
    assert reports["fast"] == reports["lightning"]


def test_both_engines_hand_each_epoch_to_the_progress_line_and_keep_validation_outputs():
    seen = {}
    for engine in ("lightning", "fast"):
        calls = []
        result = _fit(VARIANTS["mlp-dropout-plateau"], engine, on_epoch=lambda fold, epoch, row: calls.append((fold, epoch, row["val/accuracy"])))
        seen[engine] = calls
        assert [(f, e) for f, e, _ in calls] == [(1, 0), (1, 1), (1, 2)]
        assert [v for _, _, v in calls] == [row["val/accuracy"] for row in result.history]
        # the per-trial confusion matrix and ROC curves are drawn from these outputs
        pred = result.predictions
        assert pred.outputs.shape == (len(pred.targets), 10)
        assert (pred.outputs.argmax(1) == pred.targets).mean() == pytest.approx(result.metrics["accuracy"])
    assert seen["fast"] == seen["lightning"]


def test_pruning_stops_the_fast_engine_and_keeps_the_curves():
    import optuna

    from nnsearch.fit.pruning import FoldPruned

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1))
    trial = study.ask()
    result = FoldResult(1)
    with pytest.raises(FoldPruned, match="fold 1, epoch 0") as pruned:
        _fit(VARIANTS["mlp-dropout-plateau"], "fast", trial=trial, monitor="val/accuracy", result=result)
    assert (pruned.value.fold, pruned.value.epoch, pruned.value.step) == (1, 0, 3)
    assert result.epochs == 1
    assert list(study.trials[0].intermediate_values) == [3]


def test_a_module_needing_the_real_trainer_reruns_on_lightning(monkeypatch, caplog):
    """A module reading trainer state the fast engine does not offer falls back, with the same result."""
    import nnsearch.models.build as models_build

    build_module = models_build.build_module

    def build_curious(*args, **kwargs):
        module = build_module(*args, **kwargs)
        original = module.on_train_epoch_start

        def on_train_epoch_start():
            _ = module.trainer.fit_loop  # only a real Trainer has this
            original()

        module.on_train_epoch_start = on_train_epoch_start
        return module

    expected = _fit(VARIANTS["mlp-dropout-plateau"], "lightning")
    monkeypatch.setattr(models_build, "build_module", build_curious)
    with caplog.at_level("INFO", logger="nnsearch"):
        result = _fit(VARIANTS["mlp-dropout-plateau"], "fast")
    assert "trainer.fit_loop" in caplog.text
    assert result.history == expected.history and result.metrics == expected.metrics


def test_settings_the_fast_engine_cannot_honour_are_refused_up_front():
    assert "precision" in fast.unsupported(FitSettings(accelerator="cpu", precision="bf16-mixed"))
    assert "devices" in fast.unsupported(FitSettings(accelerator="cpu", devices=2))
    assert fast.unsupported(FitSettings(accelerator="cpu")) == ""

    class ManualModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    assert "manual optimization" in fast.unsupported(FitSettings(accelerator="cpu"), ManualModule())


def test_deterministic_sets_what_the_trainer_sets(monkeypatch):
    import os

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        result = _fit(["+study=digits_mlp", "trainer.deterministic=true"], "fast")
        assert result.history
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # needed for deterministic cuBLAS on CUDA
    finally:
        torch.use_deterministic_algorithms(False)


class LoggingModule(L.LightningModule):
    """A module in the lightning-hydra-template style: torchmetrics objects, per-batch logs reduced per epoch."""

    def __init__(self) -> None:
        super().__init__()
        from torchmetrics import MaxMetric
        from torchmetrics.classification import MulticlassAccuracy

        self.net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
        self.train_acc, self.val_acc = MulticlassAccuracy(10), MulticlassAccuracy(10)
        self.val_acc_best = MaxMetric()

    def step(self, batch):
        x, y = batch
        logits = self.net(x)
        return torch.nn.functional.cross_entropy(logits, y), logits.argmax(1), y

    def training_step(self, batch, batch_idx):
        loss, preds, y = self.step(batch)
        self.train_acc(preds, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        self.log("train/max_loss", loss, on_step=False, on_epoch=True, reduce_fx="max")
        return loss

    def validation_step(self, batch, batch_idx):
        loss, preds, y = self.step(batch)
        self.val_acc(preds, y)
        self.log("val/loss", loss)  # on_epoch by default here: the mean over batches, weighted by batch size
        self.log("val/acc", self.val_acc)

    def on_validation_epoch_end(self):
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())
        self.log("epoch_seen", float(self.current_epoch))

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val/loss"}}


class Snapshots(L.Callback):
    """Copies ``trainer.callback_metrics`` at every validation end and training epoch end."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, float]]] = []
        self.trainers: set[str] = set()

    def on_validation_end(self, trainer, pl_module):
        self.trainers.add(type(trainer).__name__)
        self.seen.append(("validation_end", {k: float(v) for k, v in trainer.callback_metrics.items()}))

    def on_train_epoch_end(self, trainer, pl_module):
        self.seen.append(("train_epoch_end", {k: float(v) for k, v in trainer.callback_metrics.items()}))


def test_a_module_logging_torchmetrics_gets_the_trainers_values_on_the_fast_engine():
    from sklearn.datasets import load_digits

    from nnsearch.data.batches import TensorBatches

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x[:600] / 16, dtype=torch.float32), torch.tensor(y[:600])
    seen = {}
    for engine in ("lightning", "fast"):
        snapshots = Snapshots()

        def build(device, snapshots=snapshots):
            torch.manual_seed(3)
            train = TensorBatches(x[:500], y[:500], 64, generator=torch.Generator().manual_seed(3))
            return Job(LoggingModule(), train, TensorBatches(x[500:], y[500:], 30), [snapshots])

        fit(build, FitSettings(max_epochs=3, accelerator="cpu", engine=engine))
        seen[engine] = snapshots.seen
        assert snapshots.trainers == {"lightning": {"Trainer"}, "fast": {"TrainerView"}}[engine]  # no fallback
    assert [kind for kind, _ in seen["fast"]] == ["validation_end", "train_epoch_end"] * 3
    names = set(seen["fast"][-1][1])
    assert {"train/loss_step", "train/loss_epoch", "train/loss", "train/acc", "train/max_loss", "val/loss", "val/acc", "val/acc_best", "epoch_seen"} <= names
    assert seen["fast"] == seen["lightning"]  # every value at every point, as the Trainer has them


def test_a_torchmetrics_object_logged_per_step_trains_on_the_trainer():
    from torchmetrics import MeanMetric

    from nnsearch.fit.logged import LoggedMetrics

    with pytest.raises(EngineUnsupported, match="per step"):
        LoggedMetrics().log("m", MeanMetric(), on_step=True)


@pytest.mark.slow
def test_both_engines_give_the_same_study(run_in_process):
    """End to end through the real study loop: the same trials get the same scores."""
    values = {}
    for engine in ("fast", "lightning"):
        study = run_in_process("+study=digits_mlp", *TINY, f"study.name=eq-{engine}", f"trainer.engine={engine}")
        values[engine] = [t.value for t in study.trials]
    assert values["fast"] == values["lightning"]
