"""Bad input ends in one clear line and a non-zero exit, before any trial, leaving nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from nnsearch.errors import NNSearchError


def _nothing_written(tmp_path):
    assert not (tmp_path / "mlflow.db").exists(), "an MLflow store was created for a failed start"
    assert not (tmp_path / "optuna.journal").exists(), "a study was created for a failed start"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+study=digits_mlp", "data=csv", "data.path=missing.csv", "data.target=y"], "Data file not found"),
        (["+study=digits_mlp", "model=transfomer"], "unknown model 'transfomer'; choose one of: autoencoder, cnn, gan, gru, lstm, mlp, rnn, transformer. Did you mean transformer?"),
        (["+study=digits_mlp", "trainer.max_epoch=3"], "trainer.max_epoch is not a setting (to add a new key, write +trainer.max_epoch=3). Did you mean trainer.max_epochs?"),
        (["+study=digts_mlp"], "no study named 'digts_mlp': no studies/digts_mlp.yaml in"),
    ],
    ids=["missing-file", "unknown-model", "misspelt-setting", "unknown-study"],
)
def test_cli_prints_one_line_and_exits_non_zero(run_cli, tmp_path, args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("nnsearch: error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    _nothing_written(tmp_path)


def test_an_unknown_study_suggests_the_nearest_shipped_one(run_cli):
    result = run_cli("+study=digts_mlp")
    assert result.stderr.rstrip().endswith("digits_mlp, digits_transformer, sine_forecast_rnn, wine_mlp). Did you mean digits_mlp?")


def test_cli_rejects_search_space_with_low_above_high(run_cli, tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "bad.yaml").write_text(
        "# @package _global_\nsearch_space:\n  optimizer.lr: {type: float, low: 0.1, high: 0.01}\n"
    )
    result = run_cli("+study=bad")
    assert result.returncode == 2
    assert result.stderr.strip() == "nnsearch: error: search_space.optimizer.lr: low (0.1) is greater than high (0.01)."
    _nothing_written(tmp_path)


def _csv(tmp_path, text):
    path = tmp_path / "table.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("overrides", "make_csv", "message"),
    [
        (["data.target=nope"], "a,b,y\n1,2,0\n3,4,1\n", "Target column 'nope' is not in table.csv; its columns are: a, b, y"),
        (["data.target=y"], "a,b,y\n1,x,0\n3,4,1\n", "Non-numeric feature columns in table.csv: b"),
        (["data.target=y"], "a,b,y\n1,,0\n3,4,1\n", "NaN/infinite feature values"),
    ],
)
def test_bad_csv_files(run_in_process, tmp_path, overrides, make_csv, message):
    path = _csv(tmp_path, make_csv)
    with pytest.raises(NNSearchError, match=message.replace("(", r"\(")):
        run_in_process("data=csv", f"data.path={path}", *overrides)
    _nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+study=digits_mlp", "study.metric=auc"], "Unknown objective metric 'auc'; choose one of accuracy"),
        (["+study=digits_mlp", "study.metric=rmse"], "Metric 'rmse' does not apply to a multiclass task"),
        (["+study=digits_mlp", "sampler.n_startup_trialz=3"], None),
        (["+study=digits_mlp", "+sampler.bogus=1"], "sampler: cannot build optuna.samplers.TPESampler"),
        (["+study=digits_mlp", "+pruner.bogus=1"], "pruner: cannot build optuna.pruners.MedianPruner"),
        (["+study=digits_mlp", "model.activation=swish"], "Unknown activation 'swish'"),
        (["data=iris", "cv.folds=60"], "has 40 sample\\(s\\), fewer than cv.folds=60"),
        (["data=digits", "model=cnn"], "model=cnn needs image data"),
        (["+study=digits_mlp", "study.n_trials=0"], "study.n_trials must be a positive integer"),
        (["+study=digits_mlp", "sampler=grid"], "sampler=grid cannot enumerate the log-scaled search_space.model.hidden_dim"),
    ],
)
def test_invalid_settings_fail_before_any_trial(run_in_process, tmp_path, overrides, message):
    if message is None:  # an option the group does not have: Hydra rejects it while composing
        from hydra.errors import ConfigCompositionException

        with pytest.raises(ConfigCompositionException, match="Could not override .sampler.n_startup_trialz."):
            run_in_process(*overrides)
    else:
        with pytest.raises(NNSearchError, match=message):
            run_in_process(*overrides)
    _nothing_written(tmp_path)


def test_unknown_search_space_path_suggests_the_nearest(run_in_process, tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "typo.yaml").write_text(
        "# @package _global_\nsearch_space:\n  model.hiden_dim: {type: int, low: 8, high: 16}\n"
    )
    with pytest.raises(NNSearchError, match="search_space.model.hiden_dim: no such config value. Did you mean model.hidden_dim"):
        run_in_process("+study=typo")


def test_npz_without_y_is_rejected(run_in_process, tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((10, 3)))
    with pytest.raises(NNSearchError, match="lacks array\\(s\\) y"):
        run_in_process("data=npz", f"data.path={tmp_path / 'd.npz'}")
