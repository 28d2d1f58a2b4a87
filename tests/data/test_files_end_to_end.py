"""Your own files end to end: `python -m nnsearch` on a text file and on a table with strings and gaps,
then the final MLflow model predicting from the raw columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_study

pytestmark = pytest.mark.slow
TINY_TEXT = ["study.n_trials=2", "cv.folds=2", "trainer.max_epochs=1", "report.study_plots=false", "tracking.trial_plots=none"]


def _final_model(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`nnsearch.role` = 'final'")
    mlflow.set_tracking_uri(uri)
    return mlflow.pyfunc.load_model(run.data.tags["model_uri"])


def test_an_lstm_study_on_a_text_file_with_folds_side_by_side(run_cli, tmp_path):
    from nnsearch.data.example_text import write_sentiment_csv

    write_sentiment_csv(tmp_path / "reviews.csv", 300, seed=3)
    result = run_cli("+study=text_sentiment_lstm", "study.name=reviews", "data=text", "data.path=reviews.csv", "data.text=review",
                     "data.target=sentiment", "data.max_length=16", "cv.parallel=2", *TINY_TEXT)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(tmp_path, "reviews")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all(0.0 <= t.value <= 1.0 for t in study.trials)
    model = _final_model(tmp_path)
    predicted = model.predict(pd.DataFrame({"review": ["the film was wonderful", "a review with words never seen"]}))
    assert set(predicted["prediction"]) <= {"positive", "negative"}
    assert np.allclose(predicted[["proba_negative", "proba_positive"]].sum(axis=1), 1.0)


def test_a_transformer_study_on_a_parquet_text_file_with_bpe(run_cli, tmp_path):
    from nnsearch.data.example_text import make_sentiment_rows

    texts, labels = make_sentiment_rows(300, seed=4)
    pd.DataFrame({"text": texts, "stars": [5.0 if y == "positive" else 1.0 for y in labels]}).to_parquet(tmp_path / "reviews.parquet")
    result = run_cli("+study=text_sentiment_transformer", "study.name=stars", "data=text", "data.path=reviews.parquet", "data.text=text",
                     "data.target=stars", "data.task=regression", "study.metric=rmse", "data.tokenizer=bpe", "data.vocab_size=200",
                     "final.retrain=false", *TINY_TEXT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [t.state.name for t in load_study(tmp_path, "stars").trials] == ["COMPLETE", "COMPLETE"]


def test_a_tsv_table_with_string_columns_and_missing_values(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    colour = rng.choice(["red", "green", "blue"], n).astype(object)
    size = rng.normal(size=n)
    label = np.where((colour == "red") ^ (size > 0), "yes", "no")
    size[::10], colour[5::10] = np.nan, None
    pd.DataFrame({"size": size, "colour": colour, "label": label}).to_csv(tmp_path / "table.tsv", sep="\t", index=False)
    result = run_cli("+study=digits_mlp", "study.name=table", "data=csv", "data.path=table.tsv", "data.target=label", "data.impute=median",
                     "cv.parallel=2", *TINY_TEXT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [t.state.name for t in load_study(tmp_path, "table").trials] == ["COMPLETE", "COMPLETE"]
    predicted = _final_model(tmp_path).predict(pd.DataFrame({"size": [0.5, None], "colour": ["red", "purple"]}))
    assert list(predicted["prediction"]) and set(predicted["prediction"]) <= {"yes", "no"}
