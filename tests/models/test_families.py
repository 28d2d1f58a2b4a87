"""Every architecture family through a tiny study; family choice as a searched parameter; bad input.

Tiny means 2 folds, 1-2 epochs, 2 trials: these check that results land in Optuna and MLflow, not
that the models are good (the shipped studies' numbers are in the issue's note).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from conftest import TINY, compose, load_study, mlflow_runs
from optuna.trial import TrialState

from nnsearch.errors import NNSearchError

SHIPPED = [
    "digits_lstm",
    "digits_gru",
    "digits_transformer",
    "sine_forecast_rnn",
    "digits_autoencoder",
    "breast_cancer_gan",
    "digits_architecture_search",
    "text_sentiment_lstm",
    "text_sentiment_transformer",
]


@pytest.fixture
def run(run_in_process, tmp_path):
    """``run_in_process`` with this test's own absolute MLflow URI: MLflow caches one SQLite engine
    per URI string, so the relative default would keep writing to the first test's folder."""

    def _run(*overrides: str):
        return run_in_process(*overrides, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}")

    return _run


@pytest.mark.slow
@pytest.mark.parametrize("study", SHIPPED)
def test_shipped_study_runs_and_logs_its_trials(run, tmp_path, study):
    result = run(f"+study={study}", *TINY)
    trials = result.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2 and all(math.isfinite(t.value) for t in trials)
    _, parents, children = mlflow_runs(tmp_path, study)
    assert len(parents) == 1 and len(children) == 2
    metric = parents[0].data.params["study.metric"]
    for child in children:
        assert f"cv/{metric}" in child.data.metrics
        assert "fold0/val/loss" in child.data.metrics


# (overrides, metric, expected history keys): the base config of each family, no search space
VARIANTS = {
    "rnn": (["data=digits_sequence", "model=rnn", "model.readout=max"], "accuracy"),
    "lstm_bidirectional": (["data=digits_sequence", "model=lstm", "model.bidirectional=true", "model.n_layers=2"], "accuracy"),
    "gru_forecast": (["data=ar_forecast", "model=gru", "model.readout=mean"], "rmse"),
    "transformer_forecast": (["data=sine_forecast", "model=transformer", "model.pooling=cls", "model.positional=learned"], "rmse"),
    "cnn_on_rows": (["data=digits_sequence", "model=cnn", "model.channels=8"], "accuracy"),
    "autoencoder_reconstruction": (["data=digits", "data.task=reconstruction", "model=autoencoder"], "recon_mse"),
    "autoencoder_anomaly": (["data=digits_anomaly", "model=autoencoder", "model.train_on=all"], "average_precision"),
    "gan": (["data=wine", "data.task=generation", "model=gan"], "mmd"),
}


@pytest.mark.parametrize("name", [pytest.param(name, marks=() if name == "rnn" else pytest.mark.slow) for name in VARIANTS])  # rnn: the fast one
def test_every_family_trains_and_reports_its_metrics(run, tmp_path, name):
    overrides, metric = VARIANTS[name]
    result = run(*overrides, f"study.metric={metric}", f"study.name={name}", *TINY)
    assert len(result.get_trials(states=(TrialState.COMPLETE,))) == 1  # no search space: one trial, not study.n_trials
    _, _, children = mlflow_runs(tmp_path, name)
    metrics = children[0].data.metrics
    assert math.isfinite(metrics[f"cv/{metric}"])
    assert f"fold1/val/{metric}" in metrics  # the per-epoch curve the pruner reads


@pytest.mark.slow
def test_anomaly_metrics_are_sensible_after_a_short_fit(run):
    study = run("data=digits_anomaly", "model=autoencoder", "study.metric=roc_auc", "study.n_trials=1", "cv.folds=2", "trainer.max_epochs=5")
    trial = study.best_trial
    assert trial.user_attrs["cv/roc_auc"] > 0.7  # reconstruction error separates digits 5-9 from 0-4
    assert 0 < trial.user_attrs["cv/average_precision"] <= 1


@pytest.mark.slow
def test_architecture_search_samples_and_logs_only_the_chosen_familys_parameters(run, tmp_path):
    own = {
        "mlp": {"model.hidden_dim", "model.n_layers"},
        "cnn": {"model.channels", "model.n_blocks"},
        "lstm": {"model.hidden_dim", "model.n_layers", "model.bidirectional", "model.readout"},
        "gru": {"model.hidden_dim", "model.n_layers", "model.bidirectional", "model.readout"},
        "transformer": {"model.n_layers", "model.d_model", "model.n_heads", "model.pooling"},
    }
    shared = {"model", "model.dropout", "optimizer.lr"}
    study = run(
        "+study=digits_architecture_search", "sampler=random", "pruner=none", "study.n_trials=6", "cv.folds=2", "trainer.max_epochs=1"
    )
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    families = {t.params["model"] for t in trials}
    assert len(families) >= 3, families
    _, _, children = mlflow_runs(tmp_path, "digits_architecture_search")
    logged = {int(r.data.tags["optuna.trial_number"]): set(r.data.params) for r in children}
    for t in trials:
        assert set(t.params) == shared | own[t.params["model"]]
        assert logged[t.number] == set(t.params)
    # the exported configuration is the best trial's: its family's network with the values it sampled, nothing left to search
    exported = yaml.safe_load(next((tmp_path / "outputs").glob("best_config.yaml")).read_text())
    best = study.best_trial
    assert exported["model"]["_target_"] == compose([f"model={best.params['model']}"]).model._target_
    for path, value in best.params.items():
        if path != "model":
            node = exported
            for part in path.split("."):
                node = node[part]
            assert node == pytest.approx(value), path
    assert exported["search_space"] == {}


