"""The fast loop (``trainer.engine=fast``) must give what Lightning gives, only sooner.

Same seed, same config: identical per-epoch curves, final metrics and pruning reports on both
engines; what the fast loop cannot reproduce runs on Lightning instead.
"""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, compose
from nnsearch import fast_loop
from nnsearch.building import build
from nnsearch.cv import FoldCache, make_splits
from nnsearch.training import FoldResult, fit_fold

# each row exercises a different part of the loop, at sizes that train in well under a second
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
    "cnn-batchnorm-cosine": ["+study=digits_cnn", "model.channels=4", "model.n_blocks=1", "model.hidden_dim=0", "scheduler=cosine"],
    "regression": ["+study=diabetes_mlp", "model.hidden_dim=8", "data.batch_size=31"],
}


def _setup(overrides: list[str], engine: str):
    cfg = compose([*overrides, "trainer.max_epochs=3", "cv.folds=2", f"trainer.engine={engine}"] + [o for o in overrides if "max_epochs" in o])
    data = build("data", cfg.data)
    return cfg, data, FoldCache(data, make_splits(data, folds=2, seed=0))


def _fit(overrides: list[str], engine: str, **kwargs) -> FoldResult:
    cfg, data, folds = _setup(overrides, engine)
    metric = "rmse" if "diabetes" in overrides[0] else "accuracy"
    return fit_fold(cfg, data, folds.get(1), seed=7, epoch_metrics=[metric], **kwargs)


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_fast_loop_matches_lightning_for_the_same_seed(overrides):
    torch.set_num_threads(1)
    lightning, fast = _fit(overrides, "lightning"), _fit(overrides, "fast")
    assert fast.history == lightning.history  # every epoch's losses and metrics, bit for bit
    assert fast.metrics == lightning.metrics
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


def test_fast_loop_reports_the_same_steps_and_values_as_lightning():
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


def test_pruning_stops_the_fast_loop_and_keeps_the_curves():
    import optuna

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1))
    trial = study.ask()
    result = FoldResult(1)
    with pytest.raises(optuna.TrialPruned, match="fold 1, epoch 0"):
        _fit(VARIANTS["mlp-dropout-plateau"], "fast", trial=trial, monitor="val/accuracy", result=result)
    assert result.epochs == 1
    assert list(study.trials[0].intermediate_values) == [3]


def test_a_module_needing_the_real_trainer_reruns_on_lightning(monkeypatch, caplog):
    """A module reading trainer state the fast loop does not imitate falls back, with the same result."""
    import nnsearch.training as training

    build_module = training.build_module

    def build_curious(*args, **kwargs):
        module = build_module(*args, **kwargs)
        original = module.on_train_epoch_start

        def on_train_epoch_start():
            _ = module.trainer.fit_loop  # only a real Trainer has this
            original()

        module.on_train_epoch_start = on_train_epoch_start
        return module

    expected = _fit(VARIANTS["mlp-dropout-plateau"], "lightning")
    monkeypatch.setattr(training, "build_module", build_curious)
    with caplog.at_level("INFO", logger="nnsearch"):
        result = _fit(VARIANTS["mlp-dropout-plateau"], "fast")
    assert "trainer.fit_loop" in caplog.text
    assert result.history == expected.history and result.metrics == expected.metrics


def test_settings_the_fast_loop_cannot_honour_are_refused_up_front():
    with pytest.raises(fast_loop.FastPathUnsupported, match="precision"):
        fast_loop.resolve_device(accelerator="cpu", devices=1, precision="bf16-mixed")
    with pytest.raises(fast_loop.FastPathUnsupported, match="devices"):
        fast_loop.resolve_device(accelerator="cpu", devices=2, precision="32-true")

    class Manual(torch.nn.Module):
        pass

    import lightning as L

    class ManualModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(fast_loop.FastPathUnsupported, match="manual optimization"):
        fast_loop.check_module(ManualModule())


@pytest.mark.parametrize(
    ("mode", "min_delta", "values", "stop_after"),
    [
        ("min", 0.0, [1.0, 0.9, 0.95, 0.95], 4),  # patience 2: two epochs without a new best
        ("min", 0.2, [1.0, 0.9, 0.85, 0.5], 3),  # 0.9 and 0.85 are not 0.2 better than 1.0
        ("max", 0.0, [0.1, float("nan")], 2),  # a non-finite value stops at once
    ],
)
def test_early_stopping_decision(mode, min_delta, values, stop_after):
    stopper = fast_loop.EarlyStopping("val/loss", mode=mode, patience=2, min_delta=min_delta)
    stops = [stopper.should_stop(torch.tensor(v)) for v in values]
    assert stops.index(True) + 1 == stop_after


def test_both_engines_give_the_same_study(run_in_process):
    """End to end through the real study loop: the same trials get the same scores."""
    values = {}
    for engine in ("fast", "lightning"):
        study = run_in_process("+study=digits_mlp", *TINY, f"study.name=eq-{engine}", f"trainer.engine={engine}")
        values[engine] = [t.value for t in study.trials]
    assert values["fast"] == values["lightning"]