@pytest.mark.slow
def test_a_sampled_bad_combination_fails_its_trial_and_the_study_goes_on(run, tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "heads.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /data: digits_sequence\n  - override /model: transformer\n  - override /sampler: random\n"
        "model: {d_model: 16, n_layers: 1}\n"
        "search_space:\n  model.d_model: {type: categorical, choices: [12, 16]}\n  model.n_heads: {type: categorical, choices: [3, 4, 6]}\n"
    )
    study = run("+study=heads", "study.n_trials=2", "cv.folds=2", "trainer.max_epochs=1")
    failed = study.get_trials(states=(TrialState.FAIL,))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2 and all(t.params["model.d_model"] % t.params["model.n_heads"] == 0 for t in complete)
    assert failed, "random sampling (seed 0) draws 16 model dimensions with 3 or 6 heads"
    for t in failed:
        assert t.user_attrs["fail_reason"] == f"model.d_model (16) must be divisible by model.n_heads ({t.params['model.n_heads']})."
    _, _, children = mlflow_runs(tmp_path, "heads")
    assert sum(r.data.tags["state"] == "FAIL" for r in children) == len(failed)


def _npz(tmp_path, X, y):
    path = tmp_path / "seq.npz"
    np.savez(path, X=X, y=y)
    return str(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=digits", "model=lstm"], r"model=lstm needs sequences shaped \(steps, features\), got samples of shape \(64,\)"),
        (["data=digits_image", "model=transformer"], r"model=transformer needs sequences shaped \(steps, features\), got samples of shape \(1, 8, 8\)"),
        (["data=digits_sequence", "model=transformer", "model.d_model=30", "model.n_heads=4"], r"model.d_model \(30\) must be divisible by model.n_heads \(4\)"),
        (["data=digits_anomaly", "model=autoencoder", "study.metric=roc_auc", "model.bottleneck=80"], r"model.bottleneck \(80\) must be smaller than the input's 64 values"),
        (["data=digits", "model=autoencoder"], "model=autoencoder .* learns reconstruction, anomaly tasks, but data 'digits' is a multiclass task"),
        (["data=digits_anomaly", "model=mlp", "study.metric=roc_auc"], "a supervised model .* data 'digits_anomaly' is a anomaly task: use model=autoencoder"),
        (["data=digits_anomaly", "model=autoencoder"], "Metric 'accuracy' does not apply to a anomaly task; choose one of roc_auc, recon_mse, average_precision"),
        (["data=breast_cancer", "data.task=generation", "model=gan", "study.metric=mmd", "scheduler=cosine"], "model=gan trains two optimizers and takes no learning-rate scheduler"),
        (["data=sine_forecast", "data.kind=arima", "study.metric=rmse"], "Unknown data.kind 'arima'; choose one of sine, ar"),
    ],
)
def test_bad_architecture_input_fails_before_any_trial(run, tmp_path, overrides, message):
    with pytest.raises(NNSearchError, match=message):
        run(*overrides, *TINY)
    assert not (tmp_path / "optuna.journal").exists()


def test_npz_of_the_wrong_rank_fails_on_loading(run, tmp_path):
    path = _npz(tmp_path, np.zeros((20, 12), dtype=np.float32), np.arange(20) % 2)
    with pytest.raises(NNSearchError, match=r"X in seq.npz must be shaped \(N, steps, features\) for data.layout=sequence, got shape \(20, 12\)"):
        run("data=npz_sequence", f"data.path={path}", "model=lstm", *TINY)


@pytest.mark.slow
def test_user_sequences_from_npz_train_an_lstm(run, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 10, 3)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    path = _npz(tmp_path, X, y)
    study = run("data=npz_sequence", f"data.path={path}", "model=gru", "study.metric=roc_auc", *TINY)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1  # no search space: one trial


def test_cli_flat_data_to_a_sequence_model_is_one_line_exit_2(run_cli, tmp_path):
    result = run_cli("+study=digits_lstm", "data=digits", *TINY)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("nnsearch: error: model=lstm needs sequences shaped (steps, features)")


@pytest.mark.slow
def test_cli_runs_the_gan_study_and_logs_to_mlflow(run_cli, tmp_path):
    result = run_cli("+study=breast_cancer_gan", *TINY)
    assert result.returncode == 0, result.stderr
    study = load_study(tmp_path, "breast_cancer_gan")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    _, _, children = mlflow_runs(tmp_path, "breast_cancer_gan")
    metrics = children[0].data.metrics
    assert 0.0 <= metrics["cv/c2st_auc"] <= 1.0 and "cv/mmd" in metrics
    assert "fold0/train/d_loss" in metrics and "fold0/train/g_loss" in metrics
    assert set(children[0].data.params) >= {"model.generator_lr", "model.discriminator_lr"}
